# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ownership of a mountpoint: owner, group and mode (names resolved on this host).

Rule: :func:`ownership_diff` only reads; :func:`apply_ownership` changes only what differs.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ..common import PVError


def ensure_dir(path, owner=None, group=None, mode=None):
    """Create ``path`` and set owner/group/mode; return True when anything changed."""
    changed = False
    if not os.path.isdir(path):
        os.makedirs(path, 0o755, exist_ok=True)
        changed = True
    return apply_ownership(path, owner, group, mode) or changed


def ownership_diff(path, owner=None, group=None, mode=None):
    """What apply_ownership would change, as {field: (before, after)}."""
    try:
        st = os.stat(path)
    except OSError:
        return {'path': (None, path)}
    diff = {}
    uid = resolve_uid(owner)
    gid = resolve_gid(group)
    if uid is not None and st.st_uid != uid:
        diff['owner'] = (st.st_uid, uid)
    if gid is not None and st.st_gid != gid:
        diff['group'] = (st.st_gid, gid)
    if mode is not None and (st.st_mode & 0o7777) != mode:
        diff['mode'] = ('%04o' % (st.st_mode & 0o7777), '%04o' % mode)
    return diff


def apply_ownership(path, owner=None, group=None, mode=None):
    diff = ownership_diff(path, owner, group, mode)
    if 'owner' in diff or 'group' in diff:
        os.chown(path, resolve_uid(owner) if owner is not None else -1,
                 resolve_gid(group) if group is not None else -1)
    if 'mode' in diff:
        os.chmod(path, mode)
    return bool(diff)


def resolve_uid(owner):
    if owner is None or owner == '':
        return None
    if isinstance(owner, int) or str(owner).isdigit():
        return int(owner)
    import pwd
    try:
        return pwd.getpwnam(owner).pw_uid
    except KeyError:
        raise PVError('owner %r does not exist on this host' % owner)


def resolve_gid(group):
    if group is None or group == '':
        return None
    if isinstance(group, int) or str(group).isdigit():
        return int(group)
    import grp
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise PVError('group %r does not exist on this host' % group)


def parse_mode(mode):
    if mode is None or mode == '':
        return None
    if isinstance(mode, int):
        return mode
    text = str(mode)
    try:
        value = int(text, 8)
    except ValueError:
        raise PVError('mode %r must be octal, e.g. "0750"' % mode)
    if value < 0 or value > 0o7777:
        raise PVError('mode %r is out of range' % mode)
    return value
