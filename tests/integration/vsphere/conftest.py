# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The vsphere folder's fixtures (defined in vsphere_fixtures.py, which tests of other folders
import too) and its marker: every test here is ``vsphere``."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

from vsphere_fixtures import guest, test_vm, vcsim, vs, vsphere_auth  # noqa: F401 pylint: disable=unused-import,import-error

HERE = os.path.dirname(os.path.abspath(__file__))


def pytest_collection_modifyitems(config, items):
    for item in items:
        if str(item.fspath).startswith(HERE + os.sep):
            item.add_marker(pytest.mark.vsphere)
