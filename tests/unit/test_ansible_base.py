# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The modules' common tail in ``ansible_base.PVModule``: ``session()`` (close, warnings),
``records_result()``, and what ``__call__`` does with ``diff``, ``warnings`` and ``changed``.
Each module runs as Ansible runs one: a new Python process with an arguments file."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import atexit
import json
import os
import subprocess
import sys

from ansible_collections.persistent_volumes.docker.plugins.module_utils.ansible_base import PVModule
from ansible_collections.persistent_volumes.docker.plugins.module_utils.common import PVError


HERE = os.path.dirname(os.path.abspath(__file__))
#: set in the module's process by invoke(): where it reports on its resource at exit
REPORT = None


class Resource(object):
    """What the modules hand to ``session()``: a backend/engine/client with close()."""

    def __init__(self, warnings=None):
        self.closed = 0
        if warnings is not None:
            self.warnings = warnings

    def close(self):
        self.closed += 1


def invoke(module_class, args, tmp_path):
    """Run ``module_class()()`` as Ansible runs a module: a new Python process given an args
    file (AnsibleModule reads sys.argv[1]). Returns (exit code, parsed JSON output, report):
    the report is what the run wrote about its resource and its own warnings list."""
    args_file = tmp_path / 'args.json'
    args_file.write_text(json.dumps({'ANSIBLE_MODULE_ARGS': args}))
    report = tmp_path / 'report.json'
    code = ('import sys; sys.path[:0] = [%r, %r]; import test_ansible_base as t; '
            't.REPORT = %r; t.%s()()' % (os.environ['PV_COLLECTIONS_ROOT'], HERE, str(report),
                                         module_class.__name__))
    proc = subprocess.run([sys.executable, '-c', code, str(args_file)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=False)
    assert proc.stdout.strip(), proc.stderr
    return proc.returncode, json.loads(proc.stdout), json.loads(report.read_text())


def messages(warnings):
    """Warning texts of a module result (ansible-core 2.19 returns them as summaries)."""
    return [w if isinstance(w, str) else w['event']['msg'] for w in warnings]


class Reporting(PVModule):
    resource = None

    def __init__(self):
        super(Reporting, self).__init__()
        atexit.register(self.report)

    def report(self):
        with open(REPORT, 'w') as handle:
            json.dump({'closed': self.resource.closed, 'warnings': self.warnings}, handle)


class ListModule(Reporting):
    argument_spec = dict(name=dict(type='str'), fail=dict(type='bool', default=False))

    def run(self):
        self.resource = Resource(warnings=['w1', 'w2'])
        with self.session(self.resource) as res:
            if self.params['fail']:
                raise PVError('boom')
            records = [{'name': 'a', 'changed': True, 'res': res is self.resource}]
        return self.records_result('items', records, True, {'before': {}, 'after': {'a': 1}},
                                   one='item' if self.params['name'] else None)


class PlainModule(Reporting):
    argument_spec = dict()

    def run(self):
        self.resource = Resource()              # no warnings attribute
        with self.session(self.resource):
            pass
        return {'warnings': ['from the result'], 'diff': {'before': 1, 'after': 2}, 'value': 3}


def test_records_result_diff_dropped_without_diff_mode_warnings_passed_on(tmp_path):
    rc, out, report = invoke(ListModule, {}, tmp_path)
    assert rc == 0
    assert out['changed'] is True
    assert out['items'] == [{'name': 'a', 'changed': True, 'res': True}]
    assert 'item' not in out and 'diff' not in out
    assert messages(out['warnings']) == ['w1', 'w2'] and report['warnings'] == ['w1', 'w2']
    assert report['closed'] == 1


def test_records_result_one_item_and_diff_kept_in_diff_mode(tmp_path):
    rc, out, dummy = invoke(ListModule, {'name': 'a', '_ansible_diff': True}, tmp_path)
    assert rc == 0
    assert out['item'] == out['items'][0]
    assert out['diff'] == {'before': {}, 'after': {'a': 1}}


def test_session_closes_on_error_and_drops_its_warnings(tmp_path):
    rc, out, report = invoke(ListModule, {'fail': True}, tmp_path)
    assert rc == 1
    assert out['failed'] is True and out['msg'] == 'boom'
    assert 'warnings' not in out and report['warnings'] == []
    assert report['closed'] == 1


def test_result_warnings_list_becomes_warnings_changed_defaults_to_false(tmp_path):
    rc, out, report = invoke(PlainModule, {}, tmp_path)
    assert rc == 0
    assert out['changed'] is False and out['value'] == 3 and 'diff' not in out
    assert messages(out['warnings']) == ['from the result'] and report['warnings'] == ['from the result']
    assert report['closed'] == 1
