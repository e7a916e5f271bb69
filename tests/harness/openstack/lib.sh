# shellcheck shell=bash disable=SC2034  # variables used by the scripts that source this file
# Shared settings and helpers of the OpenStack test-cloud harness (sourced, not run).
# Everything listens on 127.0.0.1; runtime state lives under <repo>/.state/openstack.

HARNESS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HARNESS_DIR/../../.." && pwd)"
STATE="${PV_OS_STATE:-$REPO_ROOT/.state/openstack}"
VENV="$STATE/venv"
ETC="$STATE/etc"
LOGS="$STATE/log"
RUN="$STATE/run"
DATA="$STATE/data"
PY="$VENV/bin/python"

OS_PASSWORD_ALL="${PV_OS_PASSWORD:-pvtest-secret}"
DB_PORT="${PV_OS_DB_PORT:-3306}"
DB_USER=openstack
DB_URL_BASE="mysql+pymysql://${DB_USER}:${OS_PASSWORD_ALL}@127.0.0.1:${DB_PORT}"
RABBIT_URL="rabbit://guest:guest@127.0.0.1:5672/"
KEYSTONE_URL="http://127.0.0.1:5000/v3"

# name -> port of the HTTP APIs
declare -A API_PORT=([keystone]=5000 [placement]=8778 [glance-api]=9292 [neutron-api]=9696
                     [cinder-api]=8776 [nova-api]=8774)

# Start order matters only for readability; start.sh waits on what each one needs.
SERVICES="mariadb rabbitmq keystone placement glance-api neutron-api cinder-api cinder-scheduler cinder-volume nova-api nova-conductor nova-scheduler nova-compute"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

pidfile() { echo "$RUN/$1.pid"; }

# is_running NAME: the pid in the pid file is alive
is_running() {
    local f pid
    f="$(pidfile "$1")"
    [ -s "$f" ] || return 1
    pid="$(cat "$f")"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    # a zombie (not yet reaped by PID 1) is not running
    case "$(ps -o stat= -p "$pid" 2>/dev/null)" in Z*|"") return 1 ;; esac
}

# wait_port PORT TIMEOUT: until something accepts TCP connections on 127.0.0.1:PORT
wait_port() {
    local port="$1" timeout="${2:-60}" end
    end=$((SECONDS + timeout))
    while [ $SECONDS -lt $end ]; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.3
    done
    return 1
}
