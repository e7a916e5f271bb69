# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Without ``server``, the cinder backend finds the Docker host's own Nova server in its instance
metadata. Shown here against real components:

* the config drive: built for pv-docker-host by Nova's own code (``InstanceMetadata`` +
  ``ConfigDriveBuilder``, run by the test cloud's venv), put on a loop device and published as
  ``<temp dev root>/disk/by-label/config-2``; the module mounts it read-only with mount(8).
  A kernel without ISO 9660 (this project's test VMs have none, nor VFAT) gets a ``mount.iso9660``
  helper (fuseiso, a real ISO 9660 reader through FUSE) in a private mount namespace that only the
  ansible-playbook run sees; elsewhere the kernel mounts it.
* the metadata service: Nova's metadata API (``nova.wsgi.metadata`` under gunicorn, its own config:
  a copy of the cloud's nova.conf plus ``service_metadata_proxy`` and a shared secret), behind a
  small proxy that adds what neutron-metadata-agent adds (X-Instance-ID, X-Tenant-ID,
  X-Instance-ID-Signature = HMAC-SHA256 of the instance id, X-Forwarded-For).
* neither: a clear failure naming the ``server`` option, nothing changed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import configparser
import hashlib
import hmac
import http.client
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from socketserver import ThreadingMixIn

import pytest

from cinder_helpers import STATE, wait_volume
from pv_integration_helpers import ManagedRoot, is_mountpoint  # pylint: disable=import-error

# the first test may install and cold-start the test cloud (session fixture) within its timeout
pytestmark = [pytest.mark.cinder, pytest.mark.slow, pytest.mark.timeout(1800)]

NOVA_VENV = os.path.join(STATE, 'venv')
NOVA_PY = os.path.join(NOVA_VENV, 'bin', 'python')
NOVA_ETC = os.path.join(STATE, 'etc', 'nova')
META_PATH = '/openstack/latest/meta_data.json'

# run by the test cloud's python: Nova builds the config drive of an instance as the libvirt driver does
BUILD_CONFIG_DRIVE = r'''
import sys
from nova import config, context, objects
from nova.api.metadata import base
from nova.virt import configdrive

objects.register_all()
config.parse_args(['pv-config-drive'], default_config_files=[sys.argv[1]])
md = base.get_metadata_by_instance_id(sys.argv[2], sys.argv[3], context.get_admin_context())
with configdrive.ConfigDriveBuilder(instance_md=md) as cdb:
    cdb.make_drive(sys.argv[4])
print(md.instance.uuid, md.instance.hostname)
'''

# mount(8) runs /sbin/mount.<type> for the type it probed (iso9660): ISO 9660 through FUSE
MOUNT_HELPER = r'''#!/bin/sh
# mount.iso9660 SOURCE TARGET [-o OPTIONS]...: for kernels without ISO 9660 (test only)
src=$1; dst=$2; shift 2
opts=
while [ $# -gt 0 ]; do
    case $1 in -o) opts=$2; shift 2 ;; *) shift ;; esac
done
exec fuseiso -n "$src" "$dst" ${opts:+-o "$opts"}
'''

# ansible-playbook in a private mount (and pid) namespace where /sbin has that helper; every
# process of the run (a FUSE daemon the module failed to unmount too) ends with it
PLAYBOOK_WRAPPER = r'''#!/bin/sh
exec unshare --mount --propagation private --pid --fork --kill-child sh -c '
    mount -t overlay pv-iso9660-helper -o "lowerdir=$1:$2" "$2" || exit 97
    shift 2
    exec "$@"' sh {helpers} {sbin} {playbook} "$@"
'''


def sh(*cmd, **kw):
    return subprocess.run(list(cmd), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, check=False, **kw)


def free_port():
    sock = socket.socket()
    try:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]
    finally:
        sock.close()


def mounts_of(device):
    """Mount points (this namespace) whose source is ``device``."""
    real = os.path.realpath(device)
    found = []
    with open('/proc/self/mountinfo') as handle:
        for line in handle:
            fields = line.split()
            source = fields[fields.index('-') + 2]
            if os.path.realpath(source) == real:
                found.append(fields[4])
    return found


def http_get(url, headers=None, timeout=10):
    from urllib.parse import urlsplit
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request('GET', parts.path or '/', headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read(), resp.getheader('Content-Type', 'text/plain')
    finally:
        conn.close()


def vol_task(**args):
    return {'name': 'cinder_volume', 'persistent_volumes.docker.cinder_volume': dict(cloud='pvtest', **args),
            'register': 'out'}


def att_task(**args):
    return {'name': 'cinder_attachment', 'persistent_volumes.docker.cinder_attachment': dict(cloud='pvtest', **args),
            'register': 'out'}


def pv_task(root, name, source, **args):
    """The volume module, backend cinder, without ``server``."""
    args.update(name=name, backend='cinder', root=root.root, docker_volume=False,
                cinder=dict(cloud='pvtest', **source))
    return {'name': 'pv', 'persistent_volumes.docker.volume': args, 'register': 'out'}


def ours(conn, name):
    return [v for v in conn.block_storage.volumes(details=True) if (v.metadata or {}).get('pv_name') == name]


def server_ids(conn, vid):
    return [a['server_id'] for a in conn.block_storage.get_volume(vid).attachments or []]


def make_volume(os_ansible, name):
    res = os_ansible.run([vol_task(name=name, size='1')])
    res.assert_changed()
    return res.result('cinder_volume')['volume']['id']


def assert_attached_via_discovery(os_ansible, conn, docker_host, name, vid, source, env=None):
    """cinder_attachment without ``server`` attaches to pv-docker-host, is idempotent, detaches."""
    res = os_ansible.run([att_task(volume=name, **source)], env=env)
    res.assert_changed()
    att = res.result('cinder_attachment')['attachment']
    assert att['server_id'] == docker_host.id and att['server_name'] == 'pv-docker-host'
    assert att['status'] == 'in-use'
    assert server_ids(conn, vid) == [docker_host.id]
    os_ansible.run([att_task(volume=name, **source)], env=env).assert_unchanged()
    res = os_ansible.run([att_task(volume=name, state='absent', **source)], env=env)
    res.assert_changed()
    assert server_ids(conn, vid) == []
    wait_volume(conn, vid, 'available')


# -- the config drive ----------------------------------------------------------------------------
@pytest.fixture
def config_drive(openstack_cloud, docker_host):
    """Nova's config drive of pv-docker-host on a loop device, linked as <dev root>/disk/by-label/config-2.

    Yields ``{'path', 'loop', 'iso', 'mount_helpers'}``; ``mount_helpers`` is None when the kernel
    mounts ISO 9660 itself, else the directory with the FUSE ``mount.iso9660`` (see :func:`use_wrapper`)."""
    if not os.path.exists(NOVA_PY):
        pytest.fail('the test cloud venv has no python: %s' % NOVA_PY)
    if not shutil.which('genisoimage'):
        pytest.fail('genisoimage (Nova builds config drives with it) is missing: run scripts/bootstrap.sh')
    work = tempfile.mkdtemp(prefix='pvt-config-drive-')
    loop = None
    try:
        script = os.path.join(work, 'build_config_drive.py')
        with open(script, 'w') as handle:
            handle.write(BUILD_CONFIG_DRIVE)
        iso = os.path.join(work, 'config-drive.iso')
        proc = sh(NOVA_PY, script, os.path.join(NOVA_ETC, 'nova.conf'), docker_host.id, '192.0.2.10', iso,
                  timeout=300)
        assert proc.returncode == 0 and os.path.isfile(iso), 'Nova could not build the config drive:\n' + proc.stdout
        assert proc.stdout.split()[-2:] == [docker_host.id, 'pv-docker-host'], proc.stdout
        proc = sh('losetup', '--find', '--show', '--read-only', iso)
        assert proc.returncode == 0, proc.stdout
        loop = proc.stdout.strip()
        # what udev would say: an ISO 9660 filesystem labelled config-2
        assert sh('blkid', '-o', 'value', '-s', 'LABEL', loop).stdout.strip() == 'config-2'
        assert sh('blkid', '-o', 'value', '-s', 'TYPE', loop).stdout.strip() == 'iso9660'
        by_label = os.path.join(work, 'dev', 'disk', 'by-label')
        os.makedirs(by_label)
        link = os.path.join(by_label, 'config-2')
        os.symlink(loop, link)
        helpers = None if kernel_mounts_iso9660(loop, work) else fuse_mount_helpers(work)
        yield {'path': link, 'loop': loop, 'iso': iso, 'mount_helpers': helpers}
    finally:
        if loop:
            for target in reversed(mounts_of(loop)):
                sh('umount', '-l', target)
            sh('losetup', '-d', loop)
        shutil.rmtree(work, ignore_errors=True)


def kernel_mounts_iso9660(loop, work):
    mnt = os.path.join(work, 'probe')
    os.mkdir(mnt)
    try:
        if sh('mount', '-t', 'iso9660', '-o', 'ro', loop, mnt).returncode != 0:
            return False
        sh('umount', mnt)
        return True
    finally:
        os.rmdir(mnt)


def fuse_mount_helpers(work):
    missing = [tool for tool in ('fuseiso', 'unshare') if not shutil.which(tool)]
    if missing or not os.path.exists('/dev/fuse'):
        pytest.fail('the kernel has no ISO 9660 and %s is missing (scripts/bootstrap.sh installs fuseiso)'
                    % (', '.join(missing) or '/dev/fuse'))
    helpers = os.path.join(work, 'mount-helpers')
    os.mkdir(helpers)
    helper = os.path.join(helpers, 'mount.iso9660')
    with open(helper, 'w') as handle:
        handle.write(MOUNT_HELPER)
    os.chmod(helper, 0o755)
    return helpers


def use_wrapper(os_ansible, helpers, work):
    """Run this test's ansible-playbook in a mount namespace whose /sbin has ``helpers``."""
    path = os.path.join(work, 'ansible-playbook-ns')
    with open(path, 'w') as handle:
        handle.write(PLAYBOOK_WRAPPER.format(helpers=shlex.quote(helpers), sbin=shlex.quote(os.path.realpath('/sbin')),
                                             playbook=shlex.quote(os_ansible.playbook_bin)))
    os.chmod(path, 0o755)
    os_ansible.playbook_bin = path


def test_config_drive_names_the_server(os_ansible, conn, uid, os_cleanup, docker_host, config_drive, tmp_path):
    name = uid + '-cd'
    vid = make_volume(os_ansible, name)
    if config_drive['mount_helpers']:
        use_wrapper(os_ansible, config_drive['mount_helpers'], str(tmp_path))
    # the module's own temporary mount point lands here: it must be gone afterwards (unmounted, removed)
    tmpdir = tmp_path / 'module-tmp'
    tmpdir.mkdir()
    # only the config drive can tell: the metadata service is switched off
    source = {'config_drive': config_drive['path'], 'metadata_url': ''}
    assert_attached_via_discovery(os_ansible, conn, docker_host, name, vid, source, env={'TMPDIR': str(tmpdir)})
    assert [p for p in os.listdir(str(tmpdir)) if p.startswith('pv-config-drive-')] == []
    assert mounts_of(config_drive['loop']) == []


# -- the metadata service ------------------------------------------------------------------------
class _ThreadingHTTPServer(ThreadingMixIn, HTTPServer):
    daemon_threads = True


class NeutronMetadataProxy(object):
    """What neutron-metadata-agent does for a VM: forwards its request to Nova's metadata API with
    the instance's identity, signed with the shared secret."""

    def __init__(self, upstream, headers):
        self.upstream = upstream
        self.requests = []          # (path, status from Nova)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # pylint: disable=invalid-name
                status, body, ctype = http_get(proxy.upstream + self.path, headers)
                proxy.requests.append((self.path, status))
                self.send_response(status)
                self.send_header('Content-Type', ctype)
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = _ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = 'http://127.0.0.1:%d' % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture
def nova_metadata_api(openstack_cloud, conn, uid):
    """Nova's metadata API on 127.0.0.1:<free port> (gunicorn, setsid, pid file); stopped by pid.

    Yields ``{'url', 'secret', 'log'}``. Its service record (host ``<uid>-metadata``) is deleted at the end."""
    gunicorn = os.path.join(NOVA_VENV, 'bin', 'gunicorn')
    if not os.path.exists(gunicorn):
        pytest.fail('the test cloud venv has no gunicorn: %s' % gunicorn)
    work = tempfile.mkdtemp(prefix='pvt-nova-metadata-')
    secret = secrets.token_hex(16)
    host = uid + '-metadata'
    shutil.copy(os.path.join(NOVA_ETC, 'api-paste.ini'), os.path.join(work, 'api-paste.ini'))
    conf = configparser.RawConfigParser(strict=False)
    conf.optionxform = str
    conf.read(os.path.join(NOVA_ETC, 'nova.conf'))
    for section, key, value in (('DEFAULT', 'host', host),  # its own service record
                                ('neutron', 'service_metadata_proxy', 'true'),
                                ('neutron', 'metadata_proxy_shared_secret', secret),
                                ('api', 'metadata_cache_expiration', '0')):
        if section != 'DEFAULT' and not conf.has_section(section):
            conf.add_section(section)
        conf.set(section, key, value)
    with open(os.path.join(work, 'nova.conf'), 'w') as handle:
        conf.write(handle)
    with open(os.path.join(work, 'pv_wsgi_nova_metadata.py'), 'w') as handle:
        # gunicorn's arguments are not Nova's (oslo.config parses sys.argv)
        handle.write('import sys\nsys.argv = sys.argv[:1]\n'
                     'from nova.wsgi.metadata import application  # noqa: E402,F401\n')
    port = free_port()
    url = 'http://127.0.0.1:%d' % port
    log = os.path.join(work, 'nova-metadata.log')
    env = dict(os.environ, OS_NOVA_CONFIG_DIR=work, OS_NOVA_CONFIG_FILES='api-paste.ini;nova.conf')
    with open(log, 'w') as out:
        proc = subprocess.Popen([gunicorn, '--bind', '127.0.0.1:%d' % port, '--workers', '1',
                                 '--worker-class', 'gthread', '--threads', '4', '--timeout', '120',
                                 '--graceful-timeout', '3', '--no-control-socket', '--pythonpath', work,
                                 '--name', 'pv-test-nova-metadata', 'pv_wsgi_nova_metadata:application'],
                                cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    pidfile = os.path.join(work, 'nova-metadata.pid')
    with open(pidfile, 'w') as handle:
        handle.write('%d\n' % proc.pid)
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail('nova metadata API exited (rc %s):\n%s' % (proc.returncode, _tail(log)))
            try:
                if http_get(url + '/', timeout=5)[0] == 200:
                    break
            except (OSError, http.client.HTTPException):
                pass
            if time.monotonic() > deadline:
                pytest.fail('nova metadata API did not answer on %s:\n%s' % (url, _tail(log)))
            time.sleep(0.5)
        yield {'url': url, 'secret': secret, 'log': log}
    finally:
        with open(pidfile) as handle:
            _stop_group(int(handle.read()))
        proc.wait()
        for svc in conn.compute.services():
            if svc.host == host and svc.binary == 'nova-metadata':
                conn.compute.delete_service(svc, ignore_missing=True)
        shutil.rmtree(work, ignore_errors=True)


def _stop_group(pid, timeout=20):
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _tail(path, size=6000):
    with open(path, errors='replace') as handle:
        return handle.read()[-size:]


def proxy_headers(server, secret):
    """The headers neutron-metadata-agent adds to a request of ``server``'s."""
    return {'X-Instance-ID': server.id, 'X-Tenant-ID': server.project_id,
            'X-Instance-ID-Signature': hmac.new(secret.encode(), server.id.encode(), hashlib.sha256).hexdigest(),
            'X-Forwarded-For': _first_address(server)}


def _first_address(server):
    for addrs in (server.addresses or {}).values():
        for addr in addrs:
            if addr.get('addr'):
                return addr['addr']
    return '192.0.2.10'


def test_metadata_service_names_the_server(os_ansible, conn, uid, os_cleanup, cleanup, hypervisor, docker_host,
                                           nova_metadata_api, tmp_path):
    api = nova_metadata_api
    proxy = NeutronMetadataProxy(api['url'], proxy_headers(docker_host, api['secret']))
    try:
        # Nova checks the proxy's signature: a wrong one is refused, the right one gives the instance's data
        assert http_get(api['url'] + META_PATH, proxy_headers(docker_host, 'not-the-secret'))[0] == 403
        status, body, _ctype = http_get(proxy.url + META_PATH)
        assert status == 200, body
        meta = json.loads(body.decode())
        assert meta['uuid'] == docker_host.id and meta['name'] == 'pv-docker-host'
        del proxy.requests[:]

        name = uid + '-md'
        vid = make_volume(os_ansible, name)
        missing_drive = str(tmp_path / 'dev' / 'disk' / 'by-label' / 'config-2')
        source = {'config_drive': missing_drive, 'metadata_url': proxy.url + META_PATH}
        assert_attached_via_discovery(os_ansible, conn, docker_host, name, vid, source)
        # every run asked the metadata service (through the proxy) and Nova answered
        assert len(proxy.requests) == 3 and set(proxy.requests) == {(META_PATH, 200)}

        # the volume module on the Docker host: attached to pv-docker-host, mounted, idempotent, removed
        root = ManagedRoot(uid, cleanup)
        pv_name = uid + '-md-pv'
        res = os_ansible.run([pv_task(root, pv_name, source, size='1GiB', timeout=120)])
        res.assert_changed()
        (vol,) = ours(conn, pv_name)
        assert server_ids(conn, vol.id) == [docker_host.id]
        assert is_mountpoint(root.mountpoint(pv_name))
        os_ansible.run([pv_task(root, pv_name, source, size='1GiB', timeout=120)]).assert_unchanged()
        os_ansible.run([pv_task(root, pv_name, source, state='absent')]).assert_changed()
        assert ours(conn, pv_name) == [] and not is_mountpoint(root.mountpoint(pv_name))
    finally:
        proxy.close()


# -- neither -------------------------------------------------------------------------------------
def test_no_instance_metadata_fails_clearly(os_ansible, conn, uid, os_cleanup, cleanup, tmp_path):
    name = uid + '-none'
    vid = make_volume(os_ansible, name)
    missing_drive = str(tmp_path / 'dev' / 'disk' / 'by-label' / 'config-2')
    refused = 'http://127.0.0.1:%d%s' % (free_port(), META_PATH)
    source = {'config_drive': missing_drive, 'metadata_url': refused}
    for check in (True, False):
        res = os_ansible.run([att_task(volume=name, **source)], check=check)
        res.assert_failed()
        msg = res.result('cinder_attachment')['msg']
        assert 'set the server option' in msg and missing_drive in msg and refused in msg, msg
        vol = conn.block_storage.get_volume(vid)
        assert vol.status == 'available' and not vol.attachments

    # the volume module (backend cinder): the same message, and no Cinder volume made for nothing
    root = ManagedRoot(uid, cleanup)
    pv_name = uid + '-none-pv'
    for check in (True, False):
        res = os_ansible.run([pv_task(root, pv_name, source, size='1GiB', timeout=60)], check=check)
        res.assert_failed()
        msg = res.result('pv')['msg']
        assert 'set the server option' in msg and missing_drive in msg and refused in msg, msg
        assert ours(conn, pv_name) == []
        assert not os.path.exists(root.mountpoint(pv_name))
