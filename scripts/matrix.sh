#!/usr/bin/env bash
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# scripts/matrix.sh [oldest|newest|all] - the ansible-core support matrix the README claims, tested
# on this machine's controller Python (scripts/test.sh runs it as its `matrix` phase):
#   oldest  the oldest ansible-core the collection claims (meta/runtime.yml requires_ansible) that
#           supports this Python as controller: 2.16 on Python 3.10-3.12 (Debian 12: 3.11), 2.18 on 3.13
#           (Debian 13), 2.20 on 3.14 (ansible-core's own controller support; see CONTROLLER_FIRST)
#   newest  the newest ansible-core release pip finds for this Python (no upper bound is claimed);
#           skipped when it is the minor version of <repo>/.venv, which the main phases already test
#           (PV_MATRIX_FORCE=1 runs it anyway)
# Each version gets its own venv, .state/venv-core-<minor>-py<python> (ansible-core ==<minor>.*, pytest, the
# collection's Python requirements; rebuilt when that spec changes), and runs:
#   units    pytest tests/unit (fails when a test is skipped)
#   loop     pytest tests/integration/test_volume_loop.py (real loop devices, mounts, dockerd)
#   targets  scripts/ansible_test.sh integration (the ansible-test targets, with that ansible-test)
# Needs root, scripts/bootstrap.sh done (.venv, dockerd, test image).
# Cost (measured 2026-12-02 on the 2-core machine, shared, load 3-11): Debian 12 / Python 3.11 runs one
# extra version (2.16): venv 46 s (cold), units 14 s, loop 253 s, targets 94 s = 410 s; a Python 3.13
# controller runs two (2.18 and the newest, 2.21 then): 440 s + 710 s under load 11.
# The default leaves out `loop` (the ansible-test targets exercise the loop backend end to end under
# the same ansible-core; the deep pytest file adds ~4 min to CI): PV_MATRIX_PARTS="units loop targets".
# Environment: PV_MATRIX_PARTS (default "units targets"), PV_MATRIX_FORCE=1, PV_PYTHON (controller
# Python, default the one of .venv; e.g. a python3.13 to check the Debian 13 column from Debian 12).
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 1
MAIN_PY=$REPO/.venv/bin/python
STATE=$REPO/.state
RESULTS=$STATE/test-results
PARTS=${PV_MATRIX_PARTS:-units targets}
export PIP_DISABLE_PIP_VERSION_CHECK=1 ANSIBLE_NOCOLOR=1

log() { echo "matrix: $*" >&2; }

if [[ ! -x $MAIN_PY ]]; then
    log "no .venv: run scripts/bootstrap.sh first"
    exit 1
fi
# the controller Python: PV_PYTHON, else the one .venv was made with (scripts/bootstrap.sh: PV_PYTHON or
# the system python3)
BASE_PY=${PV_PYTHON:-$("$MAIN_PY" -c 'import sys; print(getattr(sys, "_base_executable", "") or sys.executable)')}
PYV=$("$BASE_PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])') || exit 1
MAIN_PYV=$("$MAIN_PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')

# first ansible-core release that supports each Python as controller (ansible-core's support matrix)
declare -A CONTROLLER_FIRST=([3.9]=2.11 [3.10]=2.12 [3.11]=2.14 [3.12]=2.16 [3.13]=2.18 [3.14]=2.20)

version_max() { printf '%s\n' "$@" | sort -V | tail -n1; }
minor() { echo "$1" | cut -d. -f1,2; }

claimed=$(sed -n 's/^requires_ansible:[[:space:]]*["'\'']*>=[[:space:]]*\([0-9][0-9]*\.[0-9][0-9]*\).*/\1/p' meta/runtime.yml)
if [[ -z $claimed ]]; then
    log "cannot read the minimum of requires_ansible in meta/runtime.yml"
    exit 1
fi
first=${CONTROLLER_FIRST[$PYV]:-}
if [[ -z $first ]]; then
    log "Python $PYV: not in CONTROLLER_FIRST (update the table from ansible-core's support matrix)"
    exit 1
fi
oldest=$(version_max "$claimed" "$first")
newest_full=$("$MAIN_PY" -m pip index versions ansible-core --python-version "$PYV" 2>/dev/null |
    sed -n 's/^ansible-core (\(.*\))$/\1/p')
if [[ -z $newest_full ]]; then
    log "pip index versions ansible-core gave no answer (no PyPI?)"
    exit 1
fi
newest=$(minor "$newest_full")
main_core=none   # .venv tests its ansible-core only when it runs on the same Python
if [[ $MAIN_PYV == "$PYV" ]]; then
    main_core=$(minor "$("$MAIN_PY" -c 'from ansible.release import __version__; print(__version__)')")
fi
log "Python $PYV; requires_ansible >=$claimed; oldest for this Python: $oldest; newest: $newest ($newest_full);" \
    ".venv has $main_core"

case ${1:-all} in
    oldest) versions=("$oldest") ;;
    newest) versions=("$newest") ;;
    all) versions=("$oldest"); [[ $newest != "$oldest" ]] && versions+=("$newest") ;;
    *)
        echo "usage: $0 [oldest|newest|all]" >&2
        exit 2
        ;;
esac

make_venv() { # make_venv MINOR -> path on stdout
    local ver=$1 venv=$STATE/venv-core-$1-py$PYV spec stamp
    spec="ansible-core==$ver.* pytest>=7 pytest-timeout>=2.3 $(sha256sum requirements.txt | cut -c1-16)"
    stamp=$venv/.pv-spec
    if [[ -x $venv/bin/python && -f $stamp && $(cat "$stamp") == "$spec" ]]; then
        echo "$venv"
        return 0
    fi
    log "creating $venv ($spec)"
    rm -rf "$venv"
    "$BASE_PY" -m venv "$venv" >&2 || return 1
    "$venv/bin/python" -m pip install -q "ansible-core==$ver.*" 'pytest>=7' 'pytest-timeout>=2.3' \
        -r requirements.txt 2>&1 | grep -v "^WARNING: Location" >&2
    "$venv/bin/python" -c 'import ansible, docker, jmespath, openstack, pyVmomi, pytest' >&2 || return 1
    echo "$spec" >"$stamp"
    echo "$venv"
}

count_skips() { # count_skips JUNIT: fail when no test ran or any was skipped
    "$MAIN_PY" - "$1" <<'PYEOF'
import sys
import xml.etree.ElementTree as ET

tests = skipped = 0
for suite in ET.parse(sys.argv[1]).getroot().iter('testsuite'):
    tests += int(suite.get('tests', 0))
    skipped += int(suite.get('skipped', 0))
print('matrix: %d tests, %d skipped' % (tests, skipped), file=sys.stderr)
sys.exit(0 if tests and not skipped else 1)
PYEOF
}

mkdir -p "$RESULTS"
rc=0
declare -a SUMMARY
for ver in "${versions[@]}"; do
    if [[ $ver == "$main_core" && -z ${PV_MATRIX_FORCE:-} && ${1:-all} == all ]]; then
        log "ansible-core $ver: the .venv of the main phases (pytest, ansible-test units/integration) tests it"
        SUMMARY+=("$ver: covered by .venv")
        continue
    fi
    t0=$SECONDS
    venv=$(make_venv "$ver") || { log "ansible-core $ver: venv failed"; rc=1; SUMMARY+=("$ver venv: FAILED"); continue; }
    core=$("$venv/bin/python" -c 'from ansible.release import __version__; print(__version__)')
    SUMMARY+=("ansible-core $core venv: $((SECONDS - t0)) s")
    for part in $PARTS; do
        t=$SECONDS
        prc=0
        log "ansible-core $core: $part"
        case $part in
            units)
                "$venv/bin/python" -m pytest -p no:cacheprovider -q -ra tests/unit \
                    --junitxml="$RESULTS/matrix-$ver-units.xml" || prc=$?
                ((prc != 0)) || count_skips "$RESULTS/matrix-$ver-units.xml" || prc=1
                ;;
            loop)
                "$venv/bin/python" -m pytest -p no:cacheprovider -q -ra tests/integration/test_volume_loop.py \
                    --junitxml="$RESULTS/matrix-$ver-loop.xml" || prc=$?
                ((prc != 0)) || count_skips "$RESULTS/matrix-$ver-loop.xml" || prc=1
                ;;
            targets)
                PV_VENV=$venv bash scripts/ansible_test.sh integration || prc=$?
                ;;
            *)
                log "unknown part $part"
                prc=2
                ;;
        esac
        SUMMARY+=("ansible-core $core $part: $([[ $prc == 0 ]] && echo passed || echo "FAILED rc=$prc") in $((SECONDS - t)) s")
        ((prc == 0)) || rc=1
    done
done
for line in "${SUMMARY[@]}"; do log "$line"; done
exit $rc
