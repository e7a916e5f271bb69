# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""openstack/client.py: SDK exceptions become typed errors in one place; transient ones are retried."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

import pytest

from ansible_collections.persistent_volumes.docker.plugins.module_utils.common import (
    AGAIN, Conflict, NotFound, PVError, TimedOut, Unavailable, poll)
from ansible_collections.persistent_volumes.docker.plugins.module_utils.openstack import client as osc

openstack = pytest.importorskip('openstack')
from openstack import exceptions as os_exc  # noqa: E402
from keystoneauth1 import exceptions as ksa_exc  # noqa: E402


def test_transient_errors():
    assert osc.is_transient(os_exc.HttpException(message='x', http_status=503))
    assert osc.is_transient(os_exc.HttpException(message='x', http_status=500))
    assert not osc.is_transient(os_exc.HttpException(message='x', http_status=400))
    assert not osc.is_transient(os_exc.NotFoundException(message='x', http_status=404))
    assert osc.is_transient(ksa_exc.ConnectFailure('refused'))
    assert osc.is_transient(ksa_exc.ConnectTimeout('slow'))
    assert osc.is_timeout(ksa_exc.ConnectTimeout('slow'))
    assert not osc.is_timeout(ksa_exc.ConnectFailure('refused'))
    assert not osc.is_transient(ValueError('x'))


@pytest.mark.parametrize('exc,typ', [
    (os_exc.NotFoundException(message='gone', http_status=404), NotFound),
    (os_exc.ConflictException(message='busy', http_status=409), Conflict),
    (os_exc.DuplicateResource('two of them'), Conflict),
    (os_exc.HttpException(message='x', http_status=503), Unavailable),
    (ksa_exc.ConnectFailure('refused'), Unavailable),
    (os_exc.BadRequestException(message='Invalid input', http_status=400), PVError),
])
def test_translate_gives_typed_errors(exc, typ):
    err = osc.translate(exc, 'reading volume x')
    assert err.__class__ is typ and isinstance(err, PVError)
    assert str(err).startswith('OpenStack: reading volume x failed: ')
    assert osc.translate(ksa_exc.ConnectTimeout('slow'), 'x').ambiguous


def test_call_retries_then_succeeds_and_gives_up(monkeypatch):
    monkeypatch.setattr(time, 'sleep', lambda s: None)
    c = osc.Client({'retry_timeout': 2}, conn=object())
    answers = [os_exc.HttpException(message='busy', http_status=503)] * 2 + ['ok']

    def flaky():
        item = answers.pop(0)
        if isinstance(item, Exception):
            raise item
        return item
    assert c.call('x', flaky) == 'ok'

    def down():
        raise ksa_exc.ConnectFailure('Unable to establish connection')
    c.retry_timeout = 0.2
    with pytest.raises(Unavailable, match='gave up retrying'):
        c.call('listing volumes', down)

    def bad():
        raise os_exc.BadRequestException(message='Invalid input', http_status=400)
    with pytest.raises(PVError, match='listing volumes failed: .*Invalid input'):
        c.call('listing volumes', bad)

    def missing():
        raise os_exc.NotFoundException(message='No Volume found', http_status=404)
    with pytest.raises(NotFound):
        c.call('reading volume v', missing)
    assert c.get_or_none('reading volume v', missing) is None


def test_poll_waits_with_backoff_and_times_out(monkeypatch):
    slept = []
    monkeypatch.setattr(time, 'sleep', slept.append)
    tries = iter([AGAIN, AGAIN, AGAIN, 'done'])
    assert poll(lambda: next(tries), 60, lambda: 'late', interval=0.5, factor=2, max_interval=1.5) == 'done'
    assert slept == [0.5, 1.0, 1.5]

    def late():
        raise TimedOut('too slow')
    monkeypatch.setattr(time, 'sleep', lambda s: None)
    with pytest.raises(TimedOut):
        poll(lambda: AGAIN, 0.05, late)


def test_sdk_log_path_writes_the_sdk_log_to_that_file_only(tmp_path, capsys):
    import logging
    path = tmp_path / 'sdk.log'
    osc.enable_sdk_logging(None, 'DEBUG')          # no path: nothing is set up
    assert not path.exists()
    try:
        osc.enable_sdk_logging(str(path), 'DEBUG')
        logging.getLogger('openstack').debug('REQ: curl -g -i -X GET http://cinder/volumes')
        osc.enable_sdk_logging(str(path), 'INFO')
        logging.getLogger('openstack').debug('not at INFO')
        logging.getLogger('openstack').info('at INFO')
    finally:
        for name in ('openstack', 'keystoneauth'):
            logger = logging.getLogger(name)
            for handler in list(logger.handlers):
                handler.close()
                logger.removeHandler(handler)
    text = path.read_text()
    assert 'REQ: curl' in text and 'at INFO' in text and 'not at INFO' not in text
    out = capsys.readouterr()
    assert out.out == ''                            # a module's stdout is its JSON
