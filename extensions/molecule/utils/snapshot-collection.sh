#!/usr/bin/env bash
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# extensions/molecule/utils/snapshot-collection.sh SCENARIO
#
# Molecule "dependency" step of the scenarios here (the first step of every sequence): a
# snapshot of the collection's content (galaxy.yml, meta, plugins, roles, playbooks) at
#   <repo>/.state/molecule/SCENARIO/collections/ansible_collections/persistent_volumes/docker
# which the scenario's ANSIBLE_COLLECTIONS_PATH points at. A snapshot, not a symlink to the
# working tree: converge and idempotence must run the same code even while the tree is being
# edited (the volume_plugin role installs the collection's module_utils and upgrades the
# daemon when they change). Not `ansible-galaxy collection build/install` either (molecule's
# prerun, turned off with `prerun: false`): a copy of five entries takes milliseconds.
# One snapshot per scenario, replaced by a rename, so scenarios can run side by side.
set -euo pipefail

SCENARIO=${1:?usage: snapshot-collection.sh SCENARIO}
[[ $SCENARIO =~ ^[A-Za-z0-9_.-]+$ ]] || { echo "snapshot-collection.sh: bad scenario name" >&2; exit 2; }
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
NS_DIR=$REPO/.state/molecule/$SCENARIO/collections/ansible_collections/persistent_volumes
DEST=$NS_DIR/docker

mkdir -p "$NS_DIR"
tmp=$(mktemp -d "$NS_DIR/.docker.new.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
for entry in galaxy.yml meta plugins roles playbooks; do
    [[ -e $REPO/$entry ]] && cp -a "$REPO/$entry" "$tmp/"
done
find "$tmp" -name __pycache__ -type d -prune -exec rm -rf {} +
chmod 0755 "$tmp"
if [[ -e $DEST ]]; then
    old=$(mktemp -d "$NS_DIR/.docker.old.XXXXXX")
    mv -T "$DEST" "$old/docker"
    mv -T "$tmp" "$DEST"
    rm -rf "$old"
else
    mv -T "$tmp" "$DEST"
fi
trap - EXIT
echo "snapshot-collection.sh: $DEST ($(find "$DEST" -type f | wc -l) files)"
