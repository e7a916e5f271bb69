# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/site.yml over SSH with become on the lab's Docker hosts, loop backend, role DEFAULTS.

The lab hosts are offline (their network has no route out) and have what the README says a
managed host needs, without python3-apt: the defaults must pass there, in check mode too.
Every host gets the SAME volume names: each must see, use and remove only its own loop devices.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import os
import re
import signal
import subprocess

import pytest

# from tests/harness/lab/lab.py (on the import path: tests/pytest.ini)
import lab as pv_lab  # pylint: disable=import-error

APT_TASK = 'Install the missing host packages with apt'
WOULD_INSTALL = 'Report the host packages a real run would install (check mode)'
CALL = 'Manage the persistent volumes in one call'     # also checks the host packages (check_packages)
# the follow-up include, skipped when nothing is missing
INSTALL = 'Install the missing host packages (Debian family only), or take the delegated cloud path'


def per_host(res, key):
    return dict((host, stats.get(key, 0)) for host, stats in res.stats.items())


def offline_and_without_python3_apt(fleet, host):
    """The lab network has no route out: no name resolution, no connection to a public mirror address."""
    probe = fleet.sh(host, """python3 - <<'EOF'
import socket
for what, call in (('dns', lambda: socket.getaddrinfo('deb.debian.org', 80)),
                   ('tcp', lambda: socket.create_connection(('151.101.2.132', 80), 3))):
    try:
        call()
        print(what, 'reachable')
    except OSError as exc:
        print(what, 'unreachable', exc)
EOF""")
    assert 'dns unreachable' in probe and 'tcp unreachable' in probe, probe
    assert fleet.sh(host, "dpkg-query -W -f='${db:Status-Abbrev}' python3-apt 2>/dev/null || true")[:2] != 'ii'


def read_back(fleet, host, volume):
    return fleet.docker(host, ['run', '--rm', '--network', 'none', '-v', volume + ':/data',
                               'lab/busybox:latest', 'cat', '/data/who']).strip()


@pytest.fixture
def names(fleet, uid):
    created = []
    yield created
    fleet.remove_volumes(created)


def test_site_yml_loop_fleet_defaults_offline_check_rerun_same_names(fleet, uid, names):
    hosts = fleet.names
    assert len(hosts) >= 3
    for host in hosts:
        offline_and_without_python3_apt(fleet, host)
    names.extend([uid + '-a', uid + '-b'])
    vols = [{'name': names[0], 'size': '256MiB'}, {'name': names[1], 'size': '320MiB', 'fstype': 'xfs'}]
    groupvars = {'pv_volumes': vols}          # role defaults otherwise (pv_install_dependencies: true)
    before = dict((h, fleet.snapshot(h)) for h in hosts)

    # --check on fresh hosts: plans the volumes, installs and changes nothing anywhere
    res = fleet.site(groupvars, check=True).assert_ok()
    assert all(per_host(res, 'changed')[h] == 1 for h in hosts), res.summary()
    assert res.task(INSTALL).skipped
    for host in hosts:
        planned = [v['actions'] for v in res.result(CALL, host)['volumes']]
        assert planned == [['create', 'attach', 'mkfs', 'mount', 'fstab', 'docker_volume']] * 2, planned
        assert fleet.snapshot(host) == before[host], host

    # the real run, over SSH with become, every host at once (forks 5)
    res = fleet.site(groupvars).assert_ok()
    assert sorted(res.stats) == sorted(hosts)
    assert all(per_host(res, 'changed')[h] >= 1 for h in hosts), res.summary()
    assert res.task(INSTALL).skipped, 'defaults installed packages although none was missing'
    loops = {}
    for host in hosts:
        own = fleet.lab.own_loops(host)
        assert sorted(own.values()) == sorted('/var/lib/persistent-volumes/images/%s.img' % n for n in names), own
        loops[host] = own
        fstab = fleet.sh(host, 'cat /etc/fstab')
        for name in names:
            assert re.search(r'^/var/lib/persistent-volumes/images/%s\.img /var/lib/persistent-volumes/mounts/%s '
                             % (name, name), fstab, re.M), fstab
            src = fleet.sh(host, 'findmnt -n -o SOURCE /var/lib/persistent-volumes/mounts/%s' % name).strip()
            assert src in own, (host, name, src, own)
        assert set(names) <= set(fleet.docker(host, ['volume', 'ls', '-q']).split())
    every = [dev for own in loops.values() for dev in own]
    assert len(every) == len(set(every)) == 2 * len(hosts), loops     # nobody adopted another host's device

    # data survives its container: one container writes, a new one reads it back, on every host
    for host in hosts:
        for name in names:
            fleet.docker(host, ['run', '--rm', '--network', 'none', '-v', name + ':/data', 'lab/busybox:latest',
                                'sh', '-c', 'echo %s-%s > /data/who && sync' % (host, name)])
    for host in hosts:
        for name in names:
            assert read_back(fleet, host, name) == '%s-%s' % (host, name)

    # re-run: changed=0 on every host
    res = fleet.site(groupvars).assert_ok()
    assert per_host(res, 'changed') == dict((h, 0) for h in hosts), res.summary()

    # --check on the converged fleet: nothing to do, nothing touched anywhere
    converged = dict((h, fleet.snapshot(h)) for h in hosts)
    res = fleet.site(groupvars, check=True).assert_ok()
    assert per_host(res, 'changed') == dict((h, 0) for h in hosts), res.summary()
    for host in hosts:
        assert fleet.snapshot(host) == converged[host], host

    # the same names removed on the last host only: it detaches its own devices, nobody else's
    last, others = hosts[-1], hosts[:-1]
    gone = {last: {'pv_volumes': [dict(v, state='absent') for v in vols]}}
    res = fleet.site(groupvars, hostvars=gone).assert_ok()
    assert per_host(res, 'changed') == dict([(h, 0) for h in others] + [(last, 1)]), res.summary()
    assert fleet.lab.own_loops(last) == {}
    assert fleet.sh(last, 'ls /var/lib/persistent-volumes/images').split() == []
    assert 'persistent-volumes' not in fleet.sh(last, 'cat /etc/fstab')
    for host in others:
        assert fleet.lab.own_loops(host) == loops[host], host
        for name in names:
            assert read_back(fleet, host, name) == '%s-%s' % (host, name)


def test_missing_package_offline_and_unsupported_family(fleet, lab, uid, names):
    """Only what is missing is installed: offline that fails clearly in the install task (and
    --check reports it); outside the Debian family the role refuses to install."""
    host = fleet.names[-1]
    names.append(uid + '-m')
    groupvars = {'pv_volumes': [{'name': names[0], 'size': '64MiB'}]}
    try:
        fleet.sh(host, 'dpkg -r xfsprogs >/dev/null 2>&1')
        before = fleet.snapshot(host)

        res = fleet.site(groupvars, check=True, limit=host).assert_ok()
        assert res.result(WOULD_INSTALL, host)['msg'] == 'would install with apt: xfsprogs'
        found = res.result(CALL, host)      # the one call checked the packages first and changed nothing
        assert found['missing_packages'] == ['xfsprogs'] and found['os_family'][0] == 'debian', found
        assert not found.get('volumes') and not found['changed'], found
        assert fleet.snapshot(host) == before

        res = fleet.site(groupvars, limit=host).assert_failed()
        assert res.failed_tasks == ['persistent_volumes.docker.volumes : ' + APT_TASK], res.summary()
        assert fleet.snapshot(host) == before

        # a host outside the Debian family: a clear refusal before anything is changed
        fleet.sh(host, 'printf \'ID=rocky\\nID_LIKE="rhel centos fedora"\\nPRETTY_NAME="Rocky Linux 9"\\n\''
                       ' > /etc/os-release')
        res = fleet.site(groupvars, limit=host).assert_failed()
        msg = res.result('Refuse to install on a host outside the Debian family', host)['msg']
        assert 'Debian and Ubuntu only' in msg and 'rocky' in msg and 'pv_install_dependencies: false' in msg
        assert fleet.snapshot(host) == before

        # told not to install, it does not check the packages at all and the chain runs (ext4 needs no xfsprogs)
        res = fleet.site(dict(groupvars, pv_install_dependencies=False), limit=host).assert_changed()
        assert 'missing_packages' not in res.result(CALL, host) and res.task(INSTALL).skipped
    finally:
        fleet.remove_volumes(list(names))
        del names[:]
        lab.reset_host(host)


def test_lab_down_is_complete_after_a_killed_run(lab, fleet, uid):
    """Kill the lab dockerd with hosts running and a loop device mounted in one: down removes
    every trace (processes, loop devices by identity, netns, veth, cgroups); then up again."""
    host = fleet.names[0]
    fleet.sh(host, 'truncate -s 32M /var/tmp/%s.img && dev=$(losetup -f --show /var/tmp/%s.img) && '
                   'mkfs.ext4 -q $dev && mkdir -p /mnt/%s && mount $dev /mnt/%s' % ((uid,) * 4))
    (dev,) = lab.own_loops(host)
    n = len(lab.hosts)
    os.kill(lab.dockerd_pid(), signal.SIGKILL)
    try:
        lab.down()
        assert not os.path.exists('/sys/block/%s/loop' % os.path.basename(dev)), 'loop device left attached'
        assert not os.path.exists('/run/netns/' + pv_lab.NETNS)
        assert subprocess.run(['ip', 'link', 'show', 'dev', pv_lab.VETH_HOST], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, check=False).returncode != 0, 'veth left'
        assert not glob.glob('/sys/fs/cgroup/*/%s' % pv_lab.CGROUP_PARENT)
        marker = os.path.join(lab.state, 'exec') + '/'
        for path in glob.glob('/proc/[0-9]*/cmdline'):
            try:
                with open(path, 'rb') as handle:
                    assert marker.encode() not in handle.read(), 'lab process left: %s' % path
            except OSError:
                pass
        assert not os.path.exists(lab.state)
        rules = subprocess.run(['iptables-save'], stdout=subprocess.PIPE, universal_newlines=True, check=False).stdout
        assert pv_lab.SUBNET.rsplit('.', 1)[0] + '.' not in rules and pv_lab.BRIDGE not in rules
    finally:
        lab.up(n)
