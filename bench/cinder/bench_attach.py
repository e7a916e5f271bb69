# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: N Cinder volumes created and attached to the Docker host's server.

Anchor: a playbook looping openstack.cloud.volume then openstack.cloud.server_volume (from the
``ansible`` package). Ours: persistent_volumes.docker.cinder_volume + cinder_attachment with a
``volumes`` list (creates in parallel, waits in one batch). Same test cloud
(tests/harness/openstack, started if needed and then stopped), same ansible-playbook from a
separate bench venv (.state/openstack/bench-venv: ansible 12.x + openstacksdk 4.10.0), one run each.

    python3 bench/cinder/bench_attach.py [--count 10] [--keep-cloud]

Prints both wall times and the ratio ours/anchor (target <= 0.35).
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--count', type=int, default=10)
    parser.add_argument('--keep-cloud', action='store_true', help='leave a cloud this script started running')
    args = parser.parse_args()

    py = ensure_bench_venv()
    started = ensure_cloud()
    conn = connect()
    workdir = tempfile.mkdtemp(prefix='pv-bench-cinder-')
    coll = os.path.join(workdir, 'collections', 'ansible_collections', 'persistent_volumes')
    os.makedirs(coll)
    os.symlink(REPO, os.path.join(coll, 'docker'))
    env = dict(os.environ, OS_CLIENT_CONFIG_FILE=CLOUDS_YAML,
               ANSIBLE_COLLECTIONS_PATH=os.path.join(workdir, 'collections'),
               ANSIBLE_PYTHON_INTERPRETER=py, ANSIBLE_LOCALHOST_WARNING='False',
               ANSIBLE_INVENTORY_UNPARSED_WARNING='False', ANSIBLE_DEPRECATION_WARNINGS='False',
               ANSIBLE_LOCAL_TEMP=os.path.join(workdir, 'tmp'), ANSIBLE_REMOTE_TEMP=os.path.join(workdir, 'rtmp'))
    tag = uuid.uuid4().hex[:6]
    anchor_names = ['bench-%s-a%02d' % (tag, i) for i in range(args.count)]
    our_names = ['bench-%s-o%02d' % (tag, i) for i in range(args.count)]
    anchor_play = playbook([
        {'name': 'volumes',
         'openstack.cloud.volume': {'cloud': 'pvtest', 'name': '{{ item }}', 'size': 1, 'wait': True},
         'loop': anchor_names},
        {'name': 'attach',
         'openstack.cloud.server_volume': {'cloud': 'pvtest', 'server': SERVER, 'volume': '{{ item }}', 'wait': True},
         'loop': anchor_names},
    ])
    ours_play = playbook([
        {'name': 'volumes', 'persistent_volumes.docker.cinder_volume': {
            'cloud': 'pvtest', 'size': '1', 'volumes': [{'name': n} for n in our_names]}},
        {'name': 'attach', 'persistent_volumes.docker.cinder_attachment': {
            'cloud': 'pvtest', 'server': SERVER, 'volumes': our_names}},
    ])
    try:
        wipe(conn, 'bench-')
        log('anchor: openstack.cloud.volume + server_volume, %d volumes' % args.count)
        anchor = run_playbook(py, anchor_play, workdir, env, 'anchor')
        log('anchor: %.1f s' % anchor)
        ours = run_playbook(py, ours_play, workdir, env, 'ours')
        log('ours: %.1f s' % ours)
        for name in anchor_names + our_names:
            vols = [v for v in conn.block_storage.volumes(details=True)
                    if v.name == name and v.status == 'in-use']
            assert len(vols) == 1, '%s not attached' % name
        result = {'count': args.count, 'anchor_s': round(anchor, 2), 'ours_s': round(ours, 2),
                  'ratio': round(ours / anchor, 3), 'target': 0.35}
        print(json.dumps(result))
        print('%d volumes created+attached: anchor %.1f s, ours %.1f s, ratio %.2f (target <= 0.35)'
              % (args.count, anchor, ours, ours / anchor))
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
