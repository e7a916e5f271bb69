#!/usr/bin/env bash
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# scripts/ansible_test.sh units|integration [ansible-test args...] - the standard ansible-test entry
# points on a throw-away ansible_collections/persistent_volumes/docker tree (scripts/lib/ansible_test.sh):
#   units        ansible-test units --venv --requirements (its own venv with its pytest set plus
#                tests/unit/requirements.txt); fails when any unit test is skipped or none ran.
#   integration  ansible-test integration --local --allow-destructive: the targets under
#                tests/integration/targets (loop backend; root, dockerd, loop devices), with the
#                python of PV_VENV as controller and managed host (it has docker and jmespath).
# Environment:
#   PV_VENV            venv whose ansible-core (ansible-test) runs the tests (default: <repo>/.venv);
#                      scripts/matrix.sh points it at .state/venv-core-<version>
#   PV_ANSIBLE_TEST_KEEP=1  keep the temp tree (its tests/output has the junit and json results)
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${PV_VENV:-$REPO/.venv}
PY=$VENV/bin/python
export PATH=$VENV/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export ANSIBLE_NOCOLOR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

log() { echo "ansible_test.sh: $*" >&2; }

cmd=${1:-}
shift || true
case $cmd in
    units | integration) ;;
    *)
        echo "usage: $0 units|integration [ansible-test args...]" >&2
        exit 2
        ;;
esac
if [[ ! -x $VENV/bin/ansible-test ]]; then
    log "no ansible-test in $VENV: run scripts/bootstrap.sh first"
    exit 1
fi
PYV=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
CORE=$("$PY" -c 'from ansible.release import __version__; print(__version__)')

# shellcheck source=scripts/lib/ansible_test.sh
. "$REPO/scripts/lib/ansible_test.sh"   # pv_write_get_pip, pv_make_tree

pv_write_get_pip "$PY" || exit 1
pv_make_tree "$REPO" || exit 1
if [[ -n ${PV_ANSIBLE_TEST_KEEP:-} ]]; then
    log "keeping $PV_TREE"
else
    trap 'rm -rf "$PV_TREE"' EXIT
fi

t0=$SECONDS
rc=0
log "ansible-core $CORE, Python $PYV: ansible-test $cmd in $PV_COLL"
cd "$PV_COLL" || exit 1
if [[ $cmd == units ]]; then
    ansible-test units --venv --python "$PYV" --requirements --color no "$@" || rc=$?
    # no skipped test passes for done: count them in ansible-test's junit output
    if ((rc == 0)); then
        "$PY" - tests/output/junit/*units*.xml <<'PYEOF' || rc=1
import sys
import xml.etree.ElementTree as ET

tests = skipped = 0
for path in sys.argv[1:]:
    for suite in ET.parse(path).getroot().iter('testsuite'):
        tests += int(suite.get('tests', 0))
        skipped += int(suite.get('skipped', 0))
print('ansible_test.sh: units: %d tests, %d skipped' % (tests, skipped), file=sys.stderr)
sys.exit(0 if tests and not skipped else 1)
PYEOF
    fi
else
    ansible-test integration --local --python "$PYV" --allow-destructive --color no "$@" || rc=$?
fi
log "ansible-test $cmd (ansible-core $CORE, Python $PYV): $([[ $rc == 0 ]] && echo passed || echo "FAILED rc=$rc") in $((SECONDS - t0)) s"
exit $rc
