# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures of tests/release: the docs site and the screenshot that scripts/release-checks.sh built.

Rule: these tests check artefacts of a real build; without them they fail with the command to
run (never a silent skip).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _artefact(var, kind):
    path = os.environ.get(var)
    if not path:
        pytest.fail('%s is not set: tests/release check the %s that scripts/release-checks.sh builds; '
                    'run `bash scripts/release-checks.sh`' % (var, kind), pytrace=False)
    if not os.path.exists(path):
        pytest.fail('%s=%s does not exist' % (var, path), pytrace=False)
    return path


@pytest.fixture(scope='session')
def repo():
    return REPO


@pytest.fixture(scope='session')
def docs_html():
    """Root of the built HTML site (the directory with index.html)."""
    return _artefact('PV_DOCS_HTML', 'docs site')


@pytest.fixture(scope='session')
def screenshot():
    """PNG that headless Chromium rendered of the volume module's page."""
    return _artefact('PV_DOCS_SCREENSHOT', 'screenshot')
