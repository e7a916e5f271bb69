# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Finding a block device on this host by stable identifiers.

Cloud backends never trust the device name the hypervisor API reports (Nova's
``/dev/vdb`` is a hint KVM ignores; REX-Ray#346/#1183). They give a list of
stable ``/dev/disk/by-id`` / ``by-path`` links instead, and we wait for one.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ..common import AGAIN, PVError, Refused, TimedOut, human_size, poll

DEV_ROOT = '/dev'


def block_size(device):
    """Size of a block device in bytes, from sysfs (no subprocess)."""
    real = os.path.realpath(device)
    base = os.path.basename(real)
    try:
        with open('/sys/class/block/%s/size' % base) as handle:
            return int(handle.read().strip()) * 512
    except (IOError, OSError, ValueError):
        pass
    fd = os.open(real, os.O_RDONLY)
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


def wait_for_device(locators, expected_size=None, timeout=60, interval=0.1, what='volume'):
    """Wait until one of ``locators`` exists; return (link, real_device).

    The size of the device must equal ``expected_size`` (bytes) when given:
    a mismatch means the link points at the wrong disk, and we refuse it.
    """
    if not locators:
        raise PVError('no stable device identifiers known for %s' % what)

    def attempt():
        for link in locators:
            if os.path.exists(link):
                real = os.path.realpath(link)
                if expected_size is not None:
                    actual = block_size(real)
                    if actual != expected_size:
                        raise Refused(
                            'device %s (%s) for %s is %s but the backend says %s: '
                            'refusing a device that may be another disk'
                            % (link, real, what, human_size(actual), human_size(expected_size)))
                return link, real
        return AGAIN

    def late():
        raise TimedOut('timed out after %ss waiting for the device of %s to appear at any of: %s'
                       % (timeout, what, ', '.join(locators)))
    return poll(attempt, timeout, late, interval=interval)
