#!/usr/bin/env bash
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# tests/harness/image.sh [TAG]
#
# Builds the test image (default pv-test/busybox:latest) without a registry: Debian's
# statically linked busybox plus its applet links, tarred into `docker import`.
# Idempotent: an existing image is kept. Prints the tag as the last line of stdout.
set -euo pipefail

TAG=${1:-pv-test/busybox:latest}
export DEBIAN_FRONTEND=noninteractive
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin${PATH:+:$PATH}

log() { echo "image.sh: $*" >&2; }

if docker image inspect "$TAG" >/dev/null 2>&1; then
    echo "$TAG"
    exit 0
fi

if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed'; then
    log "installing busybox-static"
    apt-get install -y -q --no-install-recommends busybox-static >&2 ||
        { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends busybox-static >&2; }
fi
BUSYBOX=/bin/busybox
[[ -x $BUSYBOX ]] || BUSYBOX=/usr/bin/busybox

work=$(mktemp -d /tmp/pv-image.XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root"/{bin,etc,tmp,proc,sys,dev,data,root,var/tmp}
chmod 1777 "$root/tmp" "$root/var/tmp"
cp "$BUSYBOX" "$root/bin/busybox"
for applet in $("$BUSYBOX" --list); do
    [[ $applet == busybox ]] || ln -sf busybox "$root/bin/$applet"
done
for d in sbin usr/bin usr/sbin; do
    mkdir -p "$root/$(dirname "$d")"
    ln -s /bin "$root/$d"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"

log "importing $TAG"
tar -C "$root" --numeric-owner -cf - . |
    docker import -c 'CMD ["/bin/sh"]' -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        -m 'pv-test busybox (Debian busybox-static)' - "$TAG" >/dev/null
docker image inspect "$TAG" >/dev/null
echo "$TAG"
