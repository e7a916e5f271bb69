#!/usr/bin/env bash
# Start the OpenStack test cloud on 127.0.0.1 (idempotent: what already runs is left alone,
# what is missing is started). First start creates databases and seeds the cloud; later starts
# reuse the state under <repo>/.state/openstack. Writes <repo>/.state/openstack/clouds.yaml
# (cloud "pvtest", admin). Needs install.sh to have run.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$HARNESS_DIR/configs.sh"

[ -x "$PY" ] || die "no venv at $VENV: run $HARNESS_DIR/install.sh first"
t0=$SECONDS
if [ -f "$RUN/ready" ] && "$HARNESS_DIR/status.sh" >/dev/null 2>&1; then
    log "OpenStack test cloud already running; clouds.yaml: $STATE/clouds.yaml (cloud pvtest)"
    exit 0
fi
rm -f "$RUN/ready"
write_configs
export PYTHONPATH="$ETC/wsgi"

# spawn NAME CMD...: start CMD in its own session (process group = pid), log to $LOGS/NAME.log
spawn() {
    local name="$1" port; shift
    if is_running "$name"; then return 0; fi
    port="${API_PORT[$name]:-}"
    [ "$name" = mariadb ] && port="$DB_PORT"
    [ "$name" = rabbitmq ] && port=5672
    if [ -n "$port" ] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        die "port $port ($name) is already in use by a process this harness did not start (another" \
            "test cloud, from another checkout?): stop it first"
    fi
    setsid "$@" >>"$LOGS/$name.log" 2>&1 < /dev/null &
    echo $! > "$(pidfile "$name")"
    log "started $name (pid $!)"
}

gunicorn_app() {  # gunicorn_app NAME PORT MODULE [env...]
    local name="$1" port="$2" module="$3"; shift 3
    spawn "$name" env "$@" "$VENV/bin/gunicorn" --bind "127.0.0.1:$port" --workers 1 \
        --worker-class gthread --threads 8 --timeout 300 --graceful-timeout 3 --keep-alive 75 --no-control-socket \
        --pythonpath "$ETC/wsgi" --name "pv-$name" "$module:application"
}

mysql_root() { mariadb --defaults-file="$ETC/mariadb/my.cnf" -uroot "$@"; }

start_mariadb() {
    if [ ! -d "$DATA/mysql/mysql" ]; then
        log "initialising MariaDB datadir"
        mariadb-install-db --defaults-file="$ETC/mariadb/my.cnf" --skip-test-db \
            --auth-root-authentication-method=socket >"$LOGS/mariadb-install.log" 2>&1 \
            || { cat "$LOGS/mariadb-install.log"; die "mariadb-install-db failed"; }
    fi
    spawn mariadb mariadbd --defaults-file="$ETC/mariadb/my.cnf"
}

rabbit_env() {
    export RABBITMQ_NODENAME=rabbit@localhost RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
        ERL_EPMD_ADDRESS=127.0.0.1 \
        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
        RABBITMQ_MNESIA_BASE="$DATA/rabbitmq/mnesia" RABBITMQ_LOG_BASE="$LOGS/rabbitmq" \
        RABBITMQ_CONFIG_FILE="$ETC/rabbitmq/rabbitmq.conf" \
        RABBITMQ_ENABLED_PLUGINS_FILE="$ETC/rabbitmq/enabled_plugins" \
        RABBITMQ_PID_FILE="$RUN/rabbitmq-node.pid" HOME="$DATA/rabbitmq"
}

start_rabbitmq() {
    ( rabbit_env; spawn rabbitmq /usr/lib/rabbitmq/bin/rabbitmq-server )
}

# run_step NAME CMD...: a one-time init step, remembered by a stamp file
run_step() {
    local name="$1"; shift
    [ -f "$DATA/.done-$name" ] && return 0
    if "$@" >>"$LOGS/init-$name.log" 2>&1; then
        touch "$DATA/.done-$name"
    else
        tail -40 "$LOGS/init-$name.log" >&2; return 1
    fi
}

create_databases() {
    mysql_root <<EOT
CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$OS_PASSWORD_ALL';
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$OS_PASSWORD_ALL';
$(for db in keystone placement glance neutron cinder nova_api nova nova_cell0; do
    echo "CREATE DATABASE IF NOT EXISTS $db CHARACTER SET utf8;"
    echo "GRANT ALL PRIVILEGES ON $db.* TO '$DB_USER'@'127.0.0.1';"
    echo "GRANT ALL PRIVILEGES ON $db.* TO '$DB_USER'@'localhost';"
  done)
FLUSH PRIVILEGES;
EOT
}

init_keystone() {
    local km="$VENV/bin/keystone-manage --config-file $ETC/keystone/keystone.conf"
    mkdir -p "$ETC/keystone/fernet-keys" "$ETC/keystone/credential-keys"
    $km db_sync
    $km fernet_setup --keystone-user root --keystone-group root
    $km credential_setup --keystone-user root --keystone-group root
    $km bootstrap --bootstrap-password "$OS_PASSWORD_ALL" --bootstrap-region-id RegionOne \
        --bootstrap-admin-url "$KEYSTONE_URL" --bootstrap-internal-url "$KEYSTONE_URL" \
        --bootstrap-public-url "$KEYSTONE_URL"
}

init_nova() {
    local nm="$VENV/bin/nova-manage --config-file $ETC/nova/nova.conf"
    $nm api_db sync
    $nm cell_v2 map_cell0 --database_connection "$DB_URL_BASE/nova_cell0?charset=utf8"
    $nm cell_v2 list_cells | grep -q ' cell1 ' || $nm cell_v2 create_cell --name cell1
    $nm db sync
}

# 1. MariaDB + RabbitMQ (in parallel)
start_mariadb
start_rabbitmq
wait_port "$DB_PORT" 60 || die "MariaDB did not come up (see $LOGS/mariadb.log)"
for _ in $(seq 50); do mysql_root -e 'select 1' >/dev/null 2>&1 && break; sleep 0.2; done
run_step databases create_databases

# 2. per service: schema sync (first start only), then start it -- all chains in parallel.
#    Keystone first registers the catalog; nova's daemons need the service users at start.
chain_keystone() {
    run_step keystone init_keystone || return 1
    gunicorn_app keystone 5000 pv_wsgi_keystone OS_KEYSTONE_CONFIG_DIR="$ETC/keystone"
    wait_port 5000 120 || { log "Keystone did not come up (see $LOGS/keystone.log)"; return 1; }
    "$PY" "$HARNESS_DIR/cloud.py" register && touch "$RUN/registered"
}
chain_placement() {
    run_step placement "$VENV/bin/placement-manage" --config-file "$ETC/placement/placement.conf" db sync &&
    gunicorn_app placement 8778 pv_wsgi_placement OS_PLACEMENT_CONFIG_DIR="$ETC/placement"
}
chain_glance() {
    run_step glance "$VENV/bin/glance-manage" --config-file "$ETC/glance/glance-api.conf" db_sync &&
    spawn glance-api "$VENV/bin/glance-api" --config-file "$ETC/glance/glance-api.conf"
}
chain_neutron() {
    run_step neutron "$VENV/bin/neutron-db-manage" --config-file "$ETC/neutron/neutron.conf" upgrade heads &&
    gunicorn_app neutron-api 9696 pv_wsgi_neutron OS_NEUTRON_CONFIG_DIR="$ETC/neutron" OS_NEUTRON_CONFIG_FILES=neutron.conf
}
chain_cinder() {
    run_step cinder "$VENV/bin/cinder-manage" --config-file "$ETC/cinder/cinder.conf" db sync || return 1
    wait_port 5672 120 || { log "RabbitMQ did not come up (see $LOGS/rabbitmq.log)"; return 1; }
    local s
    for s in cinder-api cinder-scheduler cinder-volume; do
        spawn "$s" "$VENV/bin/$s" --config-file "$ETC/cinder/cinder.conf"
    done
}
chain_nova() {
    run_step nova init_nova || return 1
    gunicorn_app nova-api 8774 pv_wsgi_nova OS_NOVA_CONFIG_DIR="$ETC/nova"
    wait_port 5672 120 || { log "RabbitMQ did not come up (see $LOGS/rabbitmq.log)"; return 1; }
    local end=$((SECONDS + 240))
    while [ ! -f "$RUN/registered" ]; do
        [ $SECONDS -lt $end ] || { log "catalog never registered"; return 1; }
        sleep 0.5
    done
    spawn nova-conductor "$VENV/bin/nova-conductor" --config-file "$ETC/nova/nova.conf"
    spawn nova-scheduler "$VENV/bin/nova-scheduler" --config-file "$ETC/nova/nova.conf"
    spawn nova-compute "$PY" "$ETC/wsgi/pv_nova_compute.py" --config-file "$ETC/nova/nova-compute.conf"
}

rm -f "$RUN/registered"
pids=()
for c in keystone placement glance neutron cinder nova; do "chain_$c" & pids+=($!); done
rc=0; for p in "${pids[@]}"; do wait "$p" || rc=1; done
[ $rc = 0 ] || die "start-up failed (logs in $LOGS)"
log "all services started, catalog registered ($((SECONDS - t0)) s)"

# 3. wait for the APIs, the compute and volume services; seed (nova-scheduler maps the compute
#    host to cell1 within 5 s: discover_hosts_in_cells_interval)
for s in placement nova-api neutron-api glance-api cinder-api; do
    wait_port "${API_PORT[$s]}" 120 || die "$s did not come up (see $LOGS/$s.log)"
done
"$PY" "$HARNESS_DIR/cloud.py" wait-services --timeout 240
"$PY" "$HARNESS_DIR/cloud.py" seed
touch "$RUN/ready"
log "OpenStack test cloud ready in $((SECONDS - t0)) s; clouds.yaml: $STATE/clouds.yaml (cloud pvtest)"
