# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Swarm benchmark of issue 11 (a benchmark, not a test: it prints numbers and ratios).

Rule: the contenders run side by side in one run on the SAME Swarm of lab hosts, one service at a
time (a fresh 1-replica service per repetition, pinned to the two workers), in alternating order:

* ``cinder``  a service with ``--mount type=volume,volume-driver=pv-cinder``: the collection's
              plugin (the volume_plugin role on every node, as tests/integration/swarm sets it up:
              the role's DEFAULTS: fencing policy ``shutoff``, ``pv_plugin_unmount_grace: auto``,
              ``pv_plugin_handover_wait: 20``);
* ``noop``    the same service with a volume of bench/swarm/noop_plugin.py (a legacy plugin that
              answers every call at once, scope global): the Swarm floor;
* ``sdk``     the bare openstacksdk detach + attach of one Cinder volume from one worker's Nova
              server to the other's, from this machine (each step waited for with 0.1 s polls).

Measured:

* move after a drain: ``docker node update --availability drain <node>`` -> the new task Running
  (its container started: the volume is mounted). Goal of issue 11: cinder within 2 s of
  noop + sdk;
* failover after a node kill: the node's lab host container killed, its Nova server marked
  SHUTOFF right after (what a hypervisor reports; Nova stop + wait, as the lab's guest_died) ->
  the new task Running. The fencing wait (kill -> server SHUTOFF in Nova) is reported apart,
  and the Mounts the plugin refused meanwhile are counted. The killed node comes back (a reboot,
  rejoin) between repetitions, untimed.

The Swarm's dispatcher heartbeat is 2 s (as in the node-death test): Swarm notices a dead node
after ~3 missed heartbeats, for both contenders alike.

Needs root, the project venv, the OpenStack test cloud running (tests/harness/openstack) and the
multi-host lab's image (tests/harness/lab); set PV_LAB_INSTANCE to use a lab of its own. The lab
is brought up at the start and always torn down at the end (also on failure or Ctrl-C).

    sudo PV_LAB_INSTANCE=7 .venv/bin/python bench/swarm/bench_swarm.py [--repeat 3] [--json FILE]
"""

from __future__ import absolute_import, division, print_function

import argparse
import importlib.util
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
STATE = os.path.join(REPO, '.state', 'bench', 'swarm')
TESTS = os.path.join(REPO, 'tests')
for sub in ('integration', 'integration/cinder', 'integration/plugin', 'integration/swarm', 'integration/vsphere',
            'harness/lab', 'harness/openstack', 'harness/vcsim'):
    sys.path.insert(0, os.path.join(TESTS, sub))

import lab as lab_mod  # noqa: E402 pylint: disable=import-error,wrong-import-position
import lab_hypervisor  # noqa: E402 pylint: disable=import-error,wrong-import-position
import offline  # noqa: E402 pylint: disable=import-error,wrong-import-position
import cinder_fixtures  # noqa: E402 pylint: disable=import-error,wrong-import-position
import pv_integration_helpers as helpers  # noqa: E402 pylint: disable=import-error,wrong-import-position
import swarm_scenario as scenario  # noqa: E402 pylint: disable=import-error,wrong-import-position

CINDER = 'pv-cinder'
LOOP = 'pv-loop'
NOOP = 'pv-noop'
IMAGE = 'pv-test-image'
FLAVOR = 'pv.tiny'
HEARTBEAT = '2s'
GOAL = 2.0


def log(msg):
    sys.stderr.write('bench-swarm: %s\n' % msg)
    sys.stderr.flush()


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def collections_root():
    root = os.path.join(STATE, 'collections')
    link = os.path.join(root, 'ansible_collections', 'persistent_volumes', 'docker')
    if not os.path.islink(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(REPO, link)
    return root


class SwarmBench(object):
    def __init__(self, args):
        self.args = args
        self.uid = 'pvb%s' % uuid.uuid4().hex[:5]
        self.lab = lab_mod.Lab()
        self.conn = None
        self.servers = {}
        self.hv = None
        self.swarm = None
        self.results = {}
        self.notes = []
        self.sdk_volume = None

    def record(self, key, seconds):
        self.results.setdefault(key, []).append(seconds)

    # ------------------------------------------------------------------ set-up
    def setup(self):
        status = subprocess.run(['bash', os.path.join(TESTS, 'harness', 'openstack', 'status.sh')],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        if status.returncode != 0 or not os.path.exists(cinder_fixtures.CLOUDS_YAML):
            raise SystemExit('the OpenStack test cloud is not running (tests/harness/openstack/start.sh)')
        self.conn = cinder_fixtures.connect()
        t0 = time.monotonic()
        self.lab.up(3)
        hosts = [h['name'] for h in self.lab.hosts]
        self.manager, self.workers = hosts[0], hosts[1:]
        image = self.conn.image.find_image(IMAGE, ignore_missing=False)
        flavor = self.conn.compute.find_flavor(FLAVOR, ignore_missing=False)
        for h in self.lab.hosts:
            for old in self.conn.compute.servers(name=h['container']):
                if old.name == h['container']:
                    self.conn.compute.delete_server(old)
                    self.conn.compute.wait_for_delete(old, interval=1, wait=120)
            self.servers[h['name']] = self.conn.compute.create_server(
                name=h['container'], image_id=image.id, flavor_id=flavor.id, networks='none')
        for host in list(self.servers):
            self.servers[host] = self.conn.compute.wait_for_server(self.servers[host], status='ACTIVE', wait=240,
                                                                   interval=1)
        self.hv = lab_hypervisor.LabHypervisor(
            self.lab, dict((h, s.id) for h, s in self.servers.items()), tempfile.mkdtemp(prefix='san-', dir=STATE),
            clouds_yaml=cinder_fixtures.CLOUDS_YAML).start()
        swarm_conftest = _load('pv_swarm_conftest', os.path.join(TESTS, 'integration', 'swarm', 'conftest.py'))
        self.lab.expose_machine_ports(swarm_conftest.cloud_ports(self.conn, self.conn.config.config['auth']['auth_url']))
        folder = offline.bundle(self.lab, hosts[0], debs=offline.VENV_DEBS, wheels=['openstacksdk>=1.0'])
        for host in hosts:
            offline.provision(self.lab, host, folder)
        workdir = tempfile.mkdtemp(prefix='ansible-', dir=STATE)
        runner = helpers.AnsibleRunner(workdir, collections_root(), env={
            'ANSIBLE_PYTHON_INTERPRETER': '/usr/bin/python3', 'ANSIBLE_REMOTE_TEMP': '~/.ansible/tmp'})
        inventory = self.lab.inventory(os.path.join(workdir, 'inventory.yml'))
        # the role's defaults (handover_wait included: the tests shorten it, the bench does not)
        playbook = swarm_conftest.plugin_playbook(cinder_fixtures.CLOUDS_YAML, offline.pip_args(), handover_wait=None)
        runner.run(playbook, inventory=inventory, args=['--forks', '3']).assert_ok()
        for host in hosts:
            scenario.install_boot_hook(self.lab, host)
        for host in hosts:
            self.start_noop(host)
        self.guests = scenario.Guests(self.lab, self.hv, None, self.conn)
        self.swarm = self.lab.swarm()
        self.swarm.init()
        self.swarm.docker('swarm', 'update', '--dispatcher-heartbeat', HEARTBEAT)
        log('set-up (lab, servers, plugin role on 3 hosts, Swarm) in %.0f s' % (time.monotonic() - t0))

    def mark_shutoff(self, host):
        """What the hypervisor reports for a dead guest: its server SHUTOFF (Nova stop)."""
        server = self.conn.compute.get_server(self.servers[host].id)
        if server.status != 'SHUTOFF':
            self.conn.compute.stop_server(server)
            self.conn.compute.wait_for_server(server, status='SHUTOFF', wait=120, interval=0.3)

    def start_noop(self, host):
        container = lab_mod.CONTAINER_PREFIX + host
        self.lab.docker('cp', os.path.join(HERE, 'noop_plugin.py'), container + ':/usr/local/bin/pv-noop-plugin')
        # at boot too, before dockerd (as the role's plugins, see swarm_scenario.install_boot_hook)
        self.lab.exec(host, ['sh', '-c', 'mkdir -p /etc/pvlab/boot.d && printf "%s" "$1" > /etc/pvlab/boot.d/40-noop '
                                         '&& chmod 755 /etc/pvlab/boot.d/40-noop', 'sh',
                             '#!/bin/sh\nsetsid python3 /usr/local/bin/pv-noop-plugin --driver %s '
                             '</dev/null >/dev/null 2>&1 &\n' % NOOP])
        if self.lab.exec(host, ['test', '-S', '/run/docker/plugins/%s.sock' % NOOP], check=False).returncode != 0:
            self.lab.docker('exec', '-d', container, 'python3', '/usr/local/bin/pv-noop-plugin', '--driver', NOOP)
        scenario.wait_for('noop plugin socket in %s' % host, lambda: self.lab.exec(
            host, ['test', '-S', '/run/docker/plugins/%s.sock' % NOOP], check=False).returncode == 0, 20, 0.05)
        self.lab.exec(host, ['docker', 'volume', 'ls', '-q', '--filter', 'driver=' + NOOP])

    def revive(self, host):
        """The killed node back (a reboot): its plugins (ours and the noop one) known to dockerd
        BEFORE it joins (Swarm schedules on the node description sent at join)."""
        self.mark_shutoff(host)
        self.guests.reboot(host)
        self.start_noop(host)
        scenario.rejoin(self.swarm, host)

    # ------------------------------------------------------------------ one service
    def service(self, contender, tag):
        name = '%s-%s-%s' % (self.uid, contender, tag)
        driver = CINDER if contender == 'cinder' else NOOP
        if driver == CINDER:          # made before the service, as a user does (noop: made by the task)
            self.swarm.docker('volume', 'create', '-d', driver, '--opt', 'size=1GiB', name)
        self.swarm.create_service(name, 'exec sleep 100000',
                                  args=['--init', '--restart-delay', '0s', '--constraint', 'node.role==worker'],
                                  mounts=['type=volume,source=%s,target=/data,volume-driver=%s' % (name, driver)])
        node = self.swarm.wait_running(name)
        if driver == CINDER:
            container = self.swarm.container_of(name, node)
            self.lab.exec(node, ['docker', 'exec', container, 'sh', '-c',
                                 'dd if=/dev/urandom of=/data/blk bs=1M count=4 conv=fsync 2>/dev/null'])
        return name, node

    def remove(self, name):
        self.swarm.remove_service(name)
        scenario.wait_for('tasks of %s gone' % name, lambda: not any(
            self.lab.exec(h, ['docker', 'ps', '-aq', '--filter', 'label=com.docker.swarm.service.name=' + name],
                          check=False).stdout.strip() for h in self.workers), 60)
        if name.split('-')[1] == 'cinder':
            # the last node's Unmount releases it (on a Swarm node: at once, in the background);
            # then Docker's records and the volume go
            status = json.loads(self.swarm.docker('volume', 'inspect', '-f', '{{json .Status}}', name))
            scenario.wait_for('volume %s detached' % name, lambda: self.conn.block_storage.get_volume(
                status['backend_id']).status == 'available', 60)
            for h in self.workers + [self.manager]:
                proc = self.lab.exec(h, ['docker', 'volume', 'rm', name], check=False)
                if proc.returncode != 0 and 'no such volume' not in proc.stderr.lower():
                    log('docker volume rm %s on %s: %s' % (name, h, proc.stderr.strip()))

    def plugin_log(self, host):
        return self.lab.exec(host, ['cat', '/var/log/persistent-volumes/%s.log' % CINDER], check=False).stdout

    def calls(self, what, marks, name):
        """Where the time goes: the plugin's log lines of ``name`` since ``marks`` (per host), with
        each call's ms, kept for the report."""
        for host in sorted(marks):
            for line in self.plugin_log(host)[marks[host]:].splitlines():
                if 'name=%s' % name in line and ('ms)' in line or 'taking over' in line) and ' Get ' not in line:
                    self.notes.append('%s %s: %s' % (what, host, line.split(' ', 1)[-1]))

    def drain(self, contender, rep):
        name, node = self.service(contender, 'drain%d' % rep)
        marks = dict((h, len(self.plugin_log(h))) for h in self.workers)
        t0 = time.monotonic()
        self.swarm.availability(node, 'drain')
        self.swarm.wait_running(name, not_on=node)
        self.record(('drain', contender), time.monotonic() - t0)
        self.swarm.availability(node, 'active')
        self.remove(name)
        if contender == 'cinder':
            self.calls('drain %d' % (rep + 1), marks, name)

    def failover(self, contender, rep):
        name, node = self.service(contender, 'kill%d' % rep)
        survivor = [h for h in self.workers if h != node][0]
        mark = len(self.lab.exec(survivor, ['cat', '/var/log/persistent-volumes/%s.log' % CINDER]).stdout)
        t0 = time.monotonic()
        self.guests.kill(node)
        self.mark_shutoff(node)
        fenced = time.monotonic() - t0
        self.swarm.wait_running(name, not_on=node, timeout=180)
        self.record(('failover', contender), time.monotonic() - t0)
        self.record(('fencing_wait', contender), fenced)
        tail = self.lab.exec(survivor, ['cat', '/var/log/persistent-volumes/%s.log' % CINDER]).stdout[mark:]
        self.record(('refused', contender), float(tail.count('Mount of %s refused' % name)))
        if contender == 'cinder':
            self.calls('failover %d' % (rep + 1), {survivor: mark}, name)
        self.revive(node)
        self.remove(name)

    def sdk(self, rep):
        """Bare SDK: detach the bench volume from one worker's server, attach it to the other's."""
        conn = self.conn
        if self.sdk_volume is None:
            self.sdk_volume = conn.block_storage.create_volume(size=1, name=self.uid + '-sdk')
            conn.block_storage.wait_for_status(self.sdk_volume, 'available', interval=0.1, wait=120)
            conn.compute.create_volume_attachment(self.servers[self.workers[0]].id, volume_id=self.sdk_volume.id)
            conn.block_storage.wait_for_status(self.sdk_volume, 'in-use', interval=0.1, wait=120)
        src, dst = (self.workers if rep % 2 == 0 else self.workers[::-1])
        t0 = time.monotonic()
        conn.compute.delete_volume_attachment(self.servers[src].id, self.sdk_volume.id)
        conn.block_storage.wait_for_status(self.sdk_volume, 'available', interval=0.1, wait=120)
        conn.compute.create_volume_attachment(self.servers[dst].id, volume_id=self.sdk_volume.id)
        conn.block_storage.wait_for_status(self.sdk_volume, 'in-use', interval=0.1, wait=120)
        self.record(('sdk', 'detach+attach'), time.monotonic() - t0)

    # ------------------------------------------------------------------ run + report
    def run(self):
        self.setup()
        for rep in range(self.args.repeat):
            order = ('cinder', 'noop') if rep % 2 == 0 else ('noop', 'cinder')
            for contender in order:
                self.drain(contender, rep)
            self.sdk(rep)
            for contender in order:
                self.failover(contender, rep)
            log('repetition %d done: %s' % (rep + 1, json.dumps(self.summary_row(rep))))

    def summary_row(self, rep):
        return dict(('%s/%s' % k, round(v[rep], 2)) for k, v in sorted(self.results.items()) if len(v) > rep)

    def report(self):
        def med(key):
            return statistics.median(self.results[key])

        def mn(key):
            return min(self.results[key])
        rows = [('drain move, cinder', ('drain', 'cinder')), ('drain move, noop (Swarm floor)', ('drain', 'noop')),
                ('SDK detach + attach', ('sdk', 'detach+attach')),
                ('failover after a kill, cinder', ('failover', 'cinder')),
                ('failover after a kill, noop (Swarm floor)', ('failover', 'noop')),
                ('  of which fencing wait (kill -> SHUTOFF), cinder', ('fencing_wait', 'cinder')),
                ('  of which fencing wait (kill -> SHUTOFF), noop', ('fencing_wait', 'noop'))]
        print('\n%-52s %8s %8s  %s' % ('seconds', 'median', 'min', 'all'))
        for label, key in rows:
            if key in self.results:
                print('%-52s %8.2f %8.2f  %s' % (label, med(key), mn(key),
                                                 ' '.join('%.2f' % v for v in self.results[key])))
        print('Mounts refused while the dead server was ACTIVE (cinder, per repetition): %s'
              % ' '.join('%d' % v for v in self.results.get(('refused', 'cinder'), [])))
        floor = med(('drain', 'noop')) + med(('sdk', 'detach+attach'))
        over = med(('drain', 'cinder')) - floor
        print('\ndrain: cinder - (noop + sdk detach+attach) = %.2f s (goal <= %.1f s: %s); cinder / (noop + sdk) = %.2f'
              % (over, GOAL, 'met' if over <= GOAL else 'MISSED', med(('drain', 'cinder')) / floor))
        per = [c - n - s for c, n, s in zip(self.results[('drain', 'cinder')], self.results[('drain', 'noop')],
                                            self.results[('sdk', 'detach+attach')])]
        print('  per repetition: %s' % ' '.join('%.2f' % v for v in per))
        floor_k = med(('failover', 'noop')) + med(('sdk', 'detach+attach'))
        over_k = med(('failover', 'cinder')) - floor_k
        print('failover: cinder - (noop + sdk detach+attach) = %.2f s (goal <= %.1f s: %s); cinder / (noop + sdk) = '
              '%.2f; fencing wait (median) %.2f s, included in both failovers'
              % (over_k, GOAL, 'met' if over_k <= GOAL else 'MISSED', med(('failover', 'cinder')) / floor_k,
                 med(('fencing_wait', 'cinder'))))
        per = [c - n - s for c, n, s in zip(self.results[('failover', 'cinder')], self.results[('failover', 'noop')],
                                            self.results[('sdk', 'detach+attach')])]
        print('  per repetition: %s' % ' '.join('%.2f' % v for v in per))
        print('load average at the end: %s' % ' '.join(open('/proc/loadavg').read().split()[:3]))
        if self.notes:
            print('\nwhere the time goes (the plugin\'s log on the workers, each call with its ms):')
            for note in self.notes:
                print('  ' + note)
        if self.args.json:
            with open(self.args.json, 'w') as handle:
                json.dump({'%s/%s' % k: v for k, v in self.results.items()}, handle, indent=1)

    def cleanup(self):
        errors = []
        try:
            if self.swarm is not None:
                out = self.swarm.docker('service', 'ls', '-q', '--filter', 'name=' + self.uid, check=False)
                for sid in out.split():
                    self.swarm.remove_service(sid)
            for host in list(self.hv.down) if self.hv else []:
                try:
                    self.mark_shutoff(host)
                    self.hv.guest_rebooted(host, self.conn)
                except Exception as exc:  # pylint: disable=broad-except
                    errors.append('revive %s: %r' % (host, exc))
        except Exception as exc:  # pylint: disable=broad-except
            errors.append(repr(exc))
        if self.conn is not None:
            try:
                time.sleep(3)
                for vol in self.conn.block_storage.volumes(details=True):
                    if (vol.name or '').startswith(self.uid) or \
                            (vol.metadata or {}).get('pv_name', '').startswith(self.uid):
                        cinder_fixtures.destroy_volume(self.conn, vol)
            except Exception as exc:  # pylint: disable=broad-except
                errors.append('volumes: %r' % exc)
        if self.hv is not None:
            self.hv.stop()
        for server in self.servers.values():
            try:
                self.conn.compute.delete_server(server)
                self.conn.compute.wait_for_delete(server, interval=1, wait=120)
            except Exception as exc:  # pylint: disable=broad-except
                errors.append('server %s: %r' % (server.name, exc))
        self.lab.down()
        for err in errors:
            log('clean-up: ' + err)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--json', help='write the raw numbers here')
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error('run as root (lab, loop devices)')
    os.makedirs(STATE, exist_ok=True)
    bench = SwarmBench(args)

    def interrupted(_sig, _frame):
        raise KeyboardInterrupt()
    signal.signal(signal.SIGTERM, interrupted)
    try:
        bench.run()
        bench.report()
    finally:
        bench.cleanup()
    return 0


if __name__ == '__main__':
    sys.exit(main())
