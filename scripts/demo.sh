#!/usr/bin/env bash
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# scripts/demo.sh - the main job on this machine, with the default loop backend:
#   1. scripts/bootstrap.sh: system packages, .venv with ansible-core + the Docker SDK,
#      a running Docker engine (Debian's docker.io, started if none runs), a busybox test image
#   2. ansible-playbook playbooks/site.yml with the shipped inventory (localhost, one demo volume)
#   3. proof: a container writes to the volume, is removed, a new container reads the same bytes
# Extra arguments go to ansible-playbook (e.g. --check --diff).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

bash scripts/bootstrap.sh

# make the working tree importable as persistent_volumes.docker
COLL=$REPO/.state/collections/ansible_collections/persistent_volumes
mkdir -p "$COLL"
ln -sfn "$REPO" "$COLL/docker"
export ANSIBLE_COLLECTIONS_PATH=$REPO/.state/collections
export PATH=$REPO/.venv/bin:$PATH

ansible-playbook -i playbooks/inventory/hosts.yml playbooks/site.yml "$@"
case " $* " in *" --check "*|*" -C "*) exit 0 ;; esac

IMAGE=$(bash tests/harness/image.sh | tail -n 1)
stamp="written by container A at $(date -u +%FT%TZ)"
echo
echo "demo: container A writes to the Docker volume pv-demo, then is removed"
docker run --rm -v pv-demo:/data "$IMAGE" sh -c "echo '$stamp' > /data/hello.txt && sync"
echo "demo: a new container B reads it back:"
got=$(docker run --rm -v pv-demo:/data "$IMAGE" cat /data/hello.txt)
echo "  $got"
[[ $got == "$stamp" ]] || { echo "demo: MISMATCH" >&2; exit 1; }
echo "demo: the data lives on $(findmnt -n -o SOURCE,FSTYPE --target /var/lib/persistent-volumes/mounts/pv-demo)" \
     "backed by /var/lib/persistent-volumes/images/pv-demo.img, listed in /etc/fstab"
echo "demo: inspect with: ansible -i playbooks/inventory/hosts.yml localhost -m persistent_volumes.docker.volume_info"
