# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures of the fleet tests: the multi-host lab (tests/harness/lab) and Ansible over SSH.

Rule: the lab is brought up once per session and ALWAYS torn down (also when a test or the
start fails); every test removes its own volumes from every host afterwards.

* ``lab`` (session, tests/integration/lab_fixtures.py) -> ``Lab`` of tests/harness/lab/lab.py:
  ``.hosts``, ``.exec(host, argv)``, ``.own_loops(host)``, ``.reset_host(host)``, ``.inventory(...)``.
* ``fleet`` -> :class:`Fleet`: ``site(groupvars, hostvars=None, check=False, limit=None)`` runs
  ``playbooks/site.yml`` against the lab over SSH (user ``ansible``, become from site.yml, forks 5),
  ``play(tasks, ...)`` any tasks, ``snapshot(host)`` what a run may change on a host, ``docker(host, argv)``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

import pv_integration_helpers as helpers  # pylint: disable=import-error

SITE_YML = os.path.join(helpers.REPO_ROOT, 'playbooks', 'site.yml')
PV_ROOT = '/var/lib/persistent-volumes'



def pytest_collection_modifyitems(config, items):
    here = os.path.dirname(os.path.abspath(__file__)) + os.sep
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.fleet)


class Fleet(object):
    """ansible-playbook over SSH against the lab hosts, and host-side checks through docker exec."""

    def __init__(self, lab, runner, workdir):
        self.lab = lab
        self.runner = runner
        self.workdir = workdir
        self._n = 0

    @property
    def names(self):
        return [h['name'] for h in self.lab.hosts]

    def inventory(self, groupvars=None, hostvars=None):
        self._n += 1
        return self.lab.inventory(os.path.join(self.workdir, 'inventory-%02d.yml' % self._n),
                                  hostvars=hostvars, groupvars=groupvars)

    def site(self, groupvars=None, hostvars=None, check=False, diff=False, limit=None):
        return self.runner.run_playbook(SITE_YML, inventory=self.inventory(groupvars, hostvars),
                                        check=check, diff=diff, limit=limit)

    def play(self, tasks, groupvars=None, hostvars=None, check=False, become=True):
        play = {'name': 'fleet test', 'hosts': 'docker_hosts', 'gather_facts': False, 'become': become,
                'tasks': tasks}
        return self.runner.run([play], inventory=self.inventory(groupvars, hostvars), check=check)

    def sh(self, host, script, check=True):
        return self.lab.exec(host, ['sh', '-c', script], check=check).stdout

    def docker(self, host, argv, check=True):
        return self.lab.exec(host, ['docker'] + list(argv), check=check).stdout

    def snapshot(self, host, root=PV_ROOT):
        """What a run may change on a host (one docker exec): fstab, mounts under root, Docker
        volumes, the files under root, this host's loop devices."""
        out = self.sh(host, "cat /etc/fstab; echo '@@'; findmnt -rn -o TARGET,SOURCE,FSTYPE | grep '^%s' ; "
                            "echo '@@'; docker volume ls -q; echo '@@'; "
                            "find %s -printf '%%p %%s %%m\\n' 2>/dev/null | sort; echo '@@'; "
                            "/opt/pvlab/lab-loop-cleanup --list" % (root, root))
        return dict(zip(('fstab', 'mounts', 'docker_volumes', 'files', 'loops'), out.split('@@\n')))

    def remove_volumes(self, names):
        """state=absent (force) for ``names`` on every host; what the tests created goes."""
        if not names:
            return
        vols = [{'name': n, 'state': 'absent', 'force': True} for n in names]
        self.site({'pv_volumes': vols, 'pv_install_dependencies': False}).assert_ok()


@pytest.fixture
def fleet(lab, tmp_path, collections_root):
    runner = helpers.AnsibleRunner(str(tmp_path / 'ansible'), collections_root, env={
        # remote hosts: their own python and temp dir (not the controller's)
        'ANSIBLE_PYTHON_INTERPRETER': '/usr/bin/python3',
        'ANSIBLE_REMOTE_TEMP': '~/.ansible/tmp',
    })
    return Fleet(lab, runner, str(tmp_path))
