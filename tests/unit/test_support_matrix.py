# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The support matrix the README claims stays consistent with the code: every plugin file parses
with the grammar of the oldest claimed managed-host Python (tests/config.yml), and the roles'
min_ansible_version is the minimum of meta/runtime.yml's requires_ansible (scripts/matrix.sh
tests that version)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ast
import glob
import os
import re

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load(*parts):
    with open(os.path.join(REPO, *parts)) as f:
        return yaml.safe_load(f)


def python_floor():
    spec = load('tests', 'config.yml')['modules']['python_requires']
    m = re.match(r'^>=\s*(\d+)\.(\d+)$', spec.strip())
    assert m, 'tests/config.yml python_requires must be ">=X.Y", got %r' % spec
    return int(m.group(1)), int(m.group(2))


def test_plugins_parse_with_the_oldest_claimed_managed_host_python():
    floor = python_floor()
    files = sorted(glob.glob(os.path.join(REPO, 'plugins', '**', '*.py'), recursive=True))
    assert len(files) > 10
    errors = []
    for path in files:
        with open(path) as f:
            source = f.read()
        try:
            ast.parse(source, path, feature_version=floor)
        except SyntaxError as exc:
            errors.append('%s:%s: %s' % (os.path.relpath(path, REPO), exc.lineno, exc.msg))
    assert not errors, 'syntax newer than Python %d.%d:\n%s' % (floor + ('\n'.join(errors),))


def test_roles_claim_the_collections_minimum_ansible_core():
    requires = load('meta', 'runtime.yml')['requires_ansible']
    m = re.match(r'^>=\s*(\d+\.\d+)(\.\d+)?$', requires.strip())
    assert m, 'requires_ansible must be a plain ">=X.Y.Z" (scripts/matrix.sh reads its minimum), got %r' % requires
    roles = sorted(glob.glob(os.path.join(REPO, 'roles', '*', 'meta', 'main.yml')))
    assert roles
    for path in roles:
        with open(path) as f:
            info = yaml.safe_load(f)['galaxy_info']
        assert str(info['min_ansible_version']) == m.group(1), path
