# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Configuration of the volume-plugin daemon (a JSON file, mode 0600).

Example (every key but ``backend`` is optional)::

    {
      "driver": "pv-loop",
      "backend": "loop",
      "backend_params": {},
      "root": "/var/lib/persistent-volumes/plugin/pv-loop",
      "socket": "/run/docker/plugins/pv-loop.sock",
      "defaults": {"size": "1GiB", "fstype": "ext4", "mount_options": "defaults",
                   "uid": null, "gid": null, "mode": null, "backend_options": {}},
      "max_size": "16TiB",
      "mkfs_options": {"ext4": ["-m", "0"]},
      "lost_found": "remove",
      "docker_host": "unix:///var/run/docker.sock",
      "timeout": 300,
      "unmount_grace": "auto",
      "handover_wait": 20,
      "fencing": "shutoff",
      "fsck_repair": false,
      "debug": false
    }

``backend_params`` is handed to the backend unchanged (for cinder e.g. the
clouds.yaml path and cloud name, for vsphere the vCenter host and credentials),
except that for cinder ``clouds_yaml`` (a path) becomes the daemon's
``OS_CLIENT_CONFIG_FILE`` (with ``cloud`` naming the entry), and that for the cloud
backends (cinder, vsphere) the fencing policy ``fencing`` becomes the backend's
takeover parameters (:data:`FENCING_POLICIES`): a volume still attached to another
server/VM (its host died) is force-detached (``force_detach: true``) only when that
server is SHUTOFF / that VM poweredOff (``shutoff``, the default), after stopping it
through the cloud API (``stop``: ``fence_stop``), or whatever its state (``off``:
``fencing: false``, dangerous: a host that still runs keeps writing). ``force_detach``,
``fencing`` or ``fence_stop`` given in ``backend_params`` win over the policy
(configurations older than the policy). ``fsck_repair``: a volume taken over that way
gets a read-only filesystem check before it is mounted; with errors the Mount is refused,
unless ``fsck_repair`` is true (then it is repaired).
``unmount_grace``: seconds (0..3600) between the last Unmount and the release (unmount,
detach; 0: inside the Unmount), or ``auto`` (the default): a ``global`` backend on an active
Docker Swarm node releases at once in the background (the task's new node waits for it), any
other case after :data:`AUTO_GRACE` seconds. ``handover_wait``: seconds (0..3600, default 20)
a Mount (or a Remove) of a volume attached to another server/VM waits for that node's release
(or, for a Mount, for the fence to hold) before it is refused.
Values under keys that look secret are collected so the daemon can scrub them
from every log line and error it returns.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re

from ..backends import registry
from ..common import PVError, parse_size

#: the backends the daemon serves (the registry's ``plugin`` capability)
BACKENDS = tuple(registry.names('plugin'))
PLUGIN_ROOT = '/var/lib/persistent-volumes/plugin'
SOCKET_DIR = '/run/docker/plugins'
DRIVER_RE = re.compile(r'^[a-z0-9][a-z0-9_.-]{0,62}$')
SECRET_KEY_RE = re.compile(r'pass|secret|token|credential|api_?key|private', re.I)
LOST_FOUND = ('remove', 'keep')
DEFAULT_KEYS = ('size', 'fstype', 'mount_options', 'uid', 'gid', 'mode', 'backend_options')
KNOWN_KEYS = ('driver', 'backend', 'backend_params', 'root', 'socket', 'defaults', 'max_size',
              'mkfs_options', 'lost_found', 'docker_host', 'timeout', 'unmount_grace', 'fencing',
              'fsck_repair', 'debug', 'handover_wait')
#: the fencing policy -> the backend's takeover parameters (the same for cinder and vsphere)
FENCING_POLICIES = {
    'shutoff': {'force_detach': True, 'fencing': True, 'fence_stop': False},
    'stop': {'force_detach': True, 'fencing': True, 'fence_stop': True},
    'off': {'force_detach': True, 'fencing': False, 'fence_stop': False},
}
FENCED_BACKENDS = ('cinder', 'vsphere')
#: ``unmount_grace: auto`` off Swarm (or for a local backend): seconds before the release
AUTO_GRACE = 3.0
MAX_WAIT = 3600


class PluginConfig(object):
    """Validated daemon configuration."""

    def __init__(self, raw=None):
        raw = dict(raw or {})
        unknown = sorted(set(raw) - set(KNOWN_KEYS))
        if unknown:
            raise PVError('unknown configuration key(s): %s (known: %s)'
                          % (', '.join(unknown), ', '.join(KNOWN_KEYS)))
        self.backend = raw.get('backend') or 'loop'
        if self.backend not in BACKENDS:
            raise PVError('backend must be one of %s, got %r' % (', '.join(BACKENDS), self.backend))
        self.driver = raw.get('driver') or 'pv-%s' % self.backend
        if not isinstance(self.driver, str) or not DRIVER_RE.match(self.driver):
            raise PVError('driver %r is invalid: lower-case letters, digits, "_", "." and "-", '
                          'at most 63 characters' % (self.driver,))
        self.backend_params = raw.get('backend_params') or {}
        if not isinstance(self.backend_params, dict):
            raise PVError('backend_params must be a mapping')
        self.environment = {}
        policy = raw.get('fencing')
        if policy is None:
            policy = 'shutoff'
        if policy not in FENCING_POLICIES:
            raise PVError('fencing must be one of %s, got %r' % (', '.join(sorted(FENCING_POLICIES)), policy))
        if self.backend in FENCED_BACKENDS:
            # a global volume follows its containers between hosts: take it over from a server
            # that is SHUTOFF (fenced force-detach; the backend refuses a running one) or, with
            # the policy "stop", stop that server through the cloud API first
            self.backend_params = dict(self.backend_params)
            for key, value in FENCING_POLICIES[policy].items():
                self.backend_params.setdefault(key, value)
            self.fencing = policy_of(self.backend_params)
        else:
            self.fencing = None          # loop: a volume never leaves its host
        self.fsck_repair = raw.get('fsck_repair', False)
        if not isinstance(self.fsck_repair, bool):
            raise PVError('fsck_repair must be true or false')
        if self.backend == 'cinder':
            self.backend_params = dict(self.backend_params)
            clouds_yaml = self.backend_params.pop('clouds_yaml', None)
            if clouds_yaml:
                if not isinstance(clouds_yaml, str) or not os.path.isabs(clouds_yaml):
                    raise PVError('backend_params.clouds_yaml must be an absolute path')
                self.environment['OS_CLIENT_CONFIG_FILE'] = clouds_yaml
        self.root = raw.get('root') or os.path.join(PLUGIN_ROOT, self.driver)
        self.socket = raw.get('socket') or os.path.join(SOCKET_DIR, self.driver + '.sock')
        for key in ('root', 'socket'):
            value = getattr(self, key)
            if not isinstance(value, str) or not os.path.isabs(value) or os.path.normpath(value) != value:
                raise PVError('%s must be a normalised absolute path, got %r' % (key, value))
        defaults = raw.get('defaults') or {}
        if not isinstance(defaults, dict):
            raise PVError('defaults must be a mapping')
        bad = sorted(set(defaults) - set(DEFAULT_KEYS))
        if bad:
            raise PVError('unknown key(s) in defaults: %s (known: %s)' % (', '.join(bad), ', '.join(DEFAULT_KEYS)))
        self.defaults = {
            'size': defaults.get('size') or '1GiB',
            'fstype': defaults.get('fstype') or 'ext4',
            'mount_options': defaults.get('mount_options') or 'defaults',
            'uid': _opt_str(defaults.get('uid')),
            'gid': _opt_str(defaults.get('gid')),
            'mode': _opt_str(defaults.get('mode')),
            'backend_options': dict(defaults.get('backend_options') or {}),
        }
        self.max_size = parse_size(raw.get('max_size') or '16TiB', 'max_size')
        parse_size(self.defaults['size'], 'defaults.size')
        mkfs = raw.get('mkfs_options') or {}
        if not isinstance(mkfs, dict) or not all(isinstance(v, list) for v in mkfs.values()):
            raise PVError('mkfs_options must map a fstype to a list of arguments')
        self.mkfs_options = dict((k, [str(a) for a in v]) for k, v in mkfs.items())
        self.lost_found = raw.get('lost_found') or 'remove'
        if self.lost_found not in LOST_FOUND:
            raise PVError('lost_found must be one of %s' % ', '.join(LOST_FOUND))
        self.docker_host = raw.get('docker_host') or 'unix:///var/run/docker.sock'
        if not self.docker_host.startswith('unix://'):
            raise PVError('docker_host must be a unix:// socket URL')
        try:
            self.timeout = int(raw.get('timeout') or 300)
        except (TypeError, ValueError):
            raise PVError('timeout must be a number of seconds')
        grace = raw.get('unmount_grace')
        if grace is None or (isinstance(grace, str) and grace.strip().lower() == 'auto'):
            self.unmount_grace = 'auto'
        else:
            self.unmount_grace = seconds(grace, 'unmount_grace', ' or auto')
        wait = raw.get('handover_wait')
        self.handover_wait = 20.0 if wait is None else seconds(wait, 'handover_wait')
        self.debug = bool(raw.get('debug'))
        self.secrets = sorted(set(collect_secrets(self.backend_params)), key=len, reverse=True)

    @classmethod
    def load(cls, path):
        try:
            with open(path) as handle:
                text = handle.read()
        except (IOError, OSError) as exc:
            raise PVError('cannot read configuration %s: %s' % (path, exc.strerror or exc))
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise PVError('configuration %s is not valid JSON: %s' % (path, exc))
        if not isinstance(raw, dict):
            raise PVError('configuration %s must be a JSON object' % path)
        config = cls(raw)
        config.path = path
        try:
            config.mode = os.stat(path).st_mode & 0o777
        except OSError:
            config.mode = None
        return config

    def scrub(self, text):
        """``text`` with every configured secret (and obvious password=... pairs) masked."""
        text = str(text)
        for secret in self.secrets:
            text = text.replace(secret, '********')
        return _PAIR_RE.sub(lambda m: m.group(1) + '********', text)


_PAIR_RE = re.compile(r'''((?:password|passwd|secret|token)["']?\s*[:=]\s*["']?)[^\s"',}]+''', re.I)


def seconds(value, key, alternative=''):
    """``value`` (a number, or a string holding one) as seconds in 0..:data:`MAX_WAIT`."""
    try:
        if isinstance(value, bool):
            raise TypeError(value)
        number = float(value)
    except (TypeError, ValueError):
        raise PVError('%s must be a number of seconds%s, got %r' % (key, alternative, value))
    if not 0 <= number <= MAX_WAIT:     # NaN fails too
        raise PVError('%s must be between 0 and %d seconds%s, got %r' % (key, MAX_WAIT, alternative, value))
    return number


def policy_of(params):
    """The fencing policy the backend parameters amount to (``off``, ``stop`` or ``shutoff``)."""
    if params.get('fencing', True) is False:
        return 'off'
    if params.get('fence_stop'):
        return 'stop'
    return 'shutoff'


def _opt_str(value):
    if value is None or value == '':
        return None
    return str(value)


def collect_secrets(value, key=''):
    """Every string under a secret-looking key (recursively); short ones are skipped."""
    found = []
    if isinstance(value, dict):
        for k, v in value.items():
            found.extend(collect_secrets(v, str(k) if not key or SECRET_KEY_RE.search(str(k)) else key))
    elif isinstance(value, (list, tuple)):
        for v in value:
            found.extend(collect_secrets(v, key))
    elif isinstance(value, str) and key and SECRET_KEY_RE.search(key) and len(value) >= 3:
        found.append(value)
    return found
