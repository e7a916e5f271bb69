# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""host/packages.py: the volume module's check_packages (the volumes role's dependency check),
against this machine's real dpkg."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import shutil

import pytest

from ansible_collections.persistent_volumes.docker.plugins.module_utils.host import packages

needs_dpkg = pytest.mark.skipif(shutil.which('dpkg-query') is None, reason='needs dpkg (Debian family)')


@needs_dpkg
def test_installed_and_missing_packages_keep_the_order():
    # dpkg itself is always installed where dpkg-query is; the other name exists nowhere
    assert packages.installed(['dpkg', 'pv-no-such-package']) == {'dpkg'}
    assert packages.missing(['pv-no-such-package', 'dpkg', 'pv-other-missing']) == [
        'pv-no-such-package', 'pv-other-missing']
    assert packages.missing([]) == []


def test_without_dpkg_every_package_is_missing(monkeypatch, tmp_path):
    monkeypatch.setenv('PATH', str(tmp_path))          # no dpkg-query on PATH: a non-Debian host
    assert packages.installed(['dpkg']) == set()
    assert packages.missing(['e2fsprogs', 'mount']) == ['e2fsprogs', 'mount']


def test_os_family_from_os_release(tmp_path):
    path = tmp_path / 'os-release'
    path.write_text('PRETTY_NAME="Ubuntu 24.04 LTS"\nID=ubuntu\nID_LIKE=debian\nVERSION_ID="24.04"\n')
    assert packages.os_family(str(path)) == ['ubuntu', 'debian']
    path.write_text("ID=rocky\nID_LIKE='rhel centos fedora'\n")
    assert packages.os_family(str(path)) == ['rocky', 'rhel', 'centos', 'fedora']
    assert packages.os_family(str(tmp_path / 'none')) == ['unknown']
