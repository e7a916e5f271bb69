# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Typed errors stay PVErrors (``except PVError`` and fail_json keep working) and keep their type
when a caller adds context."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.persistent_volumes.docker.plugins.module_utils import common


@pytest.mark.parametrize('cls', [common.NotFound, common.Refused, common.InUse, common.Conflict,
                                 common.TimedOut, common.Unavailable])
def test_typed_errors_are_pverrors(cls):
    err = cls('boom')
    assert isinstance(err, common.PVError) and str(err) == 'boom'
    again = common.reworded(err, 'volume a: boom')
    assert again.__class__ is cls and str(again) == 'volume a: boom'


def test_in_use_is_a_refusal_and_reworded_keeps_the_ambiguity():
    assert issubclass(common.InUse, common.Refused)
    assert common.reworded(common.Unavailable('x', ambiguous=True), 'y').ambiguous
    cmd = common.CommandError(['mkfs'], 1, '', 'bad')
    assert common.reworded(cmd, 'volume a: bad').__class__ is common.PVError
