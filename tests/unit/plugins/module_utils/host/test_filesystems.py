# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""host/filesystems.py: e2fsck right after an unmount waits out a device still held open."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.persistent_volumes.docker.plugins.module_utils.common import PVError
from ansible_collections.persistent_volumes.docker.plugins.module_utils.host import filesystems


def fake_run(results, calls):
    def run(cmd, check=True, **kwargs):
        calls.append(cmd)
        return results.pop(0)
    return run


def test_e2fsck_retries_while_the_device_is_busy(monkeypatch):
    calls = []
    busy = (8, '', 'e2fsck: Device or resource busy while trying to open /dev/loop9\nCannot continue, aborting.')
    monkeypatch.setattr(filesystems, 'run', fake_run([busy, busy, (1, 'fixed', '')], calls))
    assert filesystems.e2fsck_after_umount('/dev/loop9', timeout=5) == 1
    assert calls == [['e2fsck', '-f', '-p', '/dev/loop9']] * 3


def test_e2fsck_gives_up_with_the_message(monkeypatch):
    busy = (8, '', 'Cannot continue, aborting.')
    monkeypatch.setattr(filesystems, 'run', fake_run([busy] * 100, []))
    with pytest.raises(PVError, match=r'rc=8\): Cannot continue, aborting'):
        filesystems.e2fsck_after_umount('/dev/loop9', timeout=0.5)


def test_e2fsck_other_errors_fail_at_once(monkeypatch):
    calls = []
    monkeypatch.setattr(filesystems, 'run', fake_run([(4, '', 'errors left uncorrected')], calls))
    with pytest.raises(PVError, match='rc=4'):
        filesystems.e2fsck_after_umount('/dev/loop9', timeout=5)
    assert len(calls) == 1
