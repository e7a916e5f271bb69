#!/usr/bin/env bash
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# scripts/sanity.sh [ansible-test sanity args...] - static checks of the collection:
#   1. ansible-test sanity --python <venv python> --requirements (local, no containers) on a
#      temporary copy of the collection at <tmp>/ansible_collections/persistent_volumes/docker
#      (tracked + untracked non-ignored files, in its own throw-away git repository)
#   2. ansible-lint --offline (configuration: .ansible-lint)
# Needs .venv (scripts/bootstrap.sh). ansible-test bootstraps pip in its sanity venvs with a
# script it downloads from a host that is not reachable here; it uses a cached copy first,
# so this script writes a stand-in (~/.ansible/test/cache/get_pip_<ver>.py) that installs
# pip from a wheel fetched from PyPI with the venv's pip.
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

# ------------------------------------------------------------ get-pip stand-in
write_get_pip() {
    local pipver cache wheel_dir wheel
    pipver=$("$PY" - <<'PYEOF'
import types
try:
    from ansible_test._internal.python_requirements import get_venv_packages
    print(get_venv_packages(types.SimpleNamespace(version='3'))['pip'])
except Exception:
    print('24.2')
PYEOF
)
    cache=$HOME/.ansible/test/cache
    wheel_dir=$cache/pip-wheels
    mkdir -p "$wheel_dir"
    wheel=$(find "$wheel_dir" -maxdepth 1 -name "pip-$pipver-*.whl" | head -n1)
    if [[ -z $wheel ]]; then
        "$PY" -m pip download -q --no-deps --only-binary=:all: -d "$wheel_dir" "pip==$pipver" 2>&1 |
            grep -v '^WARNING: Location' >&2
        wheel=$(find "$wheel_dir" -maxdepth 1 -name "pip-$pipver-*.whl" | head -n1)
    fi
    if [[ -z $wheel ]]; then
        log "could not fetch the pip $pipver wheel"
        return 1
    fi
    local target=$cache/get_pip_${pipver//./_}.py
    cat >"$target.tmp" <<PYEOF
# Stand-in for https://ci-files.testing.ansible.com/ansible-test/get-pip-$pipver.py, written by
# scripts/sanity.sh of persistent_volumes.docker (that host is unreachable here).
# ansible-test runs it as pip's entry point with pip-install arguments: install pip from
# the local wheel (run straight from the wheel, as get-pip does), dropping get-pip-only flags.
import sys

WHEEL = '$wheel'


def main():
    sys.path.insert(0, WHEEL)
    from pip._internal.cli.main import main as pip_main
    args = []
    for arg in sys.argv[1:]:
        if arg in ('--no-setuptools', '--no-wheel'):
            continue
        if arg.startswith('pip=='):
            arg = WHEEL
        args.append(arg)
    return pip_main(['install', '--upgrade', '--force-reinstall', '--no-index'] + args)


if __name__ == '__main__':
    sys.exit(main())
PYEOF
    mv "$target.tmp" "$target"
}

# ------------------------------------------------------------ collection tree
make_tree() {
    TMP=$(mktemp -d /tmp/pv-sanity.XXXXXX)
    COLL=$TMP/ansible_collections/$NS/$NAME
    mkdir -p "$COLL"
    (cd "$REPO" && git ls-files -z --cached --others --exclude-standard) |
        (cd "$REPO" && while IFS= read -r -d '' f; do [[ -e $f || -L $f ]] && printf '%s\0' "$f"; done) |
        (cd "$REPO" && tar --null -T - -cf -) | tar -C "$COLL" -xf -
    (cd "$COLL" && git init -q && git add -A . && git -c user.name=sanity -c user.email=sanity@localhost \
        commit -q -m sanity --no-verify) || return 1
}

rc=0
T0=$SECONDS
if [[ -z ${PV_SKIP_ANSIBLE_TEST:-} ]]; then
    write_get_pip || exit 1
    make_tree || exit 1
    [[ -n ${PV_SANITY_KEEP:-} ]] || trap 'rm -rf "$TMP"' EXIT
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
