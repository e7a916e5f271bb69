# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hypervisor + udev emulation for the multi-host lab: each lab host is a Nova server.

Rule: it follows Nova's view only (the volume attachments of each lab host's server) and
publishes a volume attached to server X inside lab host X ONLY, under the link a KVM guest
gets from udev (``/dev/disk/by-id/virtio-<volume id[:20]>``). The data lives in ONE shared
backing store on the machine (the "SAN": one sparse file per Cinder volume), so what host A
wrote is there when the volume shows up on host B. On detach the link leaves host X and the
loop device is detached. Only loop devices this emulator attached (to its own SAN files) are
ever detached; nothing of the lab hosts' own loop devices is touched.

    hv = LabHypervisor(lab, {'host1': server_id, ...}, san_dir).start()   # polls every 0.3 s
    hv.wait_published(volume_id, 'host1')   # tests: until the guest sees it
    hv.stop()                               # unpublish everything, detach its loops, drop the SAN files

``lab`` is tests/harness/lab/lab.py's ``Lab`` (``.exec(host, argv)`` runs in the host's
namespaces; the loop nodes /dev/loopN exist there, the device cgroup allows ``b 7:*``).
``events`` records (monotonic time, 'publish'/'unpublish', volume id, host) and (time, 'guest-stopped',
server id, host) for the tests.

A Nova ``stop`` of server X (through the API, e.g. a failover's ``fence_stop``) is honoured as a
hypervisor does: as soon as Nova shows X powering off (or SHUTOFF), lab host X's container is
killed (its dockerd, containers and mount namespace die: it writes nothing any more) and X's
disks are unpublished. ``guest_rebooted`` starts X again (Nova ``start``, the same container
restarted: its rootfs and /etc/fstab kept, a "reboot").
"""

from __future__ import absolute_import, division, print_function

import os
import subprocess
import threading
import time

BYID = '/dev/disk/by-id'
# Cinder statuses in which the guest has the disk (reserved/attaching: not yet)
ATTACHED_STATUSES = ('in-use', 'extending', 'detaching', 'retyping', 'maintenance')
# connection-level failures of the API that the next round retries (up to TRANSIENT_ROUNDS in a row)
TRANSIENT = ('ConnectFailure', 'ConnectionError', 'ConnectTimeout', 'RetriableConnectionFailure')
TRANSIENT_ROUNDS = 20


def link_name(volume_id):
    return 'virtio-%s' % volume_id[:20]


def _losetup(*args):
    return subprocess.run(['losetup'] + list(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=False)


class LabHypervisor(object):
    def __init__(self, lab, servers, san_dir, clouds_yaml=None, cloud='pvtest', interval=0.3):
        self.lab = lab
        self.servers = dict(servers)            # lab host name -> Nova server id
        self.san_dir = san_dir
        self.clouds_yaml = clouds_yaml
        self.cloud = cloud
        self.interval = interval
        self.published = {}                     # (volume id, host) -> {'loop': '/dev/loopN', 'size': bytes}
        self.events = []
        self.errors = []
        self.down = set()                       # hosts whose container is gone (a dead guest)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name='lab-hypervisor', daemon=True)

    # ---------------------------------------------------------------- life cycle
    def start(self):
        os.makedirs(self.san_dir, exist_ok=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(30)
        with self._lock:
            for key in list(self.published):
                self._unpublish(*key)
        for name in os.listdir(self.san_dir) if os.path.isdir(self.san_dir) else []:
            path = os.path.join(self.san_dir, name)
            self._detach_loops_of(path)
            os.unlink(path)

    def _connect(self):
        import openstack
        if self.clouds_yaml:
            os.environ['OS_CLIENT_CONFIG_FILE'] = self.clouds_yaml
        return openstack.connect(cloud=self.cloud, connect_retries=3)

    def _loop(self):
        conn = self._connect()
        refused = []                             # consecutive rounds the cloud's API did not answer
        try:
            while not self._stop.is_set():
                try:
                    self.sync(conn)
                    del refused[:]
                except Exception as exc:  # pylint: disable=broad-except
                    # a connection the API dropped (seen under load 20+ on 2 cores) is retried next round,
                    # as a hypervisor's agent does; an error that persists (or any other) is recorded
                    if type(exc).__name__ in TRANSIENT and len(refused) < TRANSIENT_ROUNDS:
                        refused.append(exc)
                    else:
                        self.errors.append('%s: %r' % (time.strftime('%H:%M:%S'), exc))
                self._stop.wait(self.interval)
        finally:
            conn.close()

    # ---------------------------------------------------------------- Nova's view -> guests
    def sync(self, conn):
        want = {}                                # (volume id, host) -> size in bytes
        self._honour_stops(conn)
        for host, server_id in self.servers.items():
            if host in self.down:
                continue
            for att in conn.compute.volume_attachments(server_id):
                vol = conn.block_storage.get_volume(att.volume_id)
                if vol.status in ATTACHED_STATUSES:
                    want[(vol.id, host)] = int(vol.size) * 1024 ** 3
        with self._lock:
            for key in list(self.published):
                if key not in want:
                    self._unpublish(*key)
            for key, size in want.items():
                if key not in self.published:
                    self._publish(key[0], key[1], size)
                elif size > self.published[key]['size']:
                    self._grow(key, size)
            # SAN files of volumes Cinder no longer has
            for name in os.listdir(self.san_dir):
                vid = name[:-4]
                if name.endswith('.img') and not any(k[0] == vid for k in self.published):
                    if conn.block_storage.find_volume(vid, ignore_missing=True) is None:
                        path = os.path.join(self.san_dir, name)
                        self._detach_loops_of(path)
                        os.unlink(path)

    def _image(self, volume_id):
        return os.path.join(self.san_dir, volume_id + '.img')

    def _publish(self, volume_id, host, size):
        image = self._image(volume_id)
        with open(image, 'ab') as handle:
            if os.fstat(handle.fileno()).st_size < size:
                handle.truncate(size)
        proc = _losetup('--find', '--show', image)
        if proc.returncode != 0:
            raise RuntimeError('losetup %s: %s' % (image, proc.stderr.strip()))
        loop = proc.stdout.strip()
        number = int(loop[len('/dev/loop'):])
        link = os.path.join(BYID, link_name(volume_id))
        script = ('mkdir -p %(byid)s && { [ -b %(loop)s ] || mknod -m 660 %(loop)s b 7 %(n)d; } && '
                  'ln -sfn ../../loop%(n)d %(link)s.tmp && mv -T %(link)s.tmp %(link)s'
                  % dict(byid=BYID, loop=loop, n=number, link=link))
        out = self.lab.exec(host, ['sh', '-c', script], check=False)
        if out.returncode != 0:
            _losetup('-d', loop)
            raise RuntimeError('publish %s in %s: %s' % (volume_id, host, (out.stderr or out.stdout).strip()))
        self.published[(volume_id, host)] = {'loop': loop, 'size': size}
        self.events.append((time.monotonic(), 'publish', volume_id, host))

    def _grow(self, key, size):
        with open(self._image(key[0]), 'ab') as handle:
            handle.truncate(size)
        _losetup('-c', self.published[key]['loop'])
        self.published[key]['size'] = size

    def _unpublish(self, volume_id, host):
        item = self.published.pop((volume_id, host))
        link = os.path.join(BYID, link_name(volume_id))
        if host not in self.down:
            # the disk leaves the guest: its by-id link (only if it still points at our loop device)
            self.lab.exec(host, ['sh', '-c', '[ "$(readlink %s)" = "../../%s" ] && rm -f %s || true'
                                 % (link, os.path.basename(item['loop']), link)], check=False)
        self._detach_loops_of(self._image(volume_id), only=item['loop'])
        self.events.append((time.monotonic(), 'unpublish', volume_id, host))

    @staticmethod
    def _detach_loops_of(image, only=None):
        """Detach the loop devices over ``image`` (matched by device + inode: ``losetup -j``)."""
        if not os.path.exists(image):
            return
        for line in _losetup('-j', image).stdout.splitlines():
            dev = line.split(':', 1)[0]
            if only is None or dev == only:
                _losetup('-d', dev)

    def _honour_stops(self, conn):
        """A server that Nova powers off (``stop``) or shows SHUTOFF: its guest stops now (the
        container is killed, as a hypervisor destroys the guest), before anything else is synced."""
        ids = dict((sid, host) for host, sid in self.servers.items() if host not in self.down)
        if not ids:
            return
        for srv in conn.compute.servers():
            host = ids.get(srv.id)
            if host is None:
                continue
            if srv.status == 'SHUTOFF' or srv.task_state == 'powering-off':
                self.kill_guest(host)
                self.events.append((time.monotonic(), 'guest-stopped', srv.id, host))

    def container(self, host):
        return [h for h in self.lab.hosts if h['name'] == host][0]['container']

    def kill_guest(self, host):
        self.mark_down(host)
        self.lab.docker('kill', self.container(host), check=False)

    # ---------------------------------------------------------------- for the tests
    def mark_down(self, host):
        """Host ``host``'s container is gone: stop exec'ing into it."""
        self.down.add(host)

    def where(self, volume_id):
        with self._lock:
            return sorted(h for (v, h) in self.published if v == volume_id)

    def wait_published(self, volume_id, host, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if host in self.where(volume_id):
                return
            time.sleep(0.1)
        raise AssertionError('volume %s not published in %s after %ss (errors: %s)'
                             % (volume_id, host, timeout, self.errors[-3:]))

    def guest_died(self, host, conn):
        """Host ``host`` dies as a guest does: its container is killed (dockerd, sshd and its mount
        namespace go with it) and the hypervisor reports its server SHUTOFF (Nova's stop)."""
        self.kill_guest(host)
        server = conn.compute.get_server(self.servers[host])
        conn.compute.stop_server(server)
        conn.compute.wait_for_server(server, status='SHUTOFF', wait=120, interval=0.5)

    def guest_rebooted(self, host, conn, timeout=120):
        """Host ``host`` comes back: Nova ``start`` of its server, then the SAME container started
        again (its rootfs and /etc/fstab as they were; /dev, /run and dockerd fresh: a reboot whose
        boot runs ``mount -a``). Returns the boot log lines of lab-init."""
        server = conn.compute.get_server(self.servers[host])
        if server.status == 'SHUTOFF':
            conn.compute.start_server(server)
            conn.compute.wait_for_server(server, status='ACTIVE', wait=120, interval=0.5)
        name = self.container(host)
        since = self.lab.docker('inspect', '-f', '{{.State.FinishedAt}}', name).stdout.strip()
        self.lab.docker('start', name)
        deadline = time.monotonic() + timeout
        logs = ''
        while time.monotonic() < deadline:
            proc = self.lab.docker('logs', '--since', since, name, check=False, quiet=True)
            logs = proc.stdout + proc.stderr
            if 'lab-init: READY' in logs or 'lab-init: ERROR' in logs:
                break
            time.sleep(0.2)
        assert 'lab-init: READY' in logs, 'lab host %s did not boot again:\n%s' % (host, logs[-3000:])
        self.down.discard(host)
        return [line for line in logs.splitlines() if line.startswith('lab-init:')]

    def guest_replaced(self, host, conn):
        """Bring ``host`` back as a fresh lab host and its server ACTIVE (test clean-up)."""
        self.lab.reset_host(host)
        server = conn.compute.get_server(self.servers[host])
        if server.status == 'SHUTOFF':
            conn.compute.start_server(server)
            conn.compute.wait_for_server(server, status='ACTIVE', wait=120, interval=0.5)
        self.down.discard(host)
