# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Catalog registration, readiness checks and seeding of the OpenStack test cloud.

Run with the harness venv's python (openstacksdk comes with python-openstackclient):

    cloud.py register          # clouds.yaml + service project/users/roles + catalog
    cloud.py wait-services     # until nova-compute and cinder-volume (and friends) are up
    cloud.py seed              # image, flavor, servers pv-docker-host and pv-other-host
"""

import argparse
import os
import sys
import time

STATE = os.environ.get('PV_OS_STATE') or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', '.state', 'openstack')
STATE = os.path.abspath(STATE)
CLOUDS_YAML = os.path.join(STATE, 'clouds.yaml')
PASSWORD = os.environ.get('PV_OS_PASSWORD', 'pvtest-secret')
KEYSTONE = 'http://127.0.0.1:5000/v3'
REGION = 'RegionOne'

SERVICE_USERS = ('nova', 'cinder', 'glance', 'neutron', 'placement')
CATALOG = (
    # name, type, url
    ('keystone', 'identity', KEYSTONE),
    ('nova', 'compute', 'http://127.0.0.1:8774/v2.1'),
    ('placement', 'placement', 'http://127.0.0.1:8778'),
    ('cinderv3', 'volumev3', 'http://127.0.0.1:8776/v3/%(project_id)s'),
    ('cinder', 'block-storage', 'http://127.0.0.1:8776/v3/%(project_id)s'),
    ('glance', 'image', 'http://127.0.0.1:9292'),
    ('neutron', 'network', 'http://127.0.0.1:9696'),
)
SERVERS = ('pv-docker-host', 'pv-other-host')
IMAGE = 'pv-test-image'
FLAVOR = 'pv.tiny'


def log(msg):
    sys.stderr.write('[cloud.py] %s\n' % msg)
    sys.stderr.flush()


def write_clouds_yaml():
    text = """# Written by tests/harness/openstack/cloud.py - the local OpenStack test cloud.
clouds:
  pvtest:
    auth:
      auth_url: %(url)s
      username: admin
      password: %(pw)s
      project_name: admin
      user_domain_name: Default
      project_domain_name: Default
    region_name: %(region)s
    interface: public
    identity_api_version: 3
""" % dict(url=KEYSTONE, pw=PASSWORD, region=REGION)
    os.makedirs(STATE, exist_ok=True)
    tmp = CLOUDS_YAML + '.tmp'
    with open(tmp, 'w') as handle:
        handle.write(text)
    os.chmod(tmp, 0o600)
    os.rename(tmp, CLOUDS_YAML)


def connect(timeout=90):
    import openstack
    os.environ['OS_CLIENT_CONFIG_FILE'] = CLOUDS_YAML
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = openstack.connect(cloud='pvtest', connect_retries=3)
            conn.authorize()
            return conn
        except Exception as exc:  # keystone still starting
            if time.monotonic() > deadline:
                raise SystemExit('cannot authenticate to %s: %s' % (KEYSTONE, exc))
            time.sleep(0.5)


def register(args):
    write_clouds_yaml()
    conn = connect()
    idn = conn.identity
    service_project = idn.find_project('service', domain_id='default') or \
        idn.create_project(name='service', domain_id='default', description='service users')
    roles = {}
    for rname in ('admin', 'service'):
        roles[rname] = idn.find_role(rname) or idn.create_role(name=rname)
    for uname in SERVICE_USERS:
        user = idn.find_user(uname, domain_id='default')
        if user is None:
            user = idn.create_user(name=uname, password=PASSWORD, domain_id='default',
                                   default_project_id=service_project.id)
        for role in roles.values():
            idn.assign_project_role_to_user(service_project, user, role)
    services = dict((s.type, s) for s in idn.services())
    endpoints = list(idn.endpoints())
    for name, stype, url in CATALOG:
        svc = services.get(stype)
        if svc is None:
            svc = idn.create_service(name=name, type=stype, is_enabled=True)
        have = set(e.interface for e in endpoints if e.service_id == svc.id)
        for iface in ('public', 'internal', 'admin'):
            if iface not in have:
                idn.create_endpoint(service_id=svc.id, interface=iface, url=url, region_id=REGION)
    log('catalog registered')


def wait_services(args):
    conn = connect()
    deadline = time.monotonic() + args.timeout
    want_nova = {'nova-compute', 'nova-conductor', 'nova-scheduler'}
    want_cinder = {'cinder-volume', 'cinder-scheduler'}
    missing = None
    while time.monotonic() < deadline:
        missing = set()
        try:
            up = set(s.binary for s in conn.compute.services() if s.state == 'up' and s.status == 'enabled')
            missing |= want_nova - up
        except Exception as exc:
            missing.add('nova-api (%s)' % type(exc).__name__)
        try:
            up = set(s.binary for s in conn.block_storage.services()
                     if s.state == 'up' and s.status == 'enabled')
            missing |= want_cinder - up
        except Exception as exc:
            missing.add('cinder-api (%s)' % type(exc).__name__)
        try:
            list(conn.network.networks())
        except Exception as exc:
            missing.add('neutron-api (%s)' % type(exc).__name__)
        if not missing:
            log('compute and volume services are up')
            return
        time.sleep(1)
    raise SystemExit('services not up after %ss: %s' % (args.timeout, ', '.join(sorted(missing))))


def seed(args):
    conn = connect()
    image = conn.image.find_image(IMAGE)
    if image is None:
        image = conn.image.create_image(name=IMAGE, data=b'\0' * 1024 * 1024, disk_format='raw',
                                        container_format='bare', visibility='public',
                                        allow_duplicates=True)
    # tests and benchmarks make many volumes at once: no quotas for the admin project
    project = conn.current_project_id
    conn.set_volume_quotas(project, volumes=-1, gigabytes=-1, snapshots=-1, backups=-1)
    conn.set_compute_quotas(project, instances=-1, cores=-1, ram=-1)
    flavor = conn.compute.find_flavor(FLAVOR)
    if flavor is None:
        flavor = conn.compute.create_flavor(name=FLAVOR, ram=256, vcpus=1, disk=1)
    # the compute host must be mapped to cell1 (nova-scheduler's periodic discovery, every 5 s):
    # until then a boot ends in ERROR (NoValidHost); retry those.
    for name in SERVERS:
        conn.compute.find_server(name)  # warm up
    deadline = time.monotonic() + 240
    pending = list(SERVERS)
    while pending:
        todo = []
        for name in pending:
            server = conn.compute.find_server(name)
            if server is not None and server.status == 'ERROR':
                conn.compute.delete_server(server)
                conn.compute.wait_for_delete(server, interval=1)
                server = None
            if server is None:
                server = conn.compute.create_server(name=name, image_id=image.id,
                                                    flavor_id=flavor.id, networks='none')
            todo.append(server)
        pending = []
        for server in todo:
            try:
                server = conn.compute.wait_for_server(server, status='ACTIVE', wait=180, interval=1)
                log('server %s %s (%s)' % (server.name, server.status, server.id))
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise SystemExit('server %s did not become ACTIVE: %s' % (server.name, exc))
                log('server %s not ACTIVE yet (%s); retrying' % (server.name, exc))
                pending.append(server.name)
        if pending:
            time.sleep(3)


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest='cmd', required=True)
    sub.add_parser('register')
    p = sub.add_parser('wait-services')
    p.add_argument('--timeout', type=int, default=180)
    sub.add_parser('seed')
    args = parser.parse_args()
    {'register': register, 'wait-services': wait_services, 'seed': seed}[args.cmd](args)


if __name__ == '__main__':
    main()
