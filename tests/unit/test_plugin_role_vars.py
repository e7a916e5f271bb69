# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The volume_plugin role installs every module_utils package the daemon imports."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_role_lists_every_module_utils_package():
    with open(os.path.join(REPO, 'roles', 'volume_plugin', 'vars', 'main.yml')) as handle:
        text = handle.read()
    listed = re.search(r'^pv_plugin_packages: \[(.*)\]$', text, re.M).group(1)
    listed = sorted(x.strip() for x in listed.split(','))
    mu = os.path.join(REPO, 'plugins', 'module_utils')
    packages = sorted(d for d in os.listdir(mu)
                      if os.path.isfile(os.path.join(mu, d, '__init__.py')))
    assert listed == packages
    # one level deep only: the role's fileglob does not descend further
    for pkg in packages:
        for entry in os.listdir(os.path.join(mu, pkg)):
            assert not os.path.isfile(os.path.join(mu, pkg, entry, '__init__.py')), (pkg, entry)
