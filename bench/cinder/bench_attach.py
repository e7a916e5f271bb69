# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: N Cinder volumes created and attached to the Docker host's server.

Anchor: a playbook looping openstack.cloud.volume then openstack.cloud.server_volume (from the
``ansible`` package). Ours: persistent_volumes.docker.cinder_volume + cinder_attachment with a
``volumes`` list (creates in parallel, waits in one batch). Same test cloud
(tests/harness/openstack, started if needed and then stopped), same ansible-playbook from a
separate bench venv (.state/openstack/bench-venv: ansible 12.x + openstacksdk 4.10.0), one run each.

    python3 bench/cinder/bench_attach.py [--count 10] [--repeat 1] [--keep-cloud] [--only volume,pair]

Prints the wall times and the ratios ours/anchor (target <= 0.35), for ours with the defaults and
for ours pipelined (cinder_volume wait: false, then cinder_attachment waits for each volume and
attaches it as soon as it is available). Every contender starts from a server with none of the
bench's volumes attached.

Issue 9: ``volume`` (backend cinder, a list of N volumes, defaults: the whole chain down to the
Docker volume) against the same ``cinder_volume`` + ``cinder_attachment`` pair (``pair``); both
run by the project's venv (.venv: the Docker SDK ``volume`` needs), with a guest emulator that
publishes each attached volume as a loop device under /dev/disk/by-id (what KVM + udev do) for
both. Target: volume/pair <= 1.10. ``--only volume,pair`` runs just those two.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))
HARNESS = os.path.join(REPO, 'tests', 'harness', 'openstack')
STATE = os.path.join(REPO, '.state', 'openstack')
CLOUDS_YAML = os.path.join(STATE, 'clouds.yaml')
BENCH_VENV = os.path.join(STATE, 'bench-venv')
SERVER = 'pv-docker-host'
PROJECT_PY = os.path.join(REPO, '.venv', 'bin', 'python')
#: contenders run by the project's venv instead of the bench venv
PROJECT_CONTENDERS = ('pair', 'volume')


def log(msg):
    sys.stderr.write('[bench] %s\n' % msg)
    sys.stderr.flush()


def sh(cmd, env=None, check=True):
    proc = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    if check and proc.returncode != 0:
        raise SystemExit('%s failed (rc=%s):\n%s' % (' '.join(cmd), proc.returncode, proc.stdout[-5000:]))
    return proc


def ensure_bench_venv():
    py = os.path.join(BENCH_VENV, 'bin', 'python')
    if not os.path.exists(os.path.join(BENCH_VENV, 'bin', 'ansible-playbook')):
        log('creating the bench venv %s (ansible 12.x + openstacksdk)' % BENCH_VENV)
        sh([sys.executable, '-m', 'venv', BENCH_VENV])
        # openstack.cloud 2.5 (ansible 12) reads openstack.version without importing it; the SDK
        # of OpenStack 2026.1 (4.10.0) still imports it in its __init__, 4.22 does not
        sh([py, '-m', 'pip', 'install', '-q', '--disable-pip-version-check', 'ansible>=12,<13',
            'openstacksdk==4.10.0'])
    return py


def ensure_cloud():
    if sh(['bash', os.path.join(HARNESS, 'status.sh')], check=False).returncode == 0 \
            and os.path.exists(CLOUDS_YAML):
        return False
    sh(['bash', os.path.join(HARNESS, 'install.sh')])
    log('starting the OpenStack test cloud')
    sh(['bash', os.path.join(HARNESS, 'start.sh')])
    return True


def connect():
    import openstack
    os.environ['OS_CLIENT_CONFIG_FILE'] = CLOUDS_YAML
    return openstack.connect(cloud='pvtest')


def wipe(conn, prefix):
    """Detach and delete every volume named prefix* (not timed)."""
    vols = [v for v in conn.block_storage.volumes(details=True)
            if (v.name or '').startswith(prefix) or (v.metadata or {}).get('pv_name', '').startswith(prefix)]
    for vol in vols:
        for att in vol.attachments or []:
            conn.compute.delete_volume_attachment(att['server_id'], vol.id, ignore_missing=True)
    deadline = time.monotonic() + 300
    for vol in vols:
        while conn.block_storage.get_volume(vol.id).status not in ('available', 'error'):
            if time.monotonic() > deadline:
                raise SystemExit('volume %s does not detach' % vol.id)
            time.sleep(0.5)
        server = conn.compute.find_server(SERVER)
        while any(a.volume_id == vol.id for a in conn.compute.volume_attachments(server)):
            time.sleep(0.3)
        conn.block_storage.delete_volume(vol.id, ignore_missing=True)
    for vol in vols:
        conn.block_storage.wait_for_delete(vol, interval=0.5, wait=300)


def playbook(tasks):
    return [{'hosts': 'localhost', 'gather_facts': False, 'tasks': tasks}]


class GuestEmulator(object):
    """Plays KVM + udev for SERVER while it runs: every bench volume attached there gets a loop
    device of its size linked at /dev/disk/by-id/virtio-<id[:20]> (tests/harness/openstack/
    guest_device.py); detached ones are unpublished. Its own connection, polled every 0.2 s."""

    def __init__(self, prefix):
        import importlib.util
        import threading
        spec = importlib.util.spec_from_file_location('pv_guest_device', os.path.join(HARNESS, 'guest_device.py'))
        self.gd = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(self.gd)
        self.prefix = prefix
        self.published = set()
        self.errors = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def _loop(self):
        conn = connect()
        server = conn.compute.find_server(SERVER)
        while not self._stop.is_set():
            try:
                seen = set()
                for vol in conn.block_storage.volumes(details=True):
                    name = (vol.metadata or {}).get('pv_name') or vol.name or ''
                    here = any(a.get('server_id') == server.id for a in vol.attachments or [])
                    busy = vol.status in ('available', 'reserved', 'attaching')
                    if not name.startswith(self.prefix) or not here or busy:
                        continue
                    seen.add(vol.id)
                    if vol.id not in self.published:
                        self.gd.publish(vol.id, int(vol.size) * 1024 ** 3)
                        self.published.add(vol.id)
                for vid in list(self.published - seen):
                    self.gd.unpublish(vid)
                    self.published.discard(vid)
            except Exception as exc:  # pylint: disable=broad-except
                self.errors.append(repr(exc))
            self._stop.wait(0.2)
        conn.close()

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(30)
        for vid in list(self.published):
            self.gd.unpublish(vid)


def run_playbook(py, play, workdir, env, label):
    import yaml
    path = os.path.join(workdir, '%s.yml' % label)
    with open(path, 'w') as handle:
        yaml.safe_dump(play, handle, sort_keys=False)
    cmd = [os.path.join(os.path.dirname(py), 'ansible-playbook'), '-i', 'localhost,', '-c', 'local', path]
    t0 = time.monotonic()
    proc = sh(cmd, env=env, check=False)
    elapsed = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit('%s playbook failed:\n%s' % (label, proc.stdout[-6000:]))
    return elapsed


def volume_task(names, root, state='present'):
    args = {'backend': 'cinder', 'state': state, 'root': root, 'timeout': 120,
            'cinder': {'cloud': 'pvtest', 'server': SERVER},
            'volumes': [{'name': n} for n in names]}
    if state == 'present':
        args['size'] = '1GiB'
    return {'name': 'volume %s' % state, 'persistent_volumes.docker.volume': args}


def contenders(names, root):
    """label -> playbook creating and attaching ``names`` (one list of names per round)."""
    return {
        # issue 9: the pair again (run by the project venv, like volume) ...
        'pair': playbook([
            {'name': 'volumes', 'persistent_volumes.docker.cinder_volume': {
                'cloud': 'pvtest', 'size': '1', 'volumes': [{'name': n} for n in names['pair']]}},
            {'name': 'attach', 'persistent_volumes.docker.cinder_attachment': {
                'cloud': 'pvtest', 'server': SERVER, 'volumes': names['pair']}},
        ]),
        # ... and volume with its defaults: create, attach, device, mkfs, mount, fstab, Docker volume
        'volume': playbook([volume_task(names['volume'], root)]),
        'anchor': playbook([
            {'name': 'volumes',
             'openstack.cloud.volume': {'cloud': 'pvtest', 'name': '{{ item }}', 'size': 1, 'wait': True},
             'loop': names['anchor']},
            {'name': 'attach',
             'openstack.cloud.server_volume': {'cloud': 'pvtest', 'server': SERVER, 'volume': '{{ item }}',
                                               'wait': True},
             'loop': names['anchor']},
        ]),
        # defaults: cinder_volume waits until all are available, then cinder_attachment
        'ours': playbook([
            {'name': 'volumes', 'persistent_volumes.docker.cinder_volume': {
                'cloud': 'pvtest', 'size': '1', 'volumes': [{'name': n} for n in names['ours']]}},
            {'name': 'attach', 'persistent_volumes.docker.cinder_attachment': {
                'cloud': 'pvtest', 'server': SERVER, 'volumes': names['ours']}},
        ]),
        # create without waiting; cinder_attachment waits and attaches each volume as soon as it
        # is available, so creating and attaching overlap
        'ours_pipelined': playbook([
            {'name': 'volumes', 'persistent_volumes.docker.cinder_volume': {
                'cloud': 'pvtest', 'size': '1', 'wait': False,
                'volumes': [{'name': n} for n in names['ours_pipelined']]}},
            {'name': 'attach', 'persistent_volumes.docker.cinder_attachment': {
                'cloud': 'pvtest', 'server': SERVER, 'volumes': names['ours_pipelined']}},
        ]),
    }


def check_attached(conn, label, names):
    for name in names:
        vols = [v for v in conn.block_storage.volumes(details=True)
                if (v.name == name or (v.metadata or {}).get('pv_name') == name) and v.status == 'in-use']
        assert len(vols) == 1, '%s: %s not attached' % (label, name)


def volume_vs_pair(args, times, order):
    """Issue 9: ``volume`` (whole chain) vs the cinder_volume + cinder_attachment pair."""
    if 'volume' not in order or 'pair' not in order:
        return None
    pair, vol = median(times['pair']), median(times['volume'])
    result = {'count': args.count, 'repeat': args.repeat, 'target_volume_vs_pair': 1.10,
              'pair_runs_s': [round(v, 1) for v in times['pair']],
              'volume_runs_s': [round(v, 1) for v in times['volume']],
              'pair_median_s': round(pair, 2), 'volume_median_s': round(vol, 2),
              'ratio_volume_vs_pair': round(vol / pair, 3)}
    print(json.dumps(result))
    print('%d Cinder volumes: volume (create, attach, mkfs, mount, fstab, Docker volume) %.1f s vs '
          'cinder_volume + cinder_attachment %.1f s (median of %d): ratio %.2f; target <= 1.10'
          % (args.count, vol, pair, args.repeat, vol / pair))
    return result


def median(values):
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2.0


def cloud_niceness():
    """The nice value of nova-compute (a cloud started under `nice` slows down both contenders)."""
    run = os.path.join(STATE, 'run', 'nova-compute.pid')
    try:
        with open(run) as handle:
            pid = handle.read().strip()
        with open('/proc/%s/stat' % pid) as handle:
            return int(handle.read().rsplit(')', 1)[1].split()[16])
    except (IOError, OSError, ValueError, IndexError):
        return None


def rpc_reply_poll():
    """How often the cloud's services poll for RPC replies (tests/harness/openstack/configs.sh)."""
    try:
        with open(os.path.join(STATE, 'etc', 'rpc-reply-poll')) as handle:
            return float(handle.read().strip())
    except (IOError, OSError, ValueError):
        return 0.5


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--count', type=int, default=10)
    parser.add_argument('--repeat', type=int, default=1, help='rounds; the order of the contenders rotates')
    parser.add_argument('--keep-cloud', action='store_true', help='leave a cloud this script started running')
    parser.add_argument('--only', default='anchor,ours,ours_pipelined,pair,volume',
                        help='comma-separated contenders (default: all); with --only, volumes left by earlier '
                             'runs of other tags are not swept')
    args = parser.parse_args()

    known = ['anchor', 'ours', 'ours_pipelined', 'pair', 'volume']
    order = [label for label in known if label in args.only.split(',')]
    # the bench venv (ansible 12 + openstack.cloud) only for the contenders that run with it
    py = ensure_bench_venv() if [c for c in order if c not in PROJECT_CONTENDERS] else PROJECT_PY
    started = ensure_cloud()
    conn = connect()
    workdir = tempfile.mkdtemp(prefix='pv-bench-cinder-')
    coll = os.path.join(workdir, 'collections', 'ansible_collections', 'persistent_volumes')
    os.makedirs(coll)
    os.symlink(REPO, os.path.join(coll, 'docker'))
    pv_root = os.path.join(workdir, 'pv-root')
    env = dict(os.environ, OS_CLIENT_CONFIG_FILE=CLOUDS_YAML,
               ANSIBLE_COLLECTIONS_PATH=os.path.join(workdir, 'collections'),
               ANSIBLE_PYTHON_INTERPRETER=py, ANSIBLE_LOCALHOST_WARNING='False',
               ANSIBLE_INVENTORY_UNPARSED_WARNING='False', ANSIBLE_DEPRECATION_WARNINGS='False',
               ANSIBLE_LOCAL_TEMP=os.path.join(workdir, 'tmp'), ANSIBLE_REMOTE_TEMP=os.path.join(workdir, 'rtmp'))
    tag = uuid.uuid4().hex[:6]
    times = dict((label, []) for label in order)
    nice = cloud_niceness()
    if nice:
        log('warning: the cloud runs at nice %s (started under nice): its services yield to other work' % nice)
    try:
        if args.only == parser.get_default('only'):
            wipe(conn, 'bench-')
        for rnd in range(args.repeat):
            names = dict((label, ['bench-%s-%s%d-%02d' % (tag, label[0] + label[-1], rnd, i)
                                  for i in range(args.count)]) for label in order)
            plays = contenders(dict((k, names.get(k, [])) for k in known), pv_root)
            for label in order[rnd % len(order):] + order[:rnd % len(order)]:
                # every contender starts from a server with none of the bench's volumes attached
                # (detaching and deleting the previous contender's volumes is not timed)
                wipe(conn, 'bench-%s' % tag)
                log('round %d: %s, %d volumes' % (rnd + 1, label, args.count))
                if label in PROJECT_CONTENDERS:
                    penv = dict(env, ANSIBLE_PYTHON_INTERPRETER=PROJECT_PY)
                    with GuestEmulator('bench-%s' % tag) as guest:
                        try:
                            elapsed = run_playbook(PROJECT_PY, plays[label], workdir, penv, label)
                            check_attached(conn, label, names[label])
                        finally:
                            if label == 'volume':       # not timed: unmount, fstab, Docker volumes, delete
                                run_playbook(PROJECT_PY, playbook([volume_task(names[label], pv_root, 'absent')]),
                                             workdir, penv, 'volume-absent')
                    if guest.errors:
                        log('guest emulator errors: %s' % '; '.join(guest.errors[:3]))
                else:
                    elapsed = run_playbook(py, plays[label], workdir, env, label)
                    check_attached(conn, label, names[label])
                log('round %d: %s %.1f s' % (rnd + 1, label, elapsed))
                times[label].append(elapsed)
        result = volume_vs_pair(args, times, order)
        if 'anchor' not in order:
            return
        anchor = median(times['anchor'])
        result = {'count': args.count, 'repeat': args.repeat, 'target': 0.35, 'cloud_nice': nice,
                  'cloud_rpc_reply_poll_s': rpc_reply_poll(),
                  'runs_s': dict((k, [round(v, 1) for v in vals]) for k, vals in times.items())}
        for label in order:
            result['%s_median_s' % label] = round(median(times[label]), 2)
        for label in order[1:]:
            result['ratio_%s' % label] = round(median(times[label]) / anchor, 3)
        print(json.dumps(result))
        print('%d volumes created+attached (median of %d, cloud RPC reply poll %s s): anchor %.1f s, '
              'ours %.1f s (ratio %.2f), ours pipelined %.1f s (ratio %.2f); target <= 0.35'
              % (args.count, args.repeat, result['cloud_rpc_reply_poll_s'], anchor, median(times['ours']),
                 result['ratio_ours'], median(times['ours_pipelined']), result['ratio_ours_pipelined']))
    finally:
        try:
            wipe(conn, 'bench-%s' % tag)
        finally:
            conn.close()
            shutil.rmtree(workdir, ignore_errors=True)
            if started and not args.keep_cloud:
                sh(['bash', os.path.join(HARNESS, 'stop.sh')], check=False)


if __name__ == '__main__':
    main()
