# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Module base class: a spec plus ``run()`` (after openstack.cloud's OpenStackModule).

The only module_utils file that imports Ansible. A module subclasses
:class:`PVModule`, sets ``argument_spec`` (and optional ``module_kwargs``),
and implements ``run()`` which returns the result dict (with ``changed``).
:class:`~.common.PVError` raised anywhere becomes a clean ``fail_json``.

The common tail of every module lives here: ``with self.session(backend)`` closes a
backend/client and passes on its warnings, :meth:`PVModule.records_result` builds the
usual ``{changed, <list>, <one>, diff}`` result, and ``__call__`` turns a ``warnings``
list in the result into warnings, drops ``diff`` unless Ansible runs with ``--diff``,
defaults ``changed`` to false and exits.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from .common import PVError


class PVModule(object):
    argument_spec = {}
    module_kwargs = {}
    #: (import_name, pip_name, HAS_flag, import_traceback) tuples checked before run()
    requirements = ()

    def __init__(self):
        self.ansible = AnsibleModule(argument_spec=self.argument_spec,
                                     supports_check_mode=True, **self.module_kwargs)
        self.params = self.ansible.params
        self.check_mode = self.ansible.check_mode
        self.warnings = []

    def warn(self, msg):
        self.warnings.append(msg)
        self.ansible.warn(msg)

    def run(self):
        raise NotImplementedError

    def preflight(self):
        """Checked before the requirements and run(): None, or the ``fail_json`` arguments of a failure
        that changed nothing (e.g. missing host packages, which may include the missing requirement)."""
        return None

    @contextlib.contextmanager
    def session(self, resource):
        """``with self.session(backend) as backend:`` closes ``resource`` however the block
        ends and, when it succeeds, passes on what ``resource.warnings`` (if any) collected."""
        try:
            yield resource
        finally:
            resource.close()
        for warning in getattr(resource, 'warnings', ()):
            self.warn(warning)

    @staticmethod
    def records_result(key, records, changed, diff, one=None):
        """``{changed, key: records, diff}``, plus ``one: records[0]`` when ``one`` is given
        (the module was called for a single item)."""
        result = {'changed': changed, key: records, 'diff': diff}
        if one:
            result[one] = records[0]
        return result

    def __call__(self):
        failure = self.preflight()
        if failure:
            self.ansible.fail_json(**failure)
        for pip_name, has_it, tb in self.requirements:
            if not has_it:
                self.ansible.fail_json(msg=missing_required_lib(pip_name), exception=tb)
        try:
            result = self.run()
        except PVError as exc:
            result = getattr(exc, 'result', None) or {}
            self.ansible.fail_json(msg=str(exc), **result)
        except Exception as exc:  # pylint: disable=broad-except
            self.ansible.fail_json(msg='unexpected error: %s: %s' % (type(exc).__name__, exc),
                                   exception=traceback.format_exc())
        for warning in result.pop('warnings', ()):
            self.warn(warning)
        if not self.ansible._diff:
            result.pop('diff', None)
        result.setdefault('changed', False)
        self.ansible.exit_json(**result)
