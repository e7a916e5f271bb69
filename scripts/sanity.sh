#!/usr/bin/env bash
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# scripts/sanity.sh [ansible-test sanity args...] - static checks of the collection:
#   1. ansible-test sanity --python <venv python> --requirements (local, no containers) on a
#      temporary copy of the collection at <tmp>/ansible_collections/persistent_volumes/docker
#      (tracked + untracked non-ignored files, in its own throw-away git repository)
#   2. ansible-lint --offline (configuration: .ansible-lint)
# Needs .venv (scripts/bootstrap.sh). The tree and the stand-in for ansible-test's pip bootstrap
# (its download host is not reachable here) come from scripts/lib/ansible_test.sh.
# Environment: PV_SANITY_KEEP=1 keeps the temp tree; PV_SKIP_LINT=1, PV_SKIP_ANSIBLE_TEST=1.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=$REPO/.venv
PY=$VENV/bin/python
export PATH=$VENV/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export ANSIBLE_NOCOLOR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
NS=persistent_volumes
NAME=docker

log() { echo "sanity: $*" >&2; }

if [[ ! -x $PY ]]; then
    log "no $VENV: run scripts/bootstrap.sh first"
    exit 1
fi
PYV=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')

# shellcheck source=scripts/lib/ansible_test.sh
. "$REPO/scripts/lib/ansible_test.sh"   # pv_write_get_pip, pv_make_tree

rc=0
T0=$SECONDS
if [[ -z ${PV_SKIP_ANSIBLE_TEST:-} ]]; then
    pv_write_get_pip "$PY" || exit 1
    pv_make_tree "$REPO" || exit 1
    COLL=$PV_COLL
    [[ -n ${PV_SANITY_KEEP:-} ]] || trap 'rm -rf "$PV_TREE"' EXIT
    log "ansible-test sanity --python $PYV in $COLL"
    t=$SECONDS
    (cd "$COLL" && ansible-test sanity --python "$PYV" --requirements --color no "$@") || rc=1
    log "ansible-test sanity: $([[ $rc == 0 ]] && echo passed || echo FAILED) in $((SECONDS - t)) s"
fi

if [[ -z ${PV_SKIP_LINT:-} ]]; then
    t=$SECONDS
    lrc=0
    log "ansible-lint --offline"
    LTMP=$(mktemp -d /tmp/pv-lint.XXXXXX)
    mkdir -p "$LTMP/ansible_collections/$NS"
    ln -s "$REPO" "$LTMP/ansible_collections/$NS/$NAME"
    (cd "$REPO" && ANSIBLE_COLLECTIONS_PATH=$LTMP ansible-lint --offline --nocolor) || lrc=$?
    rm -rf "$LTMP"
    log "ansible-lint: $([[ $lrc == 0 ]] && echo passed || echo "FAILED (rc=$lrc)") in $((SECONDS - t)) s"
    ((lrc == 0)) || rc=1
fi
log "total $((SECONDS - T0)) s"
exit $rc
