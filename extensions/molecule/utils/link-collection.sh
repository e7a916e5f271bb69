#!/usr/bin/env bash
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# extensions/molecule/utils/link-collection.sh
#
# Molecule "dependency" step of every scenario here: makes the collection resolvable as
# persistent_volumes.docker WITHOUT building and installing a copy (the scenarios set
# `prerun: false`, so molecule does not run `ansible-galaxy collection build/install`):
#   <repo>/.state/molecule/collections/ansible_collections/persistent_volumes/docker -> <repo>
# The scenarios point ANSIBLE_COLLECTIONS_PATH at <repo>/.state/molecule/collections, so the
# roles and modules run straight from the working tree. Idempotent; safe to run concurrently.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
NS_DIR=$REPO/.state/molecule/collections/ansible_collections/persistent_volumes
LINK=$NS_DIR/docker

mkdir -p "$NS_DIR"
if [[ $(readlink "$LINK" 2>/dev/null || true) != "$REPO" ]]; then
    # build the new link beside the old one and rename it over (atomic for concurrent runs)
    tmp=$NS_DIR/.docker.$$
    ln -sfn "$REPO" "$tmp"
    mv -Tf "$tmp" "$LINK"
    echo "link-collection.sh: $LINK -> $REPO"
fi
