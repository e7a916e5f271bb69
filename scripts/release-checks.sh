#!/usr/bin/env bash
# shellcheck disable=SC2317  # the step functions are called through step()
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# scripts/release-checks.sh - what publishing the collection needs, checked on the collection as
# built (a phase of scripts/test.sh, also runs alone; root only for the apt step):
#   tools      .state/release-venv from tests/release/requirements.txt (reinstalled only when that
#              file or the Python changes), Debian's chromium when it is missing
#   build      the tarball, built from a copy of the tracked tree; Galaxy requires `repository`,
#              which galaxy.yml leaves out (no public home yet): it is added to the copy from
#              PV_RELEASE_REPOSITORY, else a file:// URL of this checkout (not publishable)
#   importer   galaxy-importer on the tarball (ansible-doc, ansible-lint, role READMEs, ...)
#   changelog  antsibull-changelog lint, changelog.yaml lint, CHANGELOG.rst up to date
#   ee         ansible-builder introspect on the installed tarball (controller-side requirements
#              only) and ansible-builder create (a complete build context; building the image
#              needs a container registry, which is not reachable here)
#   docs-lint  antsibull-docs lint-collection-docs --plugin-docs
#   docs       antsibull-docs sphinx-init + collection + sphinx-build -n -W (docs/site)
#   screenshot headless Chromium renders the volume module's page to a PNG
#   pytest     tests/release: every module/role page, internal links, the screenshot
# All steps run (a step whose input failed is skipped); the exit code is non-zero when any failed.
# Output: .state/release/ (dist/, site/build/html/, screenshot.png, *.log).
# Environment: PV_RELEASE_REPOSITORY (see build), PV_RELEASE_OUT (default .state/release).
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=$REPO/.state/release-venv
OUT=${PV_RELEASE_OUT:-$REPO/.state/release}
NS=persistent_volumes
NAME=docker
export PATH=$VENV/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export ANSIBLE_NOCOLOR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 DEBIAN_FRONTEND=noninteractive
unset ANSIBLE_COLLECTIONS_PATHS

log() { echo "release-checks: $*" >&2; }

declare -A STEP_RC STEP_TIME
STEPS=()
step() { # step NAME CMD... : run, record rc and time
    local name=$1 t0=$SECONDS rc=0
    shift
    log "---- $name"
    "$@" || rc=$?
    STEPS+=("$name")
    STEP_RC[$name]=$rc
    STEP_TIME[$name]=$((SECONDS - t0))
    log "---- $name: $([[ $rc == 0 ]] && echo ok || echo "FAILED (rc=$rc)") in $((SECONDS - t0)) s"
}
ok() { [[ ${STEP_RC[$1]:-1} == 0 ]]; }
skip() { log "---- $1: skipped ($2 failed)"; STEPS+=("$1"); STEP_RC[$1]=1; STEP_TIME[$1]=0; }

# ------------------------------------------------------------------ tools
tools() {
    local py=/usr/bin/python3 stamp want
    [[ -x $py ]] || py=$(command -v python3)
    want=$( (cat "$REPO/tests/release/requirements.txt"; "$py" --version) | sha256sum | cut -d' ' -f1)
    stamp=$VENV/.pv-requirements.sha256
    if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]] || ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
        log "creating $VENV ($("$py" --version 2>&1))"
        rm -rf "$VENV"
        "$py" -m venv "$VENV" || return 1
        "$VENV/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' >&2
        "$VENV/bin/python" -m pip install -q -r "$REPO/tests/release/requirements.txt" 2>&1 |
            grep -v '^WARNING: Location' >&2
        "$VENV/bin/python" -c 'import galaxy_importer, antsibull_changelog, antsibull_docs, ansible_builder, sphinx' ||
            return 1
        echo "$want" >"$stamp"
    else
        log "release venv up to date"
    fi
    if ! command -v chromium >/dev/null 2>&1; then
        if [[ $(id -u) -ne 0 ]]; then
            log "chromium missing and not root: install Debian's chromium package"
            return 1
        fi
        log "apt-get install chromium"
        local t=$SECONDS pkgs=(chromium fonts-dejavu-core)
        apt-get install -y -q --no-install-recommends "${pkgs[@]}" >"$OUT/apt.log" 2>&1 ||
            { apt-get update -q >>"$OUT/apt.log" 2>&1 &&
                apt-get install -y -q --no-install-recommends "${pkgs[@]}" >>"$OUT/apt.log" 2>&1; } ||
            { tail -20 "$OUT/apt.log" >&2; return 1; }
        log "chromium installed in $((SECONDS - t)) s"
    fi
}

# ------------------------------------------------------------------ build
TREE=$OUT/tree/ansible_collections/$NS/$NAME
build() {
    rm -rf "$OUT/tree" "$OUT/dist" "$OUT/installed"
    mkdir -p "$TREE" "$OUT/dist"
    (cd "$REPO" && git ls-files -z --cached --others --exclude-standard) |
        (cd "$REPO" && while IFS= read -r -d '' f; do [[ -e $f || -L $f ]] && printf '%s\0' "$f"; done) |
        (cd "$REPO" && tar --null -T - -cf -) | tar -C "$TREE" -xf - || return 1
    local url=${PV_RELEASE_REPOSITORY:-}
    if [[ -z $url ]]; then
        url="file://$REPO"
        log "PV_RELEASE_REPOSITORY unset: repository: $url in the checked build (NOT publishable)"
    fi
    if grep -q '^repository:' "$TREE/galaxy.yml"; then
        log "galaxy.yml sets repository itself: using it"
    else
        printf 'repository: %s\n' "$url" >>"$TREE/galaxy.yml"
    fi
    ansible-galaxy collection build --force --output-path "$OUT/dist" "$TREE" || return 1
    TARBALL=$(find "$OUT/dist" -name "$NS-$NAME-*.tar.gz" | head -n1)
    [[ -f $TARBALL ]] || return 1
    log "$(basename "$TARBALL"): $(du -k "$TARBALL" | cut -f1) KiB"
    ansible-galaxy collection install --no-deps --force -p "$OUT/installed" "$TARBALL" 2>&1 |
        grep -v 'is not part of the configured Ansible collections paths' >&2
    local coll=$OUT/installed/ansible_collections/$NS/$NAME f role missing=()
    [[ -f $coll/MANIFEST.json ]] || return 1
    # what a published collection must carry (galaxy-importer checks only some of it)
    for f in LICENSE README.md CHANGELOG.rst changelogs/changelog.yaml meta/runtime.yml \
        meta/execution-environment.yml meta/ee-requirements.txt meta/ee-bindep.txt; do
        [[ -f $coll/$f ]] || missing+=("$f")
    done
    for role in "$TREE"/roles/*/; do
        role=$(basename "$role")
        [[ -f $coll/roles/$role/README.md ]] || missing+=("roles/$role/README.md")
    done
    if ((${#missing[@]})); then
        log "the tarball lacks: ${missing[*]}"
        return 1
    fi
    if [[ -e $coll/docs/site || -e $coll/tests ]]; then
        log "the tarball carries build-only files (docs/site or tests): check build_ignore"
        return 1
    fi
}

# ------------------------------------------------------------------ galaxy-importer
importer() {
    cat >"$OUT/galaxy-importer.cfg" <<'EOF'
[galaxy-importer]
LOG_LEVEL_MAIN = INFO
RUN_ANSIBLE_DOC = True
RUN_ANSIBLE_LINT = True
RUN_ANSIBLE_TEST = False
CHECK_CHANGELOG = True
EOF
    local rc=0
    (cd "$OUT/dist" && GALAXY_IMPORTER_CONFIG=$OUT/galaxy-importer.cfg \
        python -m galaxy_importer.main "$TARBALL") >"$OUT/galaxy-importer.log" 2>&1 || rc=$?
    grep -v '^Loading ' "$OUT/galaxy-importer.log" >&2
    ((rc == 0)) || return "$rc"
    grep -q 'Importer processing completed successfully' "$OUT/galaxy-importer.log" || return 1
    if grep -qE '^(WARNING|ERROR)' "$OUT/galaxy-importer.log"; then
        log "galaxy-importer passed with warnings: fix them"
        return 1
    fi
}

# ------------------------------------------------------------------ changelog
changelog() {
    (cd "$REPO" && antsibull-changelog lint) || return 1
    antsibull-changelog lint-changelog-yaml "$REPO/changelogs/changelog.yaml" || return 1
    # CHANGELOG.rst is generated: it must be what changelog.yaml renders to
    (cd "$TREE" && antsibull-changelog generate) || return 1
    if ! cmp -s "$TREE/CHANGELOG.rst" "$REPO/CHANGELOG.rst"; then
        diff -u "$REPO/CHANGELOG.rst" "$TREE/CHANGELOG.rst" | head -40 >&2
        log "CHANGELOG.rst is not what changelogs/changelog.yaml renders to: run antsibull-changelog generate"
        return 1
    fi
}

# ------------------------------------------------------------------ execution environment
ee() {
    local coll=$OUT/installed/ansible_collections/$NS/$NAME deps
    [[ -f $coll/meta/execution-environment.yml ]] || { log "meta/execution-environment.yml not in the tarball"; return 1; }
    deps=$(ansible-builder introspect "$OUT/installed") || return 1
    echo "$deps" >&2
    local want bad
    for want in openstacksdk pyvmomi ca-certificates; do
        grep -q "^- '$want" <<<"$deps" || { log "EE requirements lack $want"; return 1; }
    done
    # managed-host requirements (requirements.txt, bindep.txt) must not reach the controller image
    for bad in docker jmespath docker.io e2fsprogs xfsprogs util-linux fdisk; do
        if grep -q "^- '${bad}[ >=<\[]" <<<"$deps"; then
            log "EE requirements contain the managed-host requirement $bad"
            return 1
        fi
    done
    rm -rf "$OUT/ee"
    cp -r "$REPO/tests/release/ee" "$OUT/ee"
    cp "$TARBALL" "$OUT/ee/$NS-$NAME.tar.gz"
    (cd "$OUT/ee" && ansible-builder create -f execution-environment.yml -c context --output-filename Containerfile) ||
        return 1
    local f
    for f in Containerfile _build/requirements.yml "_build/collections/$NS-$NAME.tar.gz" _build/scripts/introspect.py \
        _build/scripts/assemble; do
        [[ -f $OUT/ee/context/$f ]] || { log "build context lacks $f"; return 1; }
    done
    grep -q '^FROM ' "$OUT/ee/context/Containerfile" &&
        grep -q 'ansible-galaxy collection install' "$OUT/ee/context/Containerfile" &&
        grep -q 'introspect' "$OUT/ee/context/Containerfile"
}

# ------------------------------------------------------------------ docs
docs_lint() {
    (cd "$TREE" && ANSIBLE_COLLECTIONS_PATH=$OUT/tree antsibull-docs lint-collection-docs --plugin-docs .)
}

SITE=$OUT/site
docs() {
    rm -rf "$SITE"
    mkdir -p "$SITE"
    export ANSIBLE_COLLECTIONS_PATH=$OUT/installed      # the docs of what ships
    antsibull-docs sphinx-init --use-current --fail-on-error --dest-dir "$SITE" \
        --project "$NS.$NAME" --copyright "$NS.$NAME contributors" --title "$NS.$NAME" \
        --html-short-title "$NS.$NAME" "$NS.$NAME" >"$OUT/sphinx-init.log" 2>&1 ||
        { cat "$OUT/sphinx-init.log" >&2; return 1; }
    { echo; echo "# ---- docs/site/conf_overrides.py (appended by scripts/release-checks.sh)"; \
        cat "$REPO/docs/site/conf_overrides.py"; } >>"$SITE/conf.py"
    cp -r "$REPO/docs/site/_templates" "$SITE/_templates"
    python "$REPO/tests/release/external_refs.py" "$SITE/ansible_devel.inv" || return 1
    mkdir -p "$SITE/rst"
    chmod og-w "$SITE/rst"
    (cd "$SITE" && antsibull-docs --config-file antsibull-docs.cfg collection --cleanup everything --fail-on-error \
        --use-current --dest-dir rst "$NS.$NAME") || return 1
    # -n: every reference must resolve; -W: any warning fails; --keep-going: report them all
    (cd "$SITE" && sphinx-build -n -W --keep-going -q -b html -c . rst build/html) || return 1
    local n
    n=$(find "$SITE/build/html" -name '*.html' | wc -l)
    log "site: $n pages in $SITE/build/html"
}

SHOT=$OUT/screenshot.png
screenshot() {
    local page=$SITE/build/html/collections/$NS/$NAME/volume_module.html
    [[ -f $page ]] || { log "no $page"; return 1; }
    rm -rf "$SHOT" "$OUT/chromium-profile"
    timeout -k 10 120 chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run \
        --user-data-dir="$OUT/chromium-profile" --window-size=1280,800 --screenshot="$SHOT" "file://$page" \
        >"$OUT/chromium.log" 2>&1
    local rc=$?
    rm -rf "$OUT/chromium-profile"
    if [[ $rc != 0 || ! -s $SHOT ]]; then
        tail -20 "$OUT/chromium.log" >&2
        return 1
    fi
    log "screenshot: $SHOT ($(du -k "$SHOT" | cut -f1) KiB)"
}

release_pytest() {
    (cd "$REPO/tests" && PV_DOCS_HTML=$SITE/build/html PV_DOCS_SCREENSHOT=$SHOT \
        python -m pytest -p no:cacheprovider -v -ra --junitxml="$OUT/junit.xml" release)
}

# ------------------------------------------------------------------ main
T0=$SECONDS
mkdir -p "$OUT"
TARBALL=
step tools tools
if ok tools; then
    step build build
    if ok build; then
        step importer importer
        step changelog changelog
        step ee ee
        step docs-lint docs_lint
        step docs docs
    else
        for s in importer changelog ee docs-lint docs; do skip "$s" build; done
    fi
    if ok docs; then step screenshot screenshot; else skip screenshot docs; fi
    if ok screenshot; then step pytest release_pytest; else skip pytest screenshot; fi
fi

echo
echo "==================== release checks ===================="
rc=0
for name in "${STEPS[@]}"; do
    printf '%-11s rc=%-3s %5s s\n' "$name" "${STEP_RC[$name]}" "${STEP_TIME[$name]}"
    ((STEP_RC[$name] == 0)) || rc=1
done
echo "release checks: $((SECONDS - T0)) s -> $([[ $rc == 0 ]] && echo PASSED || echo FAILED)"
exit $rc
