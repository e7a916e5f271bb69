#!/usr/bin/env bash
# Manual check (not CI) that the project's install and harness scripts work on Debian 13 (trixie)
# from a Debian 12 (or 13) host: a trixie chroot (debootstrap --variant=minbase) with a clone of
# this repo's committed HEAD, its services run in an own network namespace (its 127.0.0.1 is not
# the host's, so the host's test cloud and dockerd on the same ports are not disturbed).
#
#   tests/harness/debian13/check.sh [--fresh]     as root; --fresh drops the clone's .state first
#
# Steps run in the chroot (logs under $ROOT/var/log/pv-check/, a table of results at the end):
#   apt-policy          every package of scripts/bootstrap.sh has a trixie candidate
#   os-install          tests/harness/openstack/install.sh          (host network: apt + PyPI)
#   bootstrap           PV_NO_DOCKER=1 scripts/bootstrap.sh          (host network; dockerd NOT started)
#   unit                .venv/bin/pytest tests/unit                  (netns)
#   os-start            tests/harness/openstack/start.sh             (netns, like all below)
#   os-smoke            1 GiB volume: create, attach to pv-docker-host, in-use, detach, delete
#   os-status / os-stop tests/harness/openstack/status.sh, stop.sh
#   vcsim-build         tests/harness/vcsim/build.sh                 (host network: apt)
#   vcsim-run           vcsim start.sh, a SOAP probe (service content, good and bad login), stop.sh
#   leftovers           no process of the chroot is left after the stops
# Idempotent: the chroot, the venvs and the cloud's state are reused by the next run. On exit
# (even on failure) the trap stops what still runs in the chroot by pid, unmounts the binds and
# deletes the netns. The chroot stays on disk (~3 GB); remove it with `rm -rf $ROOT` when done.
# Env: PV_TRIXIE_ROOT (/var/tmp/pv-trixie), PV_TRIXIE_NETNS (pvtrixie),
#      PV_TRIXIE_MIRROR (http://deb.debian.org/debian), PV_TRIXIE_SECURITY (<mirror>-security).
# shellcheck disable=SC2317,SC2016  # functions run from the trap; step commands run in the chroot
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
ROOT=${PV_TRIXIE_ROOT:-/var/tmp/pv-trixie}
NS=${PV_TRIXIE_NETNS:-pvtrixie}
MIRROR=${PV_TRIXIE_MIRROR:-http://deb.debian.org/debian}
SECURITY=${PV_TRIXIE_SECURITY:-${MIRROR%/debian}/debian-security}
FRESH=; [ "${1:-}" = --fresh ] && FRESH=1
LOGDIR=$ROOT/var/log/pv-check
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

say() { printf '[check %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (debootstrap, chroot, mounts, netns)"

# The chroot's processes: those whose root is $ROOT or that live in the netns (ours only).
chroot_pids() {
    local p
    { ip netns pids "$NS" 2>/dev/null
      for p in /proc/[0-9]*; do
          [ "$(readlink "$p/root" 2>/dev/null)" = "$ROOT" ] && echo "${p#/proc/}"
      done; } | sort -un
}

cleanup() {
    local rc=$? pids p m
    trap - EXIT INT TERM
    if ip netns list 2>/dev/null | grep -qw "$NS" && [ -d "$ROOT/root/pv" ]; then
        mkdir -p "$LOGDIR"
        in_ns 'tests/harness/openstack/stop.sh' >>"$LOGDIR/cleanup.log" 2>&1
        in_ns 'sh tests/harness/vcsim/stop.sh' >>"$LOGDIR/cleanup.log" 2>&1
    fi
    pids=$(chroot_pids)
    if [ -n "$pids" ]; then
        say "cleanup: SIGTERM to chroot pids ${pids//$'\n'/ }"
        for p in $pids; do kill -TERM "$p" 2>/dev/null; done
        sleep 3
        for p in $(chroot_pids); do kill -KILL "$p" 2>/dev/null; done
    fi
    for m in dev/pts dev sys proc; do
        mountpoint -q "$ROOT/$m" && { umount "$ROOT/$m" 2>/dev/null || umount -l "$ROOT/$m"; }
    done
    ip netns list 2>/dev/null | grep -qw "$NS" && ip netns del "$NS"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Commands in the chroot run with a clean environment; pip and Python use the chroot's CA bundle.
CENV=(env -i HOME=/root LANG=C.UTF-8 TERM=dumb PATH="$PATH" DEBIAN_FRONTEND=noninteractive
      SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt PIP_CERT=/etc/ssl/certs/ca-certificates.crt
      REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt)
for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
    [ -n "${!v:-}" ] && CENV+=("$v=${!v}")
done
in_host() { chroot "$ROOT" "${CENV[@]}" bash -c "cd /root/pv && $1"; }              # needs the network
in_ns() { ip netns exec "$NS" nice -n 10 chroot "$ROOT" "${CENV[@]}" bash -c "cd /root/pv && $1"; }

# ------------------------------------------------------------------ 1. the chroot
command -v debootstrap >/dev/null || apt-get install -y -q debootstrap >/dev/null || die "no debootstrap"
t0=$SECONDS
if ! grep -q '^13' "$ROOT/etc/debian_version" 2>/dev/null; then
    say "debootstrap trixie into $ROOT from $MIRROR"
    mkdir -p "$(dirname "$ROOT")"
    nice -n 10 debootstrap --variant=minbase trixie "$ROOT" "$MIRROR" >"/tmp/pv-trixie-debootstrap.log" 2>&1 \
        || { tail -20 /tmp/pv-trixie-debootstrap.log; die "debootstrap failed"; }
fi
mkdir -p "$LOGDIR"
cat >"$ROOT/etc/apt/sources.list" <<EOF
deb $MIRROR trixie main
deb $MIRROR trixie-updates main
deb $SECURITY trixie-security main
EOF
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
for m in proc sys dev dev/pts; do mountpoint -q "$ROOT/$m" || mount --bind "/$m" "$ROOT/$m"; done
ip netns list | grep -qw "$NS" || ip netns add "$NS"
ip netns exec "$NS" ip link set lo up

# The host's local CAs (e.g. of a registry proxy) so that pip in the chroot reaches PyPI like the host.
chroot "$ROOT" "${CENV[@]}" bash -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends ca-certificates >/dev/null' \
    || die "apt-get in the chroot failed"
if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/"
fi
chroot "$ROOT" update-ca-certificates >/dev/null 2>&1

# A clone of the committed HEAD (the clone's .state -- venvs, cloud state -- is kept unless --fresh)
if [ ! -d "$ROOT/root/pv/.git" ]; then
    git clone -q "$REPO" "$ROOT/root/pv" || die "git clone failed"
else
    { git -C "$ROOT/root/pv" fetch -q "$REPO" HEAD && git -C "$ROOT/root/pv" reset -q --hard FETCH_HEAD \
        && git -C "$ROOT/root/pv" clean -fdq; } || die "updating the clone failed"
fi
[ -n "$FRESH" ] && rm -rf "$ROOT/root/pv/.state" "$ROOT/root/pv/.venv"
say "chroot ready ($(cat "$ROOT/etc/debian_version"), repo $(git -C "$ROOT/root/pv" log --oneline -1 | cut -c1-60)) in $((SECONDS - t0)) s"

# ------------------------------------------------------------------ 2. the steps
RESULTS=()
declare -A OK
step() {  # step NAME in_host|in_ns COMMAND
    local name=$1 where=$2 cmd=$3 t=$SECONDS rc
    say "$name ..."
    # in the background + wait: a SIGTERM/SIGINT to this script runs the cleanup trap at once
    "$where" "$cmd" >"$LOGDIR/$name.log" 2>&1 &
    wait $!; rc=$?
    if [ $rc = 0 ]; then OK[$name]=1; else tail -25 "$LOGDIR/$name.log" >&2; fi
    RESULTS+=("$(printf '%-12s %-4s %5s s' "$name" "$([ $rc = 0 ] && echo ok || echo FAIL)" $((SECONDS - t)))")
    say "$name: rc=$rc in $((SECONDS - t)) s"
}
skip() { RESULTS+=("$(printf '%-12s skip (%s)' "$1" "$2")"); }

cat >"$ROOT/tmp/pv-smoke.py" <<'EOF'
import os
import time
os.environ['OS_CLIENT_CONFIG_FILE'] = '/root/pv/.state/openstack/clouds.yaml'
import openstack  # noqa: E402
t0 = time.monotonic()
c = openstack.connect(cloud='pvtest')
srv = c.compute.find_server('pv-docker-host', ignore_missing=False)
vol = c.block_storage.create_volume(size=1, name='pv-trixie-smoke')
vol = c.block_storage.wait_for_status(vol, 'available', failures=['error'], interval=1, wait=120)
c.compute.create_volume_attachment(srv, volume_id=vol.id)
vol = c.block_storage.wait_for_status(vol, 'in-use', failures=['error', 'error_attaching'], interval=1, wait=120)
assert [a['server_id'] for a in vol.attachments] == [srv.id], vol.attachments
print('in-use on', srv.name, round(time.monotonic() - t0, 1))
c.compute.delete_volume_attachment(srv, vol.id)
vol = c.block_storage.wait_for_status(vol, 'available', failures=['error', 'error_detaching'], interval=1, wait=120)
c.block_storage.delete_volume(vol)
c.block_storage.wait_for_delete(vol, interval=1, wait=120)
assert c.block_storage.find_volume('pv-trixie-smoke') is None
print('smoke ok in', round(time.monotonic() - t0, 1), 's')
EOF
cat >"$ROOT/tmp/pv-vcsim-probe.py" <<'EOF'
import re
import ssl
import sys
import urllib.error
import urllib.request
url = open('/root/pv/.state/vcsim/url').read().strip()
ctx = ssl._create_unverified_context()


def soap(body):
    env = ('<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
           'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>%s'
           '</soapenv:Body></soapenv:Envelope>' % body)
    req = urllib.request.Request(url, data=env.encode(), headers={'Content-Type': 'text/xml'})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


login = ('<Login xmlns="urn:vim25"><_this type="SessionManager">SessionManager</_this>'
         '<userName>user</userName><password>%s</password></Login>')
st, body = soap('<RetrieveServiceContent xmlns="urn:vim25"><_this type="ServiceInstance">'
                'ServiceInstance</_this></RetrieveServiceContent>')
ok, bad = soap(login % 'pass')[0], soap(login % 'wrong')[0]
print(url, st, re.search(r'<fullName>([^<]*)', body).group(1), 'login', ok, 'bad login', bad)
sys.exit(0 if (st, ok) == (200, 200) and bad != 200 else 1)
EOF

step apt-policy in_host 'set -e
pk=$(sed -n "/^PACKAGES=(/,/^)/p" scripts/bootstrap.sh | sed "1d;\$d"); bad=
for p in $pk docker-cli; do
    c=$(apt-cache policy "$p" | sed -n "s/ *Candidate: //p"); printf "%-16s %s\n" "$p" "${c:-MISSING}"
    case "$c" in ""|"(none)") bad="$bad $p" ;; esac
done
[ -z "$bad" ] || { echo "no trixie candidate:$bad"; exit 1; }'
step os-install in_host 'tests/harness/openstack/install.sh && .state/openstack/venv/bin/python -V && .state/openstack/venv/bin/pip check'
step bootstrap in_host 'PV_NO_DOCKER=1 bash scripts/bootstrap.sh'
if [ -n "${OK[bootstrap]:-}" ]; then
    step unit in_ns '.venv/bin/python -m pytest -q -p no:cacheprovider tests/unit'
else skip unit "bootstrap failed"; fi
if [ -n "${OK[os-install]:-}" ]; then
    step os-start in_ns 'tests/harness/openstack/start.sh'
    if [ -n "${OK[os-start]:-}" ]; then
        step os-smoke in_ns '.state/openstack/venv/bin/python /tmp/pv-smoke.py'
    else skip os-smoke "start failed"; fi
    step os-status in_ns 'tests/harness/openstack/status.sh'
    step os-stop in_ns 'tests/harness/openstack/stop.sh'
else
    for s in os-start os-smoke os-status os-stop; do skip $s "install failed"; done
fi
step vcsim-build in_host 'nice -n 10 sh tests/harness/vcsim/build.sh'
if [ -n "${OK[vcsim-build]:-}" ]; then
    step vcsim-run in_ns 'set -e; sh tests/harness/vcsim/start.sh; python3 /tmp/pv-vcsim-probe.py; sh tests/harness/vcsim/stop.sh'
else skip vcsim-run "build failed"; fi
sleep 1
left=$(chroot_pids)
if [ -z "$left" ]; then
    RESULTS+=("$(printf '%-12s ok   (no process of the chroot left)' leftovers)")
else
    RESULTS+=("$(printf '%-12s FAIL (left: %s)' leftovers "${left//$'\n'/ }")")
    ps -o pid,args -p "${left//$'\n'/,}" >&2
fi

echo "Debian $(cat "$ROOT/etc/debian_version"): $(chroot "$ROOT" dpkg-query -W -f='${Package} ${Version}, ' \
    python3 mariadb-server rabbitmq-server golang-go 2>/dev/null)"
printf '%s\n' "${RESULTS[@]}"
echo "logs: $LOGDIR; chroot size: $(du -sh --one-file-system "$ROOT" 2>/dev/null | cut -f1)"
printf '%s\n' "${RESULTS[@]}" | grep -q 'FAIL' && exit 1
exit 0
