# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures for the cinder integration tests (cinder/conftest.py and tests of other folders import them): the real OpenStack test cloud.

* ``openstack_cloud`` (session): starts tests/harness/openstack (installing it first if
  needed) unless it already runs; stops it at the end only if it started it. Yields a
  dict: ``clouds_yaml``, ``cloud`` ('pvtest'), ``env`` (OS_CLIENT_CONFIG_FILE), ``harness``.
* ``conn``: an openstacksdk connection (admin) for setting up and checking.
* ``os_ansible``: the shared ``ansible`` runner with OS_CLIENT_CONFIG_FILE set.
* ``os_cleanup``: deletes, at the end, every volume/server whose name starts with ``uid``
  (after detaching it), and unpublishes guest devices made by the test.
* ``guest``: publish/unpublish/resize fake guest devices (tests/harness/openstack/guest_device.py).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import subprocess
import threading
import time

import pytest

from cinder_helpers import CLOUDS_YAML, HARNESS, HERE, REPO, STATE, guest_device, wait_volume  # noqa: F401 pylint: disable=unused-import


def _sh(*cmd, **kw):
    return subprocess.run(list(cmd), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, check=False, **kw)


@pytest.fixture(scope='session')
def openstack_cloud():
    pytest.importorskip('openstack')
    if os.geteuid() != 0:
        pytest.skip('the OpenStack test cloud needs root')
    running = _sh('bash', os.path.join(HARNESS, 'status.sh')).returncode == 0 and os.path.exists(CLOUDS_YAML)
    started = False
    if not running:
        proc = _sh('bash', os.path.join(HARNESS, 'install.sh'))
        if proc.returncode != 0:
            pytest.fail('tests/harness/openstack/install.sh failed:\n%s' % proc.stdout[-4000:])
        t0 = time.monotonic()
        proc = _sh('bash', os.path.join(HARNESS, 'start.sh'))
        if proc.returncode != 0:
            _sh('bash', os.path.join(HARNESS, 'stop.sh'))
            pytest.fail('tests/harness/openstack/start.sh failed:\n%s' % proc.stdout[-6000:])
        started = True
        print('OpenStack test cloud started in %.0f s' % (time.monotonic() - t0))
    else:
        # running: make sure it is complete (idempotent, ~1 s when everything is up)
        proc = _sh('bash', os.path.join(HARNESS, 'start.sh'))
        if proc.returncode != 0:
            pytest.fail('tests/harness/openstack/start.sh failed:\n%s' % proc.stdout[-6000:])
    info = {'clouds_yaml': CLOUDS_YAML, 'cloud': 'pvtest', 'harness': HARNESS,
            'env': {'OS_CLIENT_CONFIG_FILE': CLOUDS_YAML}}
    yield info
    if started and not os.environ.get('PV_KEEP_CLOUD'):
        _sh('bash', os.path.join(HARNESS, 'stop.sh'))


def connect():
    import openstack
    os.environ['OS_CLIENT_CONFIG_FILE'] = CLOUDS_YAML
    return openstack.connect(cloud='pvtest', connect_retries=3)


@pytest.fixture(scope='session')
def conn(openstack_cloud):
    c = connect()
    yield c
    c.close()


@pytest.fixture
def os_ansible(ansible, openstack_cloud):
    ansible.env.update(openstack_cloud['env'])
    return ansible


def destroy_volume(conn, vol):
    """Detach from every server and delete (test clean-up; ignores what is gone)."""
    import openstack
    try:
        vol = conn.block_storage.get_volume(vol.id if hasattr(vol, 'id') else vol)
    except openstack.exceptions.NotFoundException:
        return
    for att in vol.attachments or []:
        try:
            conn.compute.delete_volume_attachment(att['server_id'], vol.id)
        except openstack.exceptions.NotFoundException:
            pass
    deadline = time.monotonic() + 60
    while True:
        vol = conn.block_storage.get_volume(vol.id)
        if vol.status in ('available', 'error') and not vol.attachments:
            break
        if time.monotonic() > deadline:
            conn.block_storage.reset_volume_status(vol, status='available', attach_status='detached',
                                                   migration_status=None)
            break
        time.sleep(0.3)
    conn.block_storage.delete_volume(vol.id, ignore_missing=True)
    conn.block_storage.wait_for_delete(vol, interval=0.5, wait=60)


class OSCleanup(object):
    def __init__(self, conn, prefix):
        self.conn = conn
        self.prefix = prefix
        self.actions = []

    def add(self, func, *args, **kwargs):
        self.actions.append((func, args, kwargs))

    def run(self):
        errors = []
        for func, args, kwargs in reversed(self.actions):
            try:
                func(*args, **kwargs)
            except Exception as exc:  # pylint: disable=broad-except
                errors.append('%s: %s' % (getattr(func, '__name__', func), exc))
        # sweep: every volume / server named after the test
        for vol in list(self.conn.block_storage.volumes(details=True)):
            meta = vol.metadata or {}
            if (vol.name or '').startswith(self.prefix) or meta.get('pv_name', '').startswith(self.prefix):
                try:
                    guest_device.unpublish(vol.id)
                    destroy_volume(self.conn, vol)
                except Exception as exc:  # pylint: disable=broad-except
                    errors.append('volume %s: %s' % (vol.id, exc))
        for server in list(self.conn.compute.servers()):
            if server.name.startswith(self.prefix):
                try:
                    self.conn.compute.delete_server(server)
                    self.conn.compute.wait_for_delete(server, interval=1, wait=120)
                except Exception as exc:  # pylint: disable=broad-except
                    errors.append('server %s: %s' % (server.id, exc))
        return errors


@pytest.fixture
def os_cleanup(conn, uid):
    c = OSCleanup(conn, uid)
    yield c
    errors = c.run()
    if errors:
        pytest.fail('OpenStack clean-up failed:\n  ' + '\n  '.join(errors), pytrace=False)


@pytest.fixture
def guest(uid):
    published = []

    class Guest(object):
        byid = guest_device.BYID

        @staticmethod
        def publish(volume_id, size, name=None):
            published.append(volume_id)
            return guest_device.publish(volume_id, size, name)

        @staticmethod
        def resize(volume_id, size):
            guest_device.resize(volume_id, size)

        @staticmethod
        def unpublish(volume_id):
            guest_device.unpublish(volume_id)

        link_name = staticmethod(guest_device.link_name)

    yield Guest()
    for vid in published:
        guest_device.unpublish(vid)


@pytest.fixture(scope='session')
def docker_host(conn):
    server = conn.compute.find_server('pv-docker-host', ignore_missing=False)
    return server


@pytest.fixture(scope='session')
def other_host(conn):
    return conn.compute.find_server('pv-other-host', ignore_missing=False)


class Hypervisor(object):
    """Plays KVM + udev for pv-docker-host: while a volume named ``<uid>...`` is attached to it,
    a loop device of the volume's size is linked at /dev/disk/by-id/virtio-<id[:20]>; resized when
    Cinder's size changes; removed when detached. ``hide``: names never published;
    ``wrong_size``: name -> bytes to publish instead of the real size."""

    def __init__(self, conn, server_id, prefix):
        self.conn = conn
        self.server_id = server_id
        self.prefix = prefix
        self.hide = set()
        self.wrong_size = {}
        self.published = {}          # volume id -> size published
        self.kept = set()            # detached volumes whose backing file is kept
        self.errors = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def _loop(self):
        import openstack
        os.environ['OS_CLIENT_CONFIG_FILE'] = CLOUDS_YAML
        conn = openstack.connect(cloud='pvtest', connect_retries=3)
        while not self._stop.is_set():
            try:
                self.sync(conn)
            except Exception as exc:  # pylint: disable=broad-except
                self.errors.append(repr(exc))
            self._stop.wait(0.2)
        conn.close()

    def sync(self, conn):
        seen = set()
        existing = set()
        for vol in conn.block_storage.volumes(details=True):
            existing.add(vol.id)
            name = (vol.metadata or {}).get('pv_name') or vol.name or ''
            if not name.startswith(self.prefix) or name in self.hide:
                continue
            # attached here (status in-use, extending, ...): the guest has the disk
            here = any(a.get('server_id') == self.server_id for a in vol.attachments or [])
            if not here or vol.status in ('available', 'reserved', 'attaching'):
                continue
            seen.add(vol.id)
            size = self.wrong_size.get(name, int(vol.size) * 1024 ** 3)
            if vol.id not in self.published:
                guest_device.publish(vol.id, size)
                self.published[vol.id] = size
            elif self.published[vol.id] != size and size > self.published[vol.id]:
                guest_device.resize(vol.id, size)
                self.published[vol.id] = size
        for vid in list(self.published):
            if vid not in seen:
                # detached: the disk leaves the guest, its data stays with the volume
                guest_device.unpublish(vid, keep_image=vid in existing)
                del self.published[vid]
                if vid in existing:
                    self.kept.add(vid)
        for vid in list(self.kept):
            if vid not in existing:          # deleted in Cinder: drop the data
                guest_device.unpublish(vid)
                self.kept.discard(vid)

    def stop(self):
        self._stop.set()
        self._thread.join(10)
        for vid in list(self.published) + list(self.kept):
            _umount_source(guest_device, vid)
            guest_device.unpublish(vid)
        self.published.clear()
        self.kept.clear()


def _umount_source(gd, volume_id):
    """Unmount what is mounted from the loop device of ``volume_id`` (a test left it mounted)."""
    data = gd._load(gd.STATE_DIR)
    loops = set(os.path.realpath(item['loop']) for item in data.values() if item['volume_id'] == volume_id)
    with open('/proc/self/mountinfo') as handle:
        for line in handle:
            fields = line.split()
            sep = fields.index('-')
            source = fields[sep + 2]
            if os.path.realpath(source) in loops:
                subprocess.run(['umount', '-l', fields[4]], check=False)


@pytest.fixture
def hypervisor(conn, uid, docker_host):
    hv = Hypervisor(conn, docker_host.id, uid).start()
    yield hv
    hv.stop()
