#!/bin/sh
# Build the vSphere simulator launcher (main.go) offline with Debian's Go and
# Debian's govmomi sources. Debian 12 and 13 (both ship govmomi 0.24.2).
# Output: <repo>/.state/vcsim/vcsim-pv. Rebuilt only when main.go, the Go
# toolchain or the govmomi package changed. Prints the binary path.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
STATE=${VCSIM_STATE_DIR:-$REPO/.state/vcsim}
BIN=$STATE/vcsim-pv
STAMP=$STATE/vcsim-pv.stamp
GOPKG=golang-github-vmware-govmomi-dev

need_pkgs=
command -v go >/dev/null 2>&1 || need_pkgs="golang-go"
dpkg-query -W -f='${Status}' "$GOPKG" 2>/dev/null | grep -q 'install ok installed' \
    || need_pkgs="$need_pkgs $GOPKG"
if [ -n "$need_pkgs" ]; then
    echo "build.sh: installing$need_pkgs" >&2
    export DEBIAN_FRONTEND=noninteractive
    SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
    # shellcheck disable=SC2086
    $SUDO apt-get install -y --no-install-recommends $need_pkgs >&2 \
        || { $SUDO apt-get update >&2 && $SUDO apt-get install -y --no-install-recommends $need_pkgs >&2; }
fi

mkdir -p "$STATE"
want=$( {
    cat "$HERE/main.go"
    go version
    dpkg-query -W -f='${Version}\n' "$GOPKG"
} | sha256sum | cut -d' ' -f1)

if [ -x "$BIN" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
    echo "$BIN"
    exit 0
fi

echo "build.sh: building $BIN" >&2
start=$(date +%s)
export GOPATH=/usr/share/gocode GO111MODULE=off
export GOCACHE="$STATE/gocache"
cd "$HERE"
go build -o "$BIN.tmp" main.go
mv "$BIN.tmp" "$BIN"
echo "$want" > "$STAMP"
echo "build.sh: built in $(( $(date +%s) - start ))s" >&2
echo "$BIN"
