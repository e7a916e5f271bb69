# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Plain helpers of the cinder tests (importable by name: ``conftest`` is ambiguous when pytest
collects several test folders in one run)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import time

# from tests/harness/openstack (on the import path: tests/pytest.ini); used by the fixtures
import guest_device  # noqa: F401 pylint: disable=import-error,unused-import

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, '..', '..', '..'))
HARNESS = os.path.join(REPO, 'tests', 'harness', 'openstack')
STATE = os.path.join(REPO, '.state', 'openstack')
CLOUDS_YAML = os.path.join(STATE, 'clouds.yaml')


def wait_volume(conn, vid, status, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        vol = conn.block_storage.get_volume(vid)
        if vol.status == status:
            return vol
        if time.monotonic() > deadline:
            raise AssertionError('volume %s is %s, not %s' % (vid, vol.status, status))
        time.sleep(0.3)
