#!/usr/bin/env bash
# Install what the OpenStack test cloud needs (idempotent):
#  - Debian: mariadb-server, rabbitmq-server (daemons are NOT started here; start.sh does that)
#  - a virtualenv at <repo>/.state/openstack/venv with keystone, placement, cinder, nova, glance,
#    neutron, PyMySQL, gunicorn (+ openstacksdk/openstackclient), pinned by constraints.txt.
# Works on Debian 12 and 13. Re-running when everything is there takes ~1 s.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

CONSTRAINTS="$HARNESS_DIR/constraints.txt"
PACKAGES="keystone openstack-placement cinder nova glance neutron PyMySQL gunicorn python-openstackclient"
STAMP="$VENV/.pv-installed"

t0=$SECONDS
need_apt=()
for p in mariadb-server rabbitmq-server python3-venv; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need_apt+=("$p")
done
if [ ${#need_apt[@]} -gt 0 ]; then
    log "apt-get install ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # policy-rc.d keeps the packages' own init scripts from starting daemons (no systemd here anyway)
    had_policy=0; [ -e /usr/sbin/policy-rc.d ] && had_policy=1
    [ $had_policy = 1 ] || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; }
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
    [ $had_policy = 1 ] || rm -f /usr/sbin/policy-rc.d
fi

want="$(sha256sum "$CONSTRAINTS" | cut -d' ' -f1)"
if [ -x "$PY" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
    log "venv up to date ($VENV)"
else
    mkdir -p "$STATE"
    [ -x "$PY" ] || python3 -m venv "$VENV"
    log "pip install into $VENV (this takes about a minute)"
    # shellcheck disable=SC2086  # PACKAGES is a word list on purpose
    "$VENV/bin/pip" install -q --disable-pip-version-check -c "$CONSTRAINTS" $PACKAGES \
        > "$STATE/pip-install.log" 2>&1 || { tail -30 "$STATE/pip-install.log"; die "pip install failed"; }
    echo "$want" > "$STAMP"
fi
log "install done in $((SECONDS - t0)) s"
