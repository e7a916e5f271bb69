# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cinder folder's fixtures (defined in cinder_fixtures.py, which tests of other folders
import too) and its marker: every test here is ``cinder``."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

from cinder_fixtures import (  # noqa: F401 pylint: disable=unused-import,import-error
    conn, docker_host, guest, hypervisor, openstack_cloud, os_ansible, os_cleanup, other_host)

HERE = os.path.dirname(os.path.abspath(__file__))


def pytest_collection_modifyitems(config, items):
    for item in items:
        if str(item.fspath).startswith(HERE + os.sep):
            item.add_marker(pytest.mark.cinder)
