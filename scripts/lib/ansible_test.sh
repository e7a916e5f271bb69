# shellcheck shell=bash
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# scripts/lib/ansible_test.sh - sourced (never run) by scripts/sanity.sh and scripts/ansible_test.sh:
# what every ansible-test run needs here, in one place.
#   pv_write_get_pip PY  ansible-test bootstraps pip in the venvs it makes with a script it downloads
#                        from a host that is not reachable here; it uses a cached copy first, so this
#                        writes a stand-in (~/.ansible/test/cache/get_pip_<ver>.py) that installs pip
#                        from a wheel fetched from PyPI with PY's pip (PY: a python with ansible-test).
#   pv_make_tree REPO    a throw-away copy of the collection at
#                        $PV_TREE/ansible_collections/persistent_volumes/docker (= $PV_COLL), with the
#                        tracked + untracked non-ignored files, in its own git repository (ansible-test
#                        wants that layout and asks git for the file list). The caller removes $PV_TREE.
PV_NS=persistent_volumes
PV_NAME=docker

pv_write_get_pip() {
    local py=$1 pipver cache wheel_dir wheel
    pipver=$("$py" - <<'PYEOF'
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
        "$py" -m pip download -q --no-deps --only-binary=:all: -d "$wheel_dir" "pip==$pipver" 2>&1 |
            grep -v '^WARNING: Location' >&2
        wheel=$(find "$wheel_dir" -maxdepth 1 -name "pip-$pipver-*.whl" | head -n1)
    fi
    if [[ -z $wheel ]]; then
        echo "ansible_test.sh: could not fetch the pip $pipver wheel" >&2
        return 1
    fi
    local target=$cache/get_pip_${pipver//./_}.py
    cat >"$target.tmp" <<PYEOF
# Stand-in for https://ci-files.testing.ansible.com/ansible-test/get-pip-$pipver.py, written by
# scripts/lib/ansible_test.sh of persistent_volumes.docker (that host is unreachable here).
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

pv_make_tree() {
    local repo=$1
    PV_TREE=$(mktemp -d /tmp/pv-ansible-test.XXXXXX)
    PV_COLL=$PV_TREE/ansible_collections/$PV_NS/$PV_NAME
    mkdir -p "$PV_COLL"
    (cd "$repo" && git ls-files -z --cached --others --exclude-standard) |
        (cd "$repo" && while IFS= read -r -d '' f; do [[ -e $f || -L $f ]] && printf '%s\0' "$f"; done) |
        (cd "$repo" && tar --null -T - -cf -) | tar -C "$PV_COLL" -xf -
    (cd "$PV_COLL" && git init -q && git add -A . && git -c user.name=ansible-test -c user.email=ansible-test@localhost \
        commit -q -m ansible-test --no-verify) || return 1
}
