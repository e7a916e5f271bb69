# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which of the Debian packages the chain runs are missing on this host, and its OS family.

Read-only and offline: one ``dpkg-query`` (no package cache, no python3-apt) and
``/etc/os-release``. The ``volume`` module runs it first when asked (option
``check_packages``, which the ``volumes`` role passes), so that the role learns what to
install in the same call that manages the volumes, without a round trip of its own.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import subprocess

OS_RELEASE = '/etc/os-release'


def installed(packages):
    """The names of ``packages`` that dpkg reports installed (``ii``); empty without dpkg."""
    cmd = ['dpkg-query', '-W', '-f=${db:Status-Abbrev} ${Package}\\n'] + list(packages)
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              universal_newlines=True, check=False)
    except OSError:
        return set()
    found = set()
    for line in proc.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == 'ii':
            found.add(fields[-1].split(':')[0])
    return found


def missing(packages):
    """``packages`` (in their order) that are not installed."""
    have = installed(packages) if packages else set()
    return [p for p in packages if p not in have]


def os_family(path=OS_RELEASE):
    """``ID`` followed by the words of ``ID_LIKE`` from os-release (``['unknown']`` without one)."""
    values = {}
    try:
        with open(path) as handle:
            for line in handle:
                key, sep, value = line.strip().partition('=')
                if sep and key in ('ID', 'ID_LIKE'):
                    values[key] = value.strip().strip('"\'')
    except (IOError, OSError):
        pass
    return [values.get('ID') or 'unknown'] + values.get('ID_LIKE', '').split()
