#!/usr/bin/env bash
# shellcheck disable=SC2317  # functions below are called through phase()
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# scripts/test.sh - the whole test suite (what .ci/run runs):
#   1. scripts/bootstrap.sh (packages, .venv, dockerd, test image)
#   2. pytest over tests/unit and tests/integration (real ansible-playbook runs as root,
#      real dockerd, loop devices, mounts). The OpenStack test cloud and the vSphere
#      simulator are started by the session fixtures of their own tests.
#   3. scripts/sanity.sh (ansible-test sanity + ansible-lint)
#   4. scripts/release-checks.sh (galaxy-importer on the built tarball, antsibull-changelog lint,
#      ansible-builder introspect/create, antsibull-docs lint, the docs site, its screenshot test;
#      own venv .state/release-venv; apt-installs chromium when missing)
# All phases run; the exit code is non-zero when any of them failed.
#
# Environment:
#   PV_PYTEST_ARGS    extra pytest arguments, e.g. '-m "not slow"' or '-k loop -x'
#   PV_TEST_SERVICES  services to start BEFORE pytest and stop after it, space/comma
#                     separated names of tests/harness/<name>/ with start.sh/stop.sh
#                     (e.g. "openstack vcsim"); normally unneeded: fixtures start them.
#   PV_SKIP_SANITY=1  skip phase 3;  PV_SKIP_PYTEST=1  skip phase 2;  PV_SKIP_RELEASE=1  skip phase 4
# Results: .state/test-results/junit.xml
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 1
RESULTS=$REPO/.state/test-results
declare -A PHASE_RC PHASE_TIME
PHASES=()

INTERRUPTED=
trap 'INTERRUPTED=1' INT TERM   # children get the signal too (timeout signals the group)

phase() { # phase NAME CMD... : run, record rc and time; skipped once interrupted
    local name=$1 t0=$SECONDS rc=0
    shift
    if [[ -n $INTERRUPTED ]]; then
        echo "test.sh: interrupted: skipping phase $name" >&2
        return 0
    fi
    echo
    echo "==================== $name ===================="
    "$@" || rc=$?
    PHASES+=("$name")
    PHASE_RC[$name]=$rc
    PHASE_TIME[$name]=$((SECONDS - t0))
    echo "==================== $name: rc=$rc in $((SECONDS - t0)) s ===================="
    return 0
}

run_pytest() {
    mkdir -p "$RESULTS"
    local unit_tests dirs=()
    unit_tests=$(find tests/unit -name 'test_*.py' 2>/dev/null | wc -l)
    ((unit_tests > 0)) || echo "test.sh: WARNING: no unit test files under tests/unit"
    for d in tests/unit tests/integration; do
        [[ -d $d ]] && dirs+=("$d")
    done
    local args=()
    if [[ -n ${PV_PYTEST_ARGS:-} ]]; then
        eval "args=(${PV_PYTEST_ARGS})"
    fi
    local rc=0
    "$REPO/.venv/bin/python" -m pytest -p no:cacheprovider -v -ra --durations=20 \
        --junitxml="$RESULTS/junit.xml" "${dirs[@]}" "${args[@]}" || rc=$?
    if ((rc == 5)); then
        echo "test.sh: pytest collected no tests (exit 5): the suite must not be empty" >&2
    fi
    return "$rc"
}

STARTED_SERVICES=()
start_services() {
    local svc
    for svc in ${PV_TEST_SERVICES//,/ }; do
        local dir=$REPO/tests/harness/$svc
        if [[ ! -f $dir/start.sh ]]; then
            echo "test.sh: PV_TEST_SERVICES: no $dir/start.sh" >&2
            return 1
        fi
        bash "$dir/start.sh" || return 1
        STARTED_SERVICES+=("$svc")
    done
}
stop_services() {
    local i
    for ((i = ${#STARTED_SERVICES[@]} - 1; i >= 0; i--)); do
        local dir=$REPO/tests/harness/${STARTED_SERVICES[$i]}
        if [[ -f $dir/stop.sh ]]; then bash "$dir/stop.sh" || true; fi
    done
    STARTED_SERVICES=()
}
trap stop_services EXIT

T0=$SECONDS
phase bootstrap bash scripts/bootstrap.sh
if ((PHASE_RC[bootstrap] != 0)); then
    echo "test.sh: bootstrap failed; not running the tests" >&2
    exit 1
fi
export PATH=$REPO/.venv/bin:$PATH

if [[ -n ${PV_TEST_SERVICES:-} ]]; then
    phase services start_services
fi
if [[ -z ${PV_SKIP_PYTEST:-} ]]; then
    phase pytest run_pytest
fi
stop_services
if [[ -z ${PV_SKIP_SANITY:-} ]]; then
    phase sanity bash scripts/sanity.sh
fi
if [[ -z ${PV_SKIP_RELEASE:-} ]]; then
    phase release bash scripts/release-checks.sh
fi

echo
echo "==================== summary ===================="
rc=0
for name in "${PHASES[@]}"; do
    printf '%-10s rc=%-3s %5s s\n' "$name" "${PHASE_RC[$name]}" "${PHASE_TIME[$name]}"
    ((PHASE_RC[$name] == 0)) || rc=1
done
[[ -z $INTERRUPTED ]] || { echo "interrupted"; rc=1; }
echo "total: $((SECONDS - T0)) s -> $([[ $rc == 0 ]] && echo PASSED || echo FAILED)"
exit $rc
