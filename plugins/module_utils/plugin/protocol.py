# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Docker's legacy volume-plugin protocol (``VolumeDriver``): the calls and their wire checks.

Rule: this file says WHAT goes over the wire (endpoints, fields, limits, the shape of
answers) and nothing about volumes or sockets. :data:`CALLS` is the one table of
endpoints: the server dispatches from it (:func:`dispatch_table`), and a driver is
anything with one method per call (``activate``, ``create``, ``remove``, ``mount``,
``unmount``, ``path``, ``get``, ``list``, ``capabilities``) taking the decoded body
and returning the answer dict, or ``(answer, note for the log line)``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ..common import PVError, validate_name

MIME = 'application/vnd.docker.plugins.v1.2+json'
MAX_BODY = 1024 * 1024
MAX_ID = 256

# endpoint -> driver method; Plugin.Activate, then the eight calls of the Driver interface
CALLS = (
    ('Plugin.Activate', 'activate'),
    ('VolumeDriver.Create', 'create'),
    ('VolumeDriver.Remove', 'remove'),
    ('VolumeDriver.Mount', 'mount'),
    ('VolumeDriver.Unmount', 'unmount'),
    ('VolumeDriver.Path', 'path'),
    ('VolumeDriver.Get', 'get'),
    ('VolumeDriver.List', 'list'),
    ('VolumeDriver.Capabilities', 'capabilities'),
)
METHODS = tuple(endpoint for endpoint, _method in CALLS)


class RequestError(PVError):
    """A request the daemon refuses (bad input); answered with Err."""


def dispatch_table(driver):
    """{endpoint: bound method of ``driver``}; a driver missing a call fails here, at start."""
    table = {}
    for endpoint, method in CALLS:
        func = getattr(driver, method, None)
        if not callable(func):
            raise TypeError('%s does not implement %s (%s)' % (type(driver).__name__, endpoint, method))
        table[endpoint] = func
    return table


def short_name(endpoint):
    """``VolumeDriver.Mount`` -> ``Mount`` (log lines); anything else -> ``unknown``."""
    return endpoint.split('.')[-1] if endpoint in METHODS else 'unknown'


# -- requests -------------------------------------------------------------------------

def check_length(raw):
    """The Content-Length header: the body size to read (refused: negative, garbage, > MAX_BODY)."""
    if raw is None:
        return 0
    try:
        length = int(raw)
    except ValueError:
        raise RequestError('invalid Content-Length %r' % raw[:32])
    if length < 0:
        raise RequestError('invalid Content-Length %r' % raw[:32])
    if length > MAX_BODY:
        raise RequestError('request body of %d bytes is larger than %d' % (length, MAX_BODY))
    return length


def decode_body(data):
    """The request body: a JSON object (an empty body is ``{}``)."""
    if not data.strip():
        return {}
    try:
        body = json.loads(data.decode('utf-8'))
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError('malformed JSON: %s' % exc)
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise RequestError('request body must be a JSON object')
    return body


def check_name(body):
    """The ``Name`` field: a valid volume name."""
    name = body.get('Name')
    if name is None:
        raise RequestError('missing field "Name"')
    if not isinstance(name, str):
        raise RequestError('field "Name" must be a string')
    try:
        validate_name(name)
    except PVError as exc:
        raise RequestError(str(exc))
    return name


def check_id(body):
    """The ``ID`` field of Mount/Unmount: the caller's (container's) mount ID."""
    caller = body.get('ID')
    if caller is None:
        raise RequestError('missing field "ID"')
    if not isinstance(caller, str) or not caller or len(caller) > MAX_ID or not caller.isprintable():
        raise RequestError('field "ID" must be a non-empty printable string of at most %d characters' % MAX_ID)
    return caller


def check_opts(opts, allowed):
    """``Opts`` of Create: an object of short strings (numbers accepted), keys among ``allowed``."""
    if opts is None:
        return {}
    if not isinstance(opts, dict):
        raise RequestError('field "Opts" must be an object of strings')
    unknown = sorted(k for k in opts if k not in allowed)
    if unknown:
        raise RequestError('unknown option(s) %s (supported: %s)' % (', '.join(map(str, unknown)), ', '.join(allowed)))
    for key, value in opts.items():
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise RequestError('option %s must be a string' % key)
        if len(str(value)) > 1024:
            raise RequestError('option %s is too long' % key)
    return opts


# -- answers ----------------------------------------------------------------------------

def ok(**fields):
    """A successful answer: the fields plus ``"Err": ""``."""
    return dict(fields, Err='')


def error(message):
    return {'Err': str(message)}


def encode(payload):
    return json.dumps(payload).encode('utf-8')


def printable(text):
    text = str(text)
    return ''.join(c if c.isprintable() else '?' for c in text)[:400]
