# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The role-variable convention that replaces ansible-lint's var-naming[no-role-prefix] (skipped in
.ansible-lint, see CONTRIBUTING.md): every variable a role defines, validates, registers or sets
starts with ``pv_`` (``_pv_`` when internal), and no two roles share a public variable.

Rule: the names are read from the roles' own files, never listed here.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import os

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _load(path):
    with open(path) as f:
        return yaml.safe_load(f)


def _task_variables(tasks):
    """Names registered or set with set_fact (and in blocks) in a task list."""
    names = set()
    for task in tasks or []:
        if not isinstance(task, dict):
            continue
        if task.get('register'):
            names.add(task['register'])
        for key in ('ansible.builtin.set_fact', 'set_fact'):
            if isinstance(task.get(key), dict):
                names.update(k for k in task[key] if k != 'cacheable')
        for key in ('block', 'rescue', 'always'):
            names |= _task_variables(task.get(key))
    return names


def role_variables(role_dir):
    """{'public': names users set or read, 'all': every name the role defines}."""
    public = set()
    for sub in ('defaults', 'vars'):
        for path in glob.glob(os.path.join(role_dir, sub, '*.yml')):
            public.update((_load(path) or {}).keys())
    spec_path = os.path.join(role_dir, 'meta', 'argument_specs.yml')
    if os.path.exists(spec_path):
        for entry in (_load(spec_path) or {}).get('argument_specs', {}).values():
            public.update((entry.get('options') or {}).keys())
    names = set(public)
    for sub in ('tasks', 'handlers'):
        for path in glob.glob(os.path.join(role_dir, sub, '*.yml')):
            names |= _task_variables(_load(path))
    return {'public': set(n for n in public if not n.startswith('_')), 'all': names}


ROLES = sorted(os.path.basename(d) for d in glob.glob(os.path.join(REPO, 'roles', '*')) if os.path.isdir(d))


def test_there_are_roles_with_variables():
    assert ROLES, 'no roles found under roles/'
    for role in ROLES:
        assert role_variables(os.path.join(REPO, 'roles', role))['public'], role


def test_every_role_variable_has_the_collection_prefix():
    bad = {}
    for role in ROLES:
        names = role_variables(os.path.join(REPO, 'roles', role))['all']
        wrong = sorted(n for n in names if not (n.startswith('pv_') or n.startswith('_pv_')))
        if wrong:
            bad[role] = wrong
    assert not bad, 'role variables without the pv_/_pv_ prefix: %r' % bad


def test_no_two_roles_share_a_public_variable():
    seen = {}
    shared = []
    for role in ROLES:
        for name in role_variables(os.path.join(REPO, 'roles', role))['public']:
            if name in seen:
                shared.append((name, seen[name], role))
            seen[name] = role
    assert not shared, 'public variables defined by two roles: %r' % shared


def test_the_checks_see_registered_and_set_facts(tmp_path):
    """The task scan finds register and set_fact names, also inside blocks."""
    role = tmp_path / 'r'
    (role / 'tasks').mkdir(parents=True)
    (role / 'defaults').mkdir()
    (role / 'defaults' / 'main.yml').write_text('pv_a: 1\n_pv_b: 2\n')
    (role / 'tasks' / 'main.yml').write_text(
        '- name: x\n  ansible.builtin.command: "true"\n  register: pv_c\n'
        '- name: y\n  block:\n    - name: z\n      ansible.builtin.set_fact:\n        bad_name: 1\n')
    found = role_variables(str(role))
    assert found['public'] == {'pv_a'}
    assert found['all'] == {'pv_a', '_pv_b', 'pv_c', 'bad_name'}
