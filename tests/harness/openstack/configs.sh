# shellcheck shell=bash
# Writes every config file of the test cloud under $ETC (sourced by start.sh after lib.sh).
# Re-written on every start: cheap, and keeps the files in step with this script.

authtoken() {  # authtoken USER -> a [keystone_authtoken] section
    cat <<EOT
[keystone_authtoken]
www_authenticate_uri = http://127.0.0.1:5000/v3
auth_url = http://127.0.0.1:5000/v3
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = $1
password = $OS_PASSWORD_ALL
service_token_roles_required = true
region_name = RegionOne
EOT
}

service_auth() {  # service_auth SECTION USER -> password auth section for a service client
    cat <<EOT
[$1]
auth_type = password
auth_url = http://127.0.0.1:5000/v3
project_domain_name = Default
user_domain_name = Default
project_name = service
username = $2
password = $OS_PASSWORD_ALL
region_name = RegionOne
EOT
}

common_msg() {
    cat <<EOT
[oslo_messaging_notifications]
driver = noop
EOT
}

write_configs() {
    mkdir -p "$ETC"/{mariadb,rabbitmq,keystone,placement,glance,neutron,cinder,nova,wsgi} \
             "$LOGS" "$RUN" "$DATA"/{locks,glance/images,glance/staging,glance/tasks,cinder,nova/instances,rabbitmq}

    # --- RPC reply polling (every service imports sitecustomize from $ETC/wsgi, on PYTHONPATH).
    # oslo.messaging 17 (OpenStack 2026.1) waits for an RPC reply by polling its reply queue with
    # time.sleep(0.5) (the lp-2035113 workaround, hard-coded), so every RPC call here costs ~0.5 s
    # (measured: request leg 3 ms, reply leg 499 ms) and a Nova volume attach, a chain of such calls
    # under the server's lock, ~2.5-3.5 s. The harness polls every PV_OS_RPC_REPLY_POLL seconds instead
    # (default 0.02): same code path and semantics, shorter waits. PV_OS_RPC_REPLY_POLL=0.5 (or
    # "stock") leaves oslo.messaging as shipped.
    local poll="${PV_OS_RPC_REPLY_POLL:-0.02}"
    [ "$poll" = stock ] && poll=0.5
    cat > "$ETC/wsgi/sitecustomize.py" <<EOT
"""Test cloud only: poll oslo.messaging's RPC reply queue every $poll s (stock: 0.5 s)."""
import sys

POLL = $poll


class _PatchAmqpDriver(object):
    """Patches ReplyWaiters.get once oslo_messaging._drivers.amqpdriver is imported (not before:
    importing it here would run ahead of eventlet's monkey patching in the services)."""

    def find_spec(self, name, path=None, target=None):
        if name != 'oslo_messaging._drivers.amqpdriver':
            return None
        sys.meta_path.remove(self)
        import importlib.util
        spec = importlib.util.find_spec(name)
        loader = spec.loader
        exec_module = loader.exec_module

        def patched_exec(module):
            exec_module(module)
            _patch(module)
        loader.exec_module = patched_exec
        return spec


def _patch(amqpdriver):
    import queue
    import time

    def get(self, msg_id, timeout):
        deadline = None if timeout is None else time.monotonic() + timeout
        while deadline is None or time.monotonic() < deadline:
            try:
                return self._queues[msg_id].get(block=False)
            except queue.Empty:
                time.sleep(POLL)
        import oslo_messaging
        raise oslo_messaging.MessagingTimeout('Timed out waiting for a reply to message ID %s' % msg_id)
    if POLL != 0.5:
        amqpdriver.ReplyWaiters.get = get


sys.meta_path.insert(0, _PatchAmqpDriver())
EOT
    echo "$poll" > "$ETC/rpc-reply-poll"

    # --- MariaDB: own datadir/socket, small buffers, durability traded for speed (test only)
    cat > "$ETC/mariadb/my.cnf" <<EOT
[client]
socket = $RUN/mysqld.sock
port = $DB_PORT
[mysqld]
user = root
datadir = $DATA/mysql
socket = $RUN/mysqld.sock
pid-file = $RUN/mariadbd.pid
bind-address = 127.0.0.1
port = $DB_PORT
skip-name-resolve
skip-log-bin
log-error = $LOGS/mariadb.log
innodb_buffer_pool_size = 128M
innodb_log_file_size = 64M
innodb_flush_log_at_trx_commit = 0
innodb_doublewrite = 0
max_connections = 1000
character-set-server = utf8mb4
collation-server = utf8mb4_general_ci
EOT

    # --- RabbitMQ
    cat > "$ETC/rabbitmq/rabbitmq.conf" <<EOT
listeners.tcp.1 = 127.0.0.1:5672
loopback_users.guest = true
log.file = false
log.console = true
EOT
    # RabbitMQ >= 3.13 (Debian 13 ships 4.x) deprecates the transient non-exclusive queues
    # oslo.messaging declares by default; 3.10 (Debian 12) does not know the key and would refuse it
    local rmq
    rmq="$(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null || true)"
    if dpkg --compare-versions "${rmq:-0}" ge 3.13; then
        echo "deprecated_features.permit.transient_nonexcl_queues = true" >> "$ETC/rabbitmq/rabbitmq.conf"
    fi
    echo '[].' > "$ETC/rabbitmq/enabled_plugins"

    # --- WSGI wrappers: oslo.config would parse gunicorn's argv and die
    cat > "$ETC/wsgi/pv_wsgi_keystone.py" <<'EOT'
import sys
sys.argv = sys.argv[:1]
from keystone.wsgi.api import application  # noqa: E402,F401
EOT
    cat > "$ETC/wsgi/pv_wsgi_placement.py" <<'EOT'
import sys
sys.argv = sys.argv[:1]
from placement.wsgi.api import application  # noqa: E402,F401
EOT
    cat > "$ETC/wsgi/pv_wsgi_nova.py" <<'EOT'
import sys
sys.argv = sys.argv[:1]
from nova.wsgi.osapi_compute import application  # noqa: E402,F401
EOT
    cat > "$ETC/wsgi/pv_wsgi_neutron.py" <<'EOT'
import sys
sys.argv = sys.argv[:1]
# neutron 28.0.2 without l3 service plugins: GET /v2.0/ports -> 500
# ("type object 'Port' has no attribute 'port_forwardings'"); load the model and map.
import neutron.db.models.port_forwarding  # noqa: E402,F401
import sqlalchemy.orm  # noqa: E402
sqlalchemy.orm.configure_mappers()
from neutron.wsgi.api import application  # noqa: E402,F401
EOT
    # Cinder's fake driver lacks extend_volume (AttributeError on FakeBrickLVM): no-op it.
    cat > "$ETC/wsgi/pv_fake_driver.py" <<'EOT'
from cinder.tests.fake_driver import FakeLoggingVolumeDriver


class PVFakeDriver(FakeLoggingVolumeDriver):
    def extend_volume(self, volume, new_size):
        return None
EOT

    # Nova's fake virt driver forgets its instances and invents new node uuids on every start:
    # a restarted nova-compute then refuses to start ("No local node identity found") and the
    # seeded servers could not be stopped/started. Stable node uuid + adopt unknown instances.
    cat > "$ETC/wsgi/pv_fake_virt.py" <<'EOT'
import uuid

from nova.compute import power_state
from nova.virt import fake

NODE_NS = uuid.UUID('5d7f3a64-2a63-4d4e-9a53-7f0c1b2e9c11')


def node_uuid(nodename):
    return str(uuid.uuid5(NODE_NS, 'pv-fake-node-%s' % nodename))


class PVFakeDriver(fake.FakeDriver):
    def get_available_resource(self, nodename):
        status = super(PVFakeDriver, self).get_available_resource(nodename)
        if status:
            status['uuid'] = node_uuid(nodename)
        return status

    def get_nodenames_by_uuid(self, refresh=False):
        return dict((node_uuid(n), n) for n in self.get_available_nodes())

    def _adopt(self, instance):
        if instance.uuid not in self.instances:
            self.instances[instance.uuid] = fake.FakeInstance(instance.name, power_state.RUNNING,
                                                              instance.uuid)

    def get_info(self, instance, use_cache=True):
        self._adopt(instance)
        return super(PVFakeDriver, self).get_info(instance, use_cache)

    def power_off(self, instance, timeout=0, retry_interval=0):
        self._adopt(instance)
        return super(PVFakeDriver, self).power_off(instance, timeout, retry_interval)

    def power_on(self, context, instance, network_info, block_device_info=None,
                 accel_info=None, share_info=None):
        self._adopt(instance)
        return super(PVFakeDriver, self).power_on(context, instance, network_info,
                                                  block_device_info, accel_info, share_info)
EOT
    # nova loads drivers only from nova.virt.<name>: a launcher puts ours there
    cat > "$ETC/wsgi/pv_nova_compute.py" <<'EOT'
import os
import sys

import nova.virt

nova.virt.__path__.append(os.path.dirname(os.path.abspath(__file__)))
from nova.cmd.compute import main  # noqa: E402

sys.exit(main())
EOT
    mkdir -p "$DATA/nova"
    [ -f "$DATA/nova/compute_id" ] || "$PY" -c "import uuid; print(uuid.uuid5(uuid.UUID('5d7f3a64-2a63-4d4e-9a53-7f0c1b2e9c11'), 'pv-fake-node-pvtest'))" > "$DATA/nova/compute_id"

    # --- Keystone
    cat > "$ETC/keystone/keystone.conf" <<EOT
[DEFAULT]
debug = false
[database]
connection = $DB_URL_BASE/keystone?charset=utf8
[token]
provider = fernet
[fernet_tokens]
key_repository = $ETC/keystone/fernet-keys
[fernet_receipts]
key_repository = $ETC/keystone/fernet-keys
[credential]
key_repository = $ETC/keystone/credential-keys
[cache]
# in-process cache: without it every authenticated request costs ~200 queries (~1 s here)
enabled = true
backend = dogpile.cache.memory
[identity]
password_hash_rounds = 4
EOT

    # --- Placement
    { cat <<EOT
[DEFAULT]
debug = false
[api]
auth_strategy = keystone
[placement_database]
connection = $DB_URL_BASE/placement?charset=utf8
EOT
      authtoken placement; } > "$ETC/placement/placement.conf"

    # --- Glance (file store)
    cp -f "$VENV/etc/glance/glance-api-paste.ini" "$ETC/glance/glance-api-paste.ini"
    { cat <<EOT
[DEFAULT]
debug = false
bind_host = 127.0.0.1
bind_port = 9292
workers = 1
enabled_backends = fs:file
[database]
connection = $DB_URL_BASE/glance?charset=utf8
[paste_deploy]
flavor = keystone
config_file = $ETC/glance/glance-api-paste.ini
[glance_store]
default_backend = fs
[fs]
filesystem_store_datadir = $DATA/glance/images
[os_glance_staging_store]
filesystem_store_datadir = $DATA/glance/staging
[os_glance_tasks_store]
filesystem_store_datadir = $DATA/glance/tasks
[oslo_concurrency]
lock_path = $DATA/locks
EOT
      common_msg; authtoken glance; } > "$ETC/glance/glance-api.conf"

    # --- Neutron: API only, ML2 with no mechanism drivers
    cp -f "$VENV/etc/neutron/api-paste.ini" "$ETC/neutron/api-paste.ini"
    { cat <<EOT
[DEFAULT]
debug = false
core_plugin = ml2
service_plugins =
auth_strategy = keystone
bind_host = 127.0.0.1
bind_port = 9696
api_workers = 1
rpc_workers = 0
rpc_state_report_workers = 0
transport_url = $RABBIT_URL
api_paste_config = $ETC/neutron/api-paste.ini
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
[database]
connection = $DB_URL_BASE/neutron?charset=utf8
[ml2]
type_drivers = flat
tenant_network_types =
mechanism_drivers =
extension_drivers =
[securitygroup]
firewall_driver = noop
[oslo_concurrency]
lock_path = $DATA/locks
EOT
      common_msg; authtoken neutron; } > "$ETC/neutron/neutron.conf"

    # --- Cinder: fake driver (+ no-op extend)
    cp -f "$VENV/etc/cinder/api-paste.ini" "$ETC/cinder/api-paste.ini"
    { cat <<EOT
[DEFAULT]
debug = false
host = pvtest
my_ip = 127.0.0.1
auth_strategy = keystone
transport_url = $RABBIT_URL
osapi_volume_listen = 127.0.0.1
osapi_volume_listen_port = 8776
osapi_volume_workers = 1
api_paste_config = $ETC/cinder/api-paste.ini
state_path = $DATA/cinder
enabled_backends = fake
default_volume_type = __DEFAULT__
# tests and benchmarks make many volumes at once (default quota: 10)
quota_volumes = -1
quota_gigabytes = -1
quota_snapshots = -1
quota_backups = -1
[database]
connection = $DB_URL_BASE/cinder?charset=utf8
[fake]
volume_driver = pv_fake_driver.PVFakeDriver
target_helper = fake
volume_backend_name = fake
[coordination]
backend_url = file://$DATA/cinder/coordination
[oslo_concurrency]
lock_path = $DATA/locks
EOT
      common_msg; authtoken cinder; echo; service_auth nova nova; echo "interface = public"; } \
        > "$ETC/cinder/cinder.conf"

    # --- Nova: fake virt driver
    cp -f "$VENV/etc/nova/api-paste.ini" "$ETC/nova/api-paste.ini"
    local nova_common
    nova_common="$(cat <<EOT
[DEFAULT]
debug = false
host = pvtest
my_ip = 127.0.0.1
transport_url = $RABBIT_URL
compute_driver = pv_fake_virt.PVFakeDriver
state_path = $DATA/nova
instances_path = $DATA/nova/instances
periodic_fuzzy_delay = 0
[api]
auth_strategy = keystone
[scheduler]
discover_hosts_in_cells_interval = 5
[quota]
instances = -1
cores = -1
ram = -1
[vnc]
enabled = false
[oslo_concurrency]
lock_path = $DATA/locks
[service_user]
send_service_user_token = true
auth_type = password
auth_url = http://127.0.0.1:5000/v3
project_domain_name = Default
user_domain_name = Default
project_name = service
username = nova
password = $OS_PASSWORD_ALL
$(common_msg)
$(authtoken nova)
$(service_auth placement placement)
$(service_auth neutron neutron)
$(service_auth cinder nova)
os_region_name = RegionOne
EOT
)"
    { echo "$nova_common"; cat <<EOT
[api_database]
connection = $DB_URL_BASE/nova_api?charset=utf8
[database]
connection = $DB_URL_BASE/nova?charset=utf8
EOT
    } > "$ETC/nova/nova.conf"
    # nova-compute must not see the database sections
    echo "$nova_common" > "$ETC/nova/nova-compute.conf"
}
