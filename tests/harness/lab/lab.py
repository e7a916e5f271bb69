# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Multi-host lab: N Docker hosts as docker-in-docker containers on a PRIVATE dockerd.

Rule: nothing of the machine's own Docker (dockerd, docker0, iptables) is touched; the lab
dockerd lives in its own network namespace (``pvlab``), its hosts on 172.31.242.0/24, and
``down`` removes every trace (containers, the lab dockerd, netns, veth, bridge, cgroups and
the loop devices the hosts made, matched by backing st_dev + inode), also after a killed run.

    lab.py build              build the host image once (debootstrap), cached by a hash of its inputs
    lab.py up [N]             build if needed, then the lab dockerd and hosts host1..hostN (default 3)
    lab.py inventory [FILE]   write the Ansible inventory of the running lab (default: state dir)
    lab.py status             what runs
    lab.py swarm              form a Docker Swarm: host1 manager, the others workers
    lab.py down               remove everything (safe to repeat, safe after a killed run)
    lab.py purge              down + drop the lab dockerd's data root (the imported image)

Environment: PV_LAB_CACHE (/var/cache/pv-lab: image tarball + lab dockerd data root),
PV_LAB_STATE (/run/pv-lab: socket, pid, control key, inventory, logs), PV_LAB_SUITE and
PV_LAB_MIRROR (default: the Debian suite and mirror of this machine's apt sources).
Python API: ``Lab().up(3)``, ``.hosts``, ``.inventory(path, hostvars=...)``, ``.exec(host, cmd)``,
``.down()``; tests/integration/fleet/conftest.py is the pytest fixture.
"""

from __future__ import absolute_import, division, print_function

import argparse
import array
import fcntl
import glob
import hashlib
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
HOST_SCRIPTS = os.path.join(HERE, 'host')
CGROUP_EXEC = os.path.join(HERE, 'netns-cgroup-exec')

CACHE = os.environ.get('PV_LAB_CACHE', '/var/cache/pv-lab')
# PV_LAB_INSTANCE=N (1-9): a second lab beside the default one on the same machine (own names,
# subnet 172.31.(242+N).0/24, state, lock and lab dockerd data root); default: the one lab.
INSTANCE = os.environ.get('PV_LAB_INSTANCE', '')
if INSTANCE and not (INSTANCE.isdigit() and 1 <= int(INSTANCE) <= 9):
    raise SystemExit('PV_LAB_INSTANCE must be 1..9, not %r' % INSTANCE)
_SFX = INSTANCE
_NET = 242 + int(INSTANCE or 0)
STATE = os.environ.get('PV_LAB_STATE', '/run/pv-lab' + _SFX)
LOCK = '/run/pv-lab%s.lock' % _SFX

# names and addresses: distinct from every other harness on the machine
NETNS = 'pvlab' + _SFX
VETH_HOST = 'pvlab%s-h' % _SFX     # machine side, 172.31.242.254
VETH_NS = 'pvlab%s-n' % _SFX       # inside the netns, enslaved to the bridge
BRIDGE = 'pvlab%sbr0' % _SFX
NETWORK = 'pvlab' + _SFX
SUBNET = '172.31.%d.0/24' % _NET
GATEWAY = '172.31.%d.1' % _NET
MACHINE_IP = '172.31.%d.254' % _NET
CGROUP_PARENT = 'pvlab' + _SFX
CONTAINER_PREFIX = 'pvlab%s-' % _SFX
DATA_ROOT_NAME = 'docker' + _SFX

# What a managed Docker host needs (README, "Managed hosts") + how Ansible reaches it
# (openssh-server, sudo) + the tests' container image (busybox-static). Nothing else: the
# roles install the rest. python3-apt is deliberately absent (the offline/check-mode case).
MANAGED_HOST_PACKAGES = ['python3', 'python3-docker', 'docker.io', 'e2fsprogs', 'xfsprogs', 'util-linux', 'mount']
ACCESS_PACKAGES = ['openssh-server', 'sudo']
LAB_PACKAGES = ['busybox-static']
#: bump when the build recipe below changes (part of the cache key)
RECIPE_VERSION = 1

LOOP_GET_STATUS64 = 0x4C05
LOOP_INFO64 = struct.Struct('=QQQQQIIII64s64s32sQQ')


def log(msg):
    sys.stderr.write('lab: %s\n' % msg)
    sys.stderr.flush()


def run(cmd, check=True, quiet=False, **kwargs):
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, check=False, **kwargs)
    if check and proc.returncode != 0:
        raise RuntimeError('%s failed (rc=%s): %s' % (' '.join(cmd), proc.returncode,
                                                      (proc.stderr or proc.stdout).strip()[-3000:]))
    if not check and not quiet and proc.returncode != 0:
        log('%s: rc=%s %s' % (' '.join(cmd[:4]), proc.returncode, proc.stderr.strip()[-300:]))
    return proc


# ------------------------------------------------------------------ the image

def apt_source():
    """(suite, mirror) of this machine's main Debian apt source (deb822 or one-line format)."""
    entries = []
    for path in sorted(glob.glob('/etc/apt/sources.list.d/*.sources')):
        with open(path) as handle:
            for stanza in re.split(r'\n\s*\n', handle.read()):
                fields = {}
                for line in stanza.splitlines():
                    if ':' in line and not line.startswith(('#', ' ')):
                        key, value = line.split(':', 1)
                        fields[key.strip().lower()] = value.split()
                if 'deb' in fields.get('types', []) and fields.get('uris') and fields.get('suites'):
                    entries.append((fields['uris'][0], fields['suites']))
    for path in ['/etc/apt/sources.list'] + sorted(glob.glob('/etc/apt/sources.list.d/*.list')):
        if os.path.exists(path):
            with open(path) as handle:
                for line in handle:
                    parts = line.split()
                    if parts and parts[0] == 'deb':
                        parts = [p for p in parts[1:] if not p.startswith('[')]
                        if len(parts) >= 2:
                            entries.append((parts[0], [parts[1]]))
    codename = None
    try:
        with open('/etc/os-release') as handle:
            codename = dict(line.rstrip('\n').split('=', 1) for line in handle if '=' in line).get(
                'VERSION_CODENAME', '').strip('"') or None
    except OSError:
        pass
    for uri, suites in entries:
        if '/debian' in uri and 'security' not in uri:
            base = [s for s in suites if '-' not in s and '/' not in s]
            if base:
                return os.environ.get('PV_LAB_SUITE', codename if codename in base else base[0]), \
                    os.environ.get('PV_LAB_MIRROR', uri)
    return os.environ.get('PV_LAB_SUITE', codename or 'bookworm'), \
        os.environ.get('PV_LAB_MIRROR', 'http://deb.debian.org/debian')


def packages(suite):
    pkgs = MANAGED_HOST_PACKAGES + ACCESS_PACKAGES + LAB_PACKAGES
    if suite not in ('bullseye', 'bookworm'):
        pkgs = pkgs + ['docker-cli']      # Debian 13: the CLI is its own package, only recommended
    return pkgs


def image_key(suite):
    arch = run(['dpkg', '--print-architecture']).stdout.strip()
    text = json.dumps({'suite': suite, 'arch': arch, 'packages': packages(suite), 'recipe': RECIPE_VERSION},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def image_tar(key):
    return os.path.join(CACHE, 'host-%s.tar' % key)


def image_tag(key):
    return 'pvlab/host:%s' % key


def build(force=False):
    """Build the host image tarball unless the cache has it; return (key, seconds spent)."""
    suite, mirror = apt_source()
    key = image_key(suite)
    tar = image_tar(key)
    if os.path.exists(tar) and not force:
        return key, 0.0
    os.makedirs(CACHE, exist_ok=True)
    start = time.monotonic()
    with open(os.path.join(CACHE, '.build.lock'), 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(tar) and not force:
            return key, 0.0
        if shutil.which('debootstrap') is None:
            log('installing debootstrap')
            apt_install(['debootstrap'])
        root = os.path.join(CACHE, 'build-%s' % key)
        if os.path.exists(root):
            run(['rm', '-rf', '--one-file-system', root])
        pkgs = packages(suite)
        log('debootstrap --variant=minbase %s from %s with %s' % (suite, mirror, ','.join(pkgs)))
        proc = subprocess.run(['debootstrap', '--variant=minbase', '--include=' + ','.join(pkgs), suite, root, mirror],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError('debootstrap failed (rc=%s):\n%s' % (proc.returncode, proc.stdout[-4000:]))
        _customize(root)
        tmp = tar + '.tmp'
        run(['tar', '-C', root, '--numeric-owner', '-cf', tmp, '.'])
        os.replace(tmp, tar)
        run(['rm', '-rf', '--one-file-system', root])
        for old in glob.glob(os.path.join(CACHE, 'host-*.tar')):
            if old != tar:
                os.unlink(old)
        took = time.monotonic() - start
        with open(os.path.join(CACHE, 'host-%s.json' % key), 'w') as handle:
            json.dump({'suite': suite, 'mirror': mirror, 'packages': pkgs, 'build_seconds': round(took, 1),
                       'built': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, handle, indent=1)
        log('image %s built in %.0f s' % (key, took))
        return key, took


def _customize(root):
    """The `ansible` user with passwordless sudo, key-only sshd, a per-host fstab, no caches."""
    def write(rel, text, mode=0o644):
        path = os.path.join(root, rel.lstrip('/'))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w') as handle:
            handle.write(text)
        os.chmod(path, mode)
    run(['chroot', root, 'useradd', '-m', '-s', '/bin/bash', 'ansible'])
    write('/etc/sudoers.d/ansible', 'ansible ALL=(ALL) NOPASSWD: ALL\n', 0o440)
    write('/etc/ssh/sshd_config.d/lab.conf', 'PasswordAuthentication no\nKbdInteractiveAuthentication no\n'
          'PermitRootLogin no\nUseDNS no\n')
    write('/etc/fstab', '# /etc/fstab of a lab host (tests/harness/lab)\n')
    for path in glob.glob(os.path.join(root, 'etc/ssh/ssh_host_*')):
        os.unlink(path)            # generated per container at boot
    for pattern in ('var/cache/apt/archives/*.deb', 'var/cache/apt/*.bin', 'var/lib/apt/lists/*'):
        for path in glob.glob(os.path.join(root, pattern)):
            if os.path.isfile(path):
                os.unlink(path)


#: the systemd variant: these packages on top of the image, the units below (bump on change)
SYSTEMD_PACKAGES = ['systemd', 'systemd-sysv', 'dbus']
SYSTEMD_RECIPE_VERSION = 1
SYSTEMD_MASKED = ['systemd-udevd.service', 'systemd-udev-trigger.service', 'getty.target',
                  'console-getty.service', 'systemd-logind.service']


def systemd_tar(key):
    # not host-*.tar: build() removes every other host-*.tar of the cache
    return os.path.join(CACHE, 'systemd-%s-%d.tar' % (key, SYSTEMD_RECIPE_VERSION))


def systemd_tag(key):
    return 'pvlab/host-systemd:%s-%d' % (key, SYSTEMD_RECIPE_VERSION)


def build_systemd(key):
    """The systemd-as-PID-1 variant of image ``key`` (cached): its rootfs plus systemd, with
    units for sshd, containerd, docker (DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1) and
    pvlab-ready.service (host/lab-ready); udev, getty and logind masked. Returns seconds spent."""
    tar = systemd_tar(key)
    if os.path.exists(tar):
        return 0.0
    start = time.monotonic()
    with open(os.path.join(CACHE, '.build.lock'), 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(tar):
            return 0.0
        root = os.path.join(CACHE, 'build-systemd-%s' % key)
        if os.path.exists(root):
            run(['rm', '-rf', '--one-file-system', root])
        os.makedirs(root)
        run(['tar', '-C', root, '--numeric-owner', '-xf', image_tar(key)])
        shutil.copy('/etc/resolv.conf', os.path.join(root, 'etc/resolv.conf'))
        run(['mount', '-t', 'proc', 'proc', os.path.join(root, 'proc')])
        try:
            env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
            run(['chroot', root, 'apt-get', 'update', '-q'], env=env)
            run(['chroot', root, 'apt-get', 'install', '-y', '-q', '--no-install-recommends'] + SYSTEMD_PACKAGES,
                env=env)
        finally:
            run(['umount', os.path.join(root, 'proc')], check=False)

        def write(rel, text):
            path = os.path.join(root, rel.lstrip('/'))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, 'w') as handle:
                handle.write(text)
        write('/etc/systemd/system/docker.service.d/lab.conf',
              '[Service]\nEnvironment=DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1\n')
        write('/etc/systemd/system/pvlab-ready.service',
              '[Unit]\nDescription=lab host ready (tests/harness/lab)\nAfter=docker.service ssh.service\n'
              'Requires=docker.service\n\n[Service]\nType=oneshot\nRemainAfterExit=yes\n'
              'ExecStart=/opt/pvlab/lab-ready\n\n[Install]\nWantedBy=multi-user.target\n')
        run(['chroot', root, 'systemctl', 'enable', 'pvlab-ready.service', 'ssh.service', 'docker.service',
             'containerd.service'])
        run(['chroot', root, 'systemctl', 'mask'] + SYSTEMD_MASKED, check=False)
        for pattern in ('var/cache/apt/archives/*.deb', 'var/cache/apt/*.bin', 'var/lib/apt/lists/*',
                        'etc/ssh/ssh_host_*'):
            for path in glob.glob(os.path.join(root, pattern)):
                if os.path.isfile(path):
                    os.unlink(path)
        tmp = tar + '.tmp'
        run(['tar', '-C', root, '--numeric-owner', '-cf', tmp, '.'])
        os.replace(tmp, tar)
        run(['rm', '-rf', '--one-file-system', root])
        took = time.monotonic() - start
        log('systemd variant %s built in %.0f s' % (os.path.basename(tar), took))
        return took


def apt_install(pkgs):
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    cmd = ['apt-get', 'install', '-y', '-q', '--no-install-recommends'] + list(pkgs)
    if subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, check=False).returncode != 0:
        run(['apt-get', 'update', '-q'], env=env)
        run(cmd, env=env)


# ------------------------------------------------------------------ loop devices (kernel-global)

def loop_identity(device):
    """(lo_device, lo_inode) of an attached loop device, from LOOP_GET_STATUS64; None if unbound."""
    try:
        fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        buf = array.array('B', bytes(LOOP_INFO64.size))
        fcntl.ioctl(fd, LOOP_GET_STATUS64, buf, True)
    except OSError:
        return None
    finally:
        os.close(fd)
    fields = LOOP_INFO64.unpack(buf.tobytes())
    return fields[0], fields[1]


def attached_loops():
    """{'/dev/loopN': (st_dev, st_ino) of its backing file} for every bound loop device."""
    found = {}
    for sysdir in glob.glob('/sys/block/loop*/loop'):
        dev = '/dev/' + sysdir.split('/')[3]
        ident = loop_identity(dev)
        if ident is not None:
            found[dev] = ident
    return found


def live_devs():
    """st_dev numbers of every filesystem mounted in any live mount namespace."""
    devs = set()
    for path in glob.glob('/proc/[0-9]*/mountinfo'):
        try:
            with open(path) as handle:
                for line in handle:
                    major, minor = line.split()[2].split(':')
                    devs.add(os.makedev(int(major), int(minor)))
        except (OSError, ValueError, IndexError):
            continue
    return devs


# ------------------------------------------------------------------ the lab

class Lab(object):
    """The lab on this machine (one at a time: names and addresses are fixed)."""

    def __init__(self, state=STATE, cache=CACHE):
        self.state = state
        self.cache = cache
        self.sock = 'unix://' + os.path.join(state, 'docker.sock')
        self.pidfile = os.path.join(state, 'dockerd.pid')
        self.key = os.path.join(state, 'ssh', 'id_ed25519')
        self.hosts_file = os.path.join(state, 'hosts.json')
        self.timings = {}

    # -- helpers
    def docker(self, *args, check=True, quiet=False, timeout=None):
        return run(['docker', '-H', self.sock] + list(args), check=check, quiet=quiet, timeout=timeout)

    def dockerd_pid(self):
        try:
            with open(self.pidfile) as handle:
                pid = int(handle.read().strip())
            with open('/proc/%d/comm' % pid) as handle:
                return pid if handle.read().strip() == 'dockerd' else None
        except (OSError, ValueError):
            return None

    def dockerd_ok(self):
        if not os.path.exists(self.sock[7:]):
            return False
        try:
            return self.docker('version', '-f', '{{.Server.Version}}', check=False, quiet=True,
                               timeout=20).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    @property
    def hosts(self):
        """[{'name': 'host1', 'container': 'pvlab-host1', 'ip': ..., 'devs': [...]}, ...] of the running lab."""
        try:
            with open(self.hosts_file) as handle:
                return json.load(handle)['hosts']
        except (OSError, ValueError, KeyError):
            return []

    def _save_hosts(self, hosts):
        tmp = self.hosts_file + '.tmp'
        with open(tmp, 'w') as handle:
            json.dump({'hosts': hosts}, handle, indent=1)
        os.replace(tmp, self.hosts_file)

    def exec(self, host, cmd, check=True, user=None):
        """Run ``cmd`` (list) in lab host ``host`` (name) as root (or ``user``); CompletedProcess."""
        args = ['exec'] + (['-u', user] if user else []) + [CONTAINER_PREFIX + host] + list(cmd)
        return self.docker(*args, check=check, quiet=not check)

    # -- up
    def up(self, n=3):
        """Build (if needed), then start the lab dockerd and n hosts; return the host list."""
        t0 = time.monotonic()
        key, build_s = build()
        self.timings['build'] = build_s
        with self._lock():
            owner = self._owner()
            if owner:
                raise RuntimeError('the lab is in use by process %d (%s); wait for it or run lab.py down'
                                   % (owner, self.state))
            if os.path.exists(self.state) or self._netns_exists():
                log('leftovers of an earlier lab: removing them first')
                self._down()
            os.makedirs(os.path.join(self.state, 'ssh'), mode=0o700)
            with open(os.path.join(self.state, 'owner.pid'), 'w') as handle:
                handle.write('%d\n' % os.getpid())
            run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'pvlab-control', '-f', self.key])
            t1 = time.monotonic()
            self._network_up()
            self._dockerd_up()
            self.timings['dockerd'] = time.monotonic() - t1
            t1 = time.monotonic()
            self._image(key)
            self.timings['image_import'] = time.monotonic() - t1
            t1 = time.monotonic()
            hosts = self._hosts_up(key, n)
            self.timings['hosts'] = time.monotonic() - t1
            self.inventory(os.path.join(self.state, 'inventory.yml'))
        self.timings['up'] = time.monotonic() - t0
        log('up: %s' % ', '.join('%s=%.1fs' % kv for kv in sorted(self.timings.items())))
        return hosts

    def _owner(self):
        """pid of another live process that brought this lab up (a test session, a bench), else None.
        A lab left by `lab.py up` (the process has exited) or by a killed run has no live owner."""
        try:
            with open(os.path.join(self.state, 'owner.pid')) as handle:
                pid = int(handle.read().strip())
        except (OSError, ValueError):
            return None
        if pid == os.getpid() or not os.path.exists('/proc/%d' % pid):
            return None
        return pid

    def _netns_exists(self):
        return os.path.exists('/run/netns/' + NETNS)

    def _network_up(self):
        run(['ip', 'netns', 'add', NETNS])
        run(['ip', '-n', NETNS, 'link', 'set', 'lo', 'up'])
        run(['ip', 'link', 'add', VETH_HOST, 'type', 'veth', 'peer', 'name', VETH_NS])
        run(['ip', 'link', 'set', VETH_NS, 'netns', NETNS])
        run(['ip', 'addr', 'add', MACHINE_IP + '/24', 'dev', VETH_HOST])
        run(['ip', 'link', 'set', VETH_HOST, 'up'])
        # no way out, and say so at once: the netns answers anything off the lab subnet with ICMP
        # "network unreachable" (air-gapped hosts whose apt/DNS fail fast instead of timing out)
        run(['ip', 'netns', 'exec', NETNS, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1'])
        run(['ip', '-n', NETNS, 'route', 'add', 'unreachable', 'default'])

    def _dockerd_up(self):
        data_root = os.path.join(self.cache, DATA_ROOT_NAME)
        os.makedirs(data_root, exist_ok=True)
        conf = os.path.join(self.state, 'daemon.json')
        with open(conf, 'w') as handle:
            handle.write('{}\n')
        logfile = open(os.path.join(self.state, 'dockerd.log'), 'w')
        # ip netns exec: own network stack (own iptables, no route out) and a private (rslave) mount
        # namespace; netns-cgroup-exec brings back the cgroup mounts it hides
        # setsid -f: dockerd is not our child (never a zombie of a long-lived caller such as pytest)
        subprocess.Popen(['setsid', '-f', 'ip', 'netns', 'exec', NETNS, CGROUP_EXEC, 'dockerd', '--config-file', conf,
                          '--data-root', data_root, '--exec-root', os.path.join(self.state, 'exec'),
                          '-H', self.sock, '--pidfile', self.pidfile, '--bridge', 'none', '--iptables=false',
                          '--ip-masq=false', '--ip-forward=false', '--cgroup-parent', '/' + CGROUP_PARENT,
                          '--storage-driver', 'overlay2'],
                         stdin=subprocess.DEVNULL, stdout=logfile, stderr=subprocess.STDOUT).wait()
        logfile.close()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not self.dockerd_ok():
            time.sleep(0.2)
        if not self.dockerd_ok():
            raise RuntimeError('lab dockerd did not come up:\n' + self._tail('dockerd.log'))
        if self.docker('network', 'inspect', NETWORK, check=False, quiet=True).returncode != 0:
            self.docker('network', 'create', '--driver', 'bridge', '--subnet', SUBNET, '--ip-range',
                        SUBNET.replace('.0/24', '.0/25'), '--gateway', GATEWAY,
                        '-o', 'com.docker.network.bridge.name=' + BRIDGE, NETWORK)
        # containers a killed lab left in the data root
        stale = self.docker('ps', '-aq', '--filter', 'label=pvlab=1').stdout.split()
        if stale:
            self.docker('rm', '-f', '-v', *stale, check=False)
        run(['ip', '-n', NETNS, 'link', 'set', VETH_NS, 'master', BRIDGE])
        run(['ip', '-n', NETNS, 'link', 'set', VETH_NS, 'up'])

    def _tail(self, name, lines=30):
        try:
            with open(os.path.join(self.state, name)) as handle:
                return ''.join(handle.readlines()[-lines:])
        except OSError:
            return ''

    def _image(self, key):
        tag = image_tag(key)
        if self.docker('image', 'inspect', tag, check=False, quiet=True).returncode == 0:
            return
        log('docker import %s' % image_tar(key))
        self.docker('import', image_tar(key), tag)
        for line in self.docker('image', 'ls', '--format', '{{.Repository}}:{{.Tag}}', 'pvlab/host').stdout.split():
            if line != tag:
                self.docker('image', 'rm', line, check=False)

    def _hosts_up(self, key, n):
        hosts = [{'name': 'host%d' % i, 'container': CONTAINER_PREFIX + 'host%d' % i,
                  'ip': '172.31.%d.%d' % (_NET, 10 + i), 'image': image_tag(key)} for i in range(1, n + 1)]
        for host in hosts:
            self._run_host(host)
        self._wait_ready(hosts)
        self._save_hosts(hosts)
        self._record_devs()
        return hosts

    def _run_host(self, host):
        with open(self.key + '.pub') as handle:
            pubkey = handle.read().strip()
        if host.get('variant') == 'systemd':
            # systemd as PID 1 (no docker-init); it stops on SIGRTMIN+3; its own /run/lock and /tmp
            variant = ['--stop-signal', 'SIGRTMIN+3', '--tmpfs', '/run/lock', '--tmpfs', '/tmp:rw,exec',
                       '-e', 'container=docker', '--entrypoint', '/opt/pvlab/lab-init-systemd']
        else:
            variant = ['--init', '--entrypoint', '/opt/pvlab/lab-init']
        self.docker(
            'run', '-d', '--name', host['container'], '--hostname', host['name'], *variant[:-2],
            '--label', 'pvlab=1',
            '--cap-add', 'ALL', '--cap-drop', 'SYS_RESOURCE',   # --privileged fails here (bounding set)
            '--security-opt', 'seccomp=unconfined', '--security-opt', 'apparmor=unconfined',
            '--security-opt', 'systempaths=unconfined',
            '--device', '/dev/loop-control', '--device-cgroup-rule', 'b 7:* rmw',
            '--network', NETWORK, '--ip', host['ip'],
            '--tmpfs', '/run:rw,exec,suid,dev,size=256m',
            '--tmpfs', '/var/lib/docker:rw,exec,dev,suid,size=4g',
            # Docker's volume records survive a restart of the host (a "reboot"), as on a real host
            # (an anonymous volume: removed with the container, `rm -v`)
            '-v', '/var/lib/docker/volumes',
            '-v', HOST_SCRIPTS + ':/opt/pvlab:ro',
            '-e', 'LAB_AUTHORIZED_KEY=' + pubkey,
            # Swarm tasks try to pull their image first (no registry here: 6-20 s per task);
            # the inner dockerd inherits this and uses the local image
            '-e', 'DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1',
            *variant[-2:], host['image'])

    def _wait_ready(self, hosts, timeout=120):
        deadline = time.monotonic() + timeout
        pending = list(hosts)
        while pending and time.monotonic() < deadline:
            for host in list(pending):
                if host.get('variant') == 'systemd':
                    if self.exec(host['name'], ['test', '-s', '/run/pvlab.ready'], check=False).returncode == 0:
                        pending.remove(host)
                    continue
                logs = self.docker('logs', host['container'], check=False, quiet=True)
                text = logs.stdout + logs.stderr
                if 'lab-init: READY' in text:
                    pending.remove(host)
                elif 'lab-init: ERROR' in text:
                    raise RuntimeError('lab host %s failed:\n%s' % (host['name'], text[-3000:]))
            if pending:
                time.sleep(0.2)
        if pending:
            raise RuntimeError('lab hosts not ready after %d s: %s' % (timeout, [h['name'] for h in pending]))

    def reset_host(self, name):
        """Replace host ``name`` by a fresh one from the image (same name, address and key):
        its loop devices detached first, its rootfs, /etc and Docker state gone."""
        (host,) = [h for h in self.hosts if h['name'] == name]
        self.exec(name, ['/opt/pvlab/lab-loop-cleanup'], check=False)
        self.docker('rm', '-f', '-v', host['container'])
        self._sweep_loops([host])
        hosts = self.hosts
        for entry in hosts:
            if entry['name'] == name:
                entry['devs'] = []          # the old rootfs is gone; its numbers are not ours any more
        self._save_hosts(hosts)
        self._run_host(host)
        self._wait_ready([host])
        self._record_devs()
        try:
            with open(os.path.join(self.state, 'forward.json')) as handle:
                self._host_forwarder(name, json.load(handle))
        except (OSError, ValueError):
            pass

    def add_host(self, name, variant=None):
        """One more host ``name`` (e.g. ``sd1``) in the running lab, address .21 and up;
        ``variant='systemd'``: systemd as PID 1 (its image built and imported once). Returns it."""
        key, _took = build()
        tag = image_tag(key)
        if variant == 'systemd':
            self.timings['build_systemd'] = build_systemd(key)
            tag = systemd_tag(key)
            if self.docker('image', 'inspect', tag, check=False, quiet=True).returncode != 0:
                self.docker('import', '-c', 'ENV container=docker', systemd_tar(key), tag)
        hosts = self.hosts
        if any(h['name'] == name for h in hosts):
            raise RuntimeError('lab host %s exists' % name)
        used = set(h['ip'] for h in hosts)
        ip = next('172.31.%d.%d' % (_NET, i) for i in range(21, 120) if '172.31.%d.%d' % (_NET, i) not in used)
        host = {'name': name, 'container': CONTAINER_PREFIX + name, 'ip': ip, 'image': tag}
        if variant:
            host['variant'] = variant
        self._run_host(host)
        self._save_hosts(hosts + [host])
        self._wait_ready([host])
        self._record_devs()
        try:
            with open(os.path.join(self.state, 'forward.json')) as handle:
                self._host_forwarder(name, json.load(handle))
        except (OSError, ValueError):
            pass
        return host

    def remove_host(self, name):
        """Remove host ``name`` (its loop devices released first)."""
        hosts = self.hosts
        (host,) = [h for h in hosts if h['name'] == name]
        self.exec(name, ['/opt/pvlab/lab-loop-cleanup'], check=False)
        self.docker('rm', '-f', '-v', host['container'], check=False)
        self._sweep_loops([host])
        self._save_hosts([h for h in hosts if h['name'] != name])

    def own_loops(self, name):
        """{'/dev/loopN': backing file} of the loop devices whose backing file lives in host ``name``."""
        out = self.exec(name, ['/opt/pvlab/lab-loop-cleanup', '--list']).stdout
        return dict(line.split(' ', 1) for line in out.splitlines() if line.strip())

    def _record_devs(self):
        """Remember each host's own (anonymous) filesystems: down finds their loop devices by them
        even when the host is gone (killed run)."""
        hosts = self.hosts
        for host in hosts:
            proc = self.exec(host['name'], ['cat', '/proc/1/mountinfo'], check=False)
            devs = set(host.get('devs', []))
            for line in proc.stdout.splitlines():
                try:
                    major, minor = line.split()[2].split(':')
                except (IndexError, ValueError):
                    continue
                if int(major) == 0:
                    devs.add(os.makedev(0, int(minor)))
            host['devs'] = sorted(devs)
        self._save_hosts(hosts)

    # -- the machine's local services, for the hosts (e.g. the test cloud on 127.0.0.1)
    def expose_machine_ports(self, ports):
        """Make the machine's ``127.0.0.1:<port>`` reachable as ``127.0.0.1:<port>`` inside every
        lab host (two relays of host/tcp_forward.py: in each host to the machine's lab address, and
        on the machine from that address to its 127.0.0.1). Only these ports, only from the lab
        network; the machine-side relay is stopped by pid at ``down``. Hosts made later by
        ``reset_host`` get theirs too."""
        ports = sorted(set(int(p) for p in ports))
        self._stop_forwarder()
        pidfile = os.path.join(self.state, 'forward.pid')
        subprocess.Popen(['setsid', '-f', sys.executable or 'python3', os.path.join(HOST_SCRIPTS, 'tcp_forward.py'),
                          MACHINE_IP, '127.0.0.1', ','.join(map(str, ports)), '--pidfile', pidfile],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=open(os.path.join(self.state, 'forward.log'), 'w')).wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not self._forwarder_pid():
            time.sleep(0.05)
        if not self._forwarder_pid():
            raise RuntimeError('tcp_forward.py on the machine did not start:\n' + self._tail('forward.log'))
        with open(os.path.join(self.state, 'forward.json'), 'w') as handle:
            json.dump(ports, handle)
        for host in self.hosts:
            self._host_forwarder(host['name'], ports)

    def forward_into(self, name):
        """Start host ``name``'s relay of the ports :meth:`expose_machine_ports` made reachable
        (after that host's reboot: a container restart loses its processes); no-op without any."""
        try:
            with open(os.path.join(self.state, 'forward.json')) as handle:
                ports = json.load(handle)
        except (OSError, ValueError):
            ports = []
        if ports:
            self._host_forwarder(name, ports)

    def _host_forwarder(self, name, ports):
        # a relay of an earlier expose_machine_ports (other ports) gives way to the new one
        self.exec(name, ['sh', '-c', 'if [ -s /run/tcp-forward.pid ]; then kill $(cat /run/tcp-forward.pid); '
                         'rm -f /run/tcp-forward.pid; fi'], check=False)
        self.docker('exec', '-d', CONTAINER_PREFIX + name, 'python3', '/opt/pvlab/tcp_forward.py', '127.0.0.1', MACHINE_IP,
                    ','.join(map(str, ports)), '--pidfile', '/run/tcp-forward.pid')
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.exec(name, ['test', '-s', '/run/tcp-forward.pid'], check=False).returncode == 0:
                return
            time.sleep(0.05)
        raise RuntimeError('tcp_forward.py in %s did not start' % name)

    def _forwarder_pid(self):
        try:
            with open(os.path.join(self.state, 'forward.pid')) as handle:
                pid = int(handle.read().strip())
            with open('/proc/%d/cmdline' % pid, 'rb') as handle:
                return pid if b'tcp_forward.py' in handle.read() else None
        except (OSError, ValueError):
            return None

    def _stop_forwarder(self):
        pid = self._forwarder_pid()
        if pid:
            os.kill(pid, signal.SIGTERM)
        for name in ('forward.pid', 'forward.json'):
            try:
                os.unlink(os.path.join(self.state, name))
            except OSError:
                pass

    # -- files for offline hosts
    def copy_in(self, name, src, dest):
        """Copy the machine's directory ``src`` into host ``name`` as ``dest`` (docker cp)."""
        self.exec(name, ['mkdir', '-p', os.path.dirname(dest.rstrip('/')) or '/'])
        self.docker('cp', src.rstrip('/') + '/.', '%s%s:%s' % (CONTAINER_PREFIX, name, dest))

    # -- Docker Swarm across the hosts
    def swarm(self):
        """The hosts' Swarm (:class:`Swarm`): ``.init()`` makes host1 the manager and the others
        workers."""
        return Swarm(self)

    # -- inventory
    def inventory(self, path=None, hostvars=None, groupvars=None, hosts=None):
        """Write an Ansible inventory (YAML) of the lab hosts in group ``docker_hosts``; return its path.

        ``hostvars`` {host: {var: value}} and ``groupvars`` {var: value} are added; ``hosts`` limits it."""
        path = path or os.path.join(self.state, 'inventory.yml')
        group = {
            'ansible_user': 'ansible',
            'ansible_python_interpreter': '/usr/bin/python3',
            'ansible_ssh_private_key_file': self.key,
            'ansible_ssh_common_args': '-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR',
        }
        group.update(groupvars or {})
        members = {}
        for host in self.hosts:
            if hosts and host['name'] not in hosts:
                continue
            hvars = {'ansible_host': host['ip'], 'pvlab_container': host['container']}
            hvars.update((hostvars or {}).get(host['name'], {}))
            members[host['name']] = hvars
        data = {'docker_hosts': {'hosts': members, 'vars': group}}
        with open(path, 'w') as handle:
            handle.write('# lab inventory written by tests/harness/lab/lab.py\n')
            json.dump(data, handle, indent=1)    # JSON is YAML
        return path

    # -- down
    def down(self):
        with self._lock():
            self._down()

    def _lock(self):
        lab = self

        class _Lock(object):
            def __enter__(self):
                self.handle = open(LOCK, 'w')
                fcntl.flock(self.handle, fcntl.LOCK_EX)
                return lab

            def __exit__(self, *exc):
                self.handle.close()
        return _Lock()

    def _down(self):
        """Every step tolerates a missing piece (a killed run leaves any subset of them)."""
        t0 = time.monotonic()
        hosts = self.hosts
        if self.dockerd_ok():
            ids = self.docker('ps', '-aq', '--filter', 'label=pvlab=1', check=False).stdout.split()
            running = self.docker('ps', '-q', '--filter', 'label=pvlab=1', check=False).stdout.split()
            if running:
                self._record_devs()
                hosts = self.hosts
                for host in hosts:
                    # unmount + detach the host's own loop devices from inside (matched by st_dev+inode)
                    proc = self.exec(host['name'], ['/opt/pvlab/lab-loop-cleanup'], check=False)
                    for line in proc.stdout.splitlines():
                        log('%s: %s' % (host['name'], line))
            log('down: loop devices released in %.1f s' % (time.monotonic() - t0))
            if ids:
                self.docker('rm', '-f', '-v', *ids, check=False)
            log('down: hosts removed in %.1f s' % (time.monotonic() - t0))
            self.docker('network', 'rm', NETWORK, check=False, quiet=True)
        pid = self.dockerd_pid()
        if pid:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and os.path.exists('/proc/%d' % pid):
                time.sleep(0.2)
            if os.path.exists('/proc/%d' % pid):
                os.kill(pid, signal.SIGKILL)
        log('down: lab dockerd stopped in %.1f s' % (time.monotonic() - t0))
        self._stop_forwarder()
        self._kill_leftover_processes()
        self._sweep_loops(hosts)
        run(['ip', 'link', 'del', VETH_HOST], check=False, quiet=True)
        if self._netns_exists():
            run(['ip', 'netns', 'del', NETNS], check=False)
        self._rm_cgroups()
        if os.path.exists(self.state):
            shutil.rmtree(self.state, ignore_errors=True)
        log('down in %.1f s' % (time.monotonic() - t0))

    def _sweep_loops(self, hosts):
        """Detach loop devices whose backing file lived on a filesystem of a (now gone) lab host.

        A lab host's filesystems are anonymous (major 0: its overlay rootfs, its tmpfs mounts).
        The number is ours only while nobody mounts a filesystem with it: a loop device still
        holding a file of a dead host keeps that superblock (and its number) alive, and no live
        mount namespace has it mounted any more."""
        ours = set()
        for host in hosts:
            ours.update(host.get('devs', []))
        if not ours:
            return
        for _round in range(20):      # a dying mount namespace lets go of its mounts shortly after
            live = live_devs()
            if not ours & live:
                break
            time.sleep(0.1)
        for dev, (st_dev, _ino) in sorted(attached_loops().items()):
            if st_dev in ours and st_dev not in live:
                if run(['losetup', '-d', dev], check=False).returncode == 0:
                    log('detached %s (its backing file lived in a removed lab host)' % dev)

    def _kill_leftover_processes(self):
        """SIGKILL what the lab started and still runs after its dockerd is gone (killed run):
        its containerd and shims (their command line names the lab's exec root) and the host
        containers' processes (in the lab's cgroup)."""
        marker = os.path.join(self.state, 'exec') + '/'
        for path in glob.glob('/proc/[0-9]*/cmdline'):
            try:
                with open(path, 'rb') as handle:
                    cmdline = handle.read().decode('utf-8', 'replace')
            except OSError:
                continue
            if marker in cmdline:
                try:
                    os.kill(int(path.split('/')[2]), signal.SIGKILL)
                except OSError:
                    pass
        for _round in range(50):
            pids = set()
            for procs in glob.glob('/sys/fs/cgroup/*/%s/**/cgroup.procs' % CGROUP_PARENT, recursive=True) + \
                    glob.glob('/sys/fs/cgroup/%s/**/cgroup.procs' % CGROUP_PARENT, recursive=True):
                try:
                    with open(procs) as handle:
                        pids.update(int(p) for p in handle.read().split())
                except (OSError, ValueError):
                    continue
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.1)
        log('WARNING: processes left in the %s cgroup' % CGROUP_PARENT)

    def _rm_cgroups(self):
        for top in glob.glob('/sys/fs/cgroup/*/' + CGROUP_PARENT) + glob.glob('/sys/fs/cgroup/' + CGROUP_PARENT):
            for dirpath, _dirs, _files in sorted(os.walk(top, topdown=False), key=lambda e: -len(e[0])):
                try:
                    os.rmdir(dirpath)
                except OSError:
                    pass

    def purge(self):
        self.down()
        data_root = os.path.join(self.cache, DATA_ROOT_NAME)
        if os.path.exists(data_root):
            run(['rm', '-rf', '--one-file-system', data_root])

    def status(self):
        return {
            'state': self.state if os.path.exists(self.state) else None,
            'netns': self._netns_exists(),
            'dockerd_pid': self.dockerd_pid(),
            'hosts': [h['name'] for h in self.hosts],
            'cache': sorted(os.listdir(self.cache)) if os.path.isdir(self.cache) else [],
        }


class Swarm(object):
    """Docker Swarm on the lab hosts: host1 the manager (``--advertise-addr`` its lab address),
    the others workers. The kernel has no IPVS: services are created with ``--endpoint-mode
    dnsrr`` (no VIP, no routing mesh); the hosts' dockerd has DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1
    (no pull attempt per task). All commands run on the manager through ``docker exec``."""

    def __init__(self, lab):
        self.lab = lab
        self.manager = lab.hosts[0]['name'] if lab.hosts else 'host1'

    def docker(self, *args, check=True, host=None):
        return self.lab.exec(host or self.manager, ['docker'] + list(args), check=check).stdout

    def init(self, hosts=None):
        """Form the Swarm (nothing to do when the manager is already in one); return node names."""
        names = hosts or [h['name'] for h in self.lab.hosts]
        ips = dict((h['name'], h['ip']) for h in self.lab.hosts)
        if self.docker('info', '-f', '{{.Swarm.LocalNodeState}}').strip() != 'active':
            self.docker('swarm', 'init', '--advertise-addr', ips[self.manager])
        token = self.docker('swarm', 'join-token', '-q', 'worker').strip()
        for name in names:
            if name == self.manager:
                continue
            if self.docker('info', '-f', '{{.Swarm.LocalNodeState}}', host=name).strip() != 'active':
                self.docker('swarm', 'join', '--token', token, '--advertise-addr', ips[name],
                            '%s:2377' % ips[self.manager], host=name)
        return self.nodes()

    def leave(self):
        """Every host leaves (workers first); safe when there is no Swarm."""
        for host in reversed(self.lab.hosts):
            self.lab.exec(host['name'], ['docker', 'swarm', 'leave', '--force'], check=False)

    def nodes(self):
        """{hostname: {'id', 'status', 'availability'}} as the manager sees them."""
        out = self.docker('node', 'ls', '--format', '{{.Hostname}} {{.ID}} {{.Status}} {{.Availability}}')
        return dict((f[0], {'id': f[1], 'status': f[2], 'availability': f[3]})
                    for f in (line.split() for line in out.splitlines()) if len(f) == 4)

    def availability(self, node, value):
        """``docker node update --availability`` (active, pause, drain)."""
        self.docker('node', 'update', '--availability', value, node)

    def create_service(self, name, command, mounts=(), replicas=1, args=()):
        """``docker service create --detach`` of lab/busybox with dnsrr and a 2 s stop grace;
        ``mounts`` are ``--mount`` values; ``args`` more options. Returns the service id."""
        argv = ['service', 'create', '--detach', '--name', name, '--replicas', str(replicas),
                '--no-resolve-image', '--endpoint-mode', 'dnsrr', '--stop-grace-period', '2s']
        for mount in mounts:
            argv += ['--mount', mount]
        argv += list(args) + ['lab/busybox:latest', 'sh', '-c', command]
        return self.docker(*argv).strip()

    def remove_service(self, name):
        self.docker('service', 'rm', name, check=False)

    def tasks(self, service):
        """[{'id', 'node', 'desired', 'state', 'error'}] newest first."""
        out = self.docker('service', 'ps', '--no-trunc', '--format',
                          '{{.ID}}|{{.Node}}|{{.DesiredState}}|{{.CurrentState}}|{{.Error}}', service, check=False)
        tasks = []
        for line in out.splitlines():
            fields = line.split('|')
            if len(fields) == 5:
                tasks.append({'id': fields[0], 'node': fields[1], 'desired': fields[2],
                              'state': fields[3].split(' ')[0], 'error': fields[4]})
        return tasks

    def running_on(self, service):
        """Node of the service's running task (desired and current state Running), else None."""
        for task in self.tasks(service):
            if task['desired'] == 'Running' and task['state'] == 'Running':
                return task['node']
        return None

    def wait_running(self, service, not_on=None, timeout=120):
        """Wait for a running task (on another node than ``not_on``); return its node."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            node = self.running_on(service)
            if node and node != not_on:
                return node
            time.sleep(0.1)
        raise RuntimeError('service %s: no running task%s after %d s: %s'
                           % (service, ' off %s' % not_on if not_on else '', timeout, self.tasks(service)[:6]))

    def container_of(self, service, node):
        """Id of the service's running container on ``node``."""
        return self.lab.exec(node, ['docker', 'ps', '-q', '--filter', 'label=com.docker.swarm.service.name=' + service,
                                    '--filter', 'status=running']).stdout.split()[0]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    sub = parser.add_subparsers(dest='cmd')
    sub.add_parser('build').add_argument('--force', action='store_true')
    sub.add_parser('up').add_argument('n', nargs='?', type=int, default=3)
    sub.add_parser('inventory').add_argument('file', nargs='?')
    for name in ('down', 'purge', 'status', 'swarm'):
        sub.add_parser(name)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error('run as root (netns, dockerd, loop devices)')
    lab = Lab()
    if args.cmd == 'build':
        key, took = build(force=args.force)
        print('%s %s (%.0f s)' % (key, image_tar(key), took))
    elif args.cmd == 'up':
        lab.up(args.n)
        print(os.path.join(lab.state, 'inventory.yml'))
    elif args.cmd == 'inventory':
        print(lab.inventory(args.file))
    elif args.cmd == 'down':
        lab.down()
    elif args.cmd == 'purge':
        lab.purge()
    elif args.cmd == 'swarm':
        print(json.dumps(lab.swarm().init(), indent=1))
    elif args.cmd == 'status':
        print(json.dumps(lab.status(), indent=1))
    else:
        parser.print_help()
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
