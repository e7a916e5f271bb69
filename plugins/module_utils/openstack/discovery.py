# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which Nova server is this machine: its instance uuid from the config drive or the metadata service.

Rule: reads only (the config drive block device is mounted read-only for the read and
unmounted at once); no OpenStack API call here; answers None when nothing tells.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import subprocess
import tempfile

CONFIG_DRIVE_LABEL = '/dev/disk/by-label/config-2'
METADATA_URL = 'http://169.254.169.254/openstack/latest/meta_data.json'


def read_instance_uuid(config_drive=CONFIG_DRIVE_LABEL, metadata_url=METADATA_URL, timeout=3):
    """This machine's Nova server id from the config drive or the metadata service, or None."""
    if config_drive and os.path.exists(config_drive):
        found = _from_config_drive(config_drive)
        if found:
            return found
    if metadata_url:
        return _from_metadata_service(metadata_url, timeout)
    return None


def _from_config_drive(config_drive):
    if os.path.isdir(config_drive):
        return _read_meta_json(os.path.join(config_drive, 'openstack', 'latest', 'meta_data.json'))
    mnt = tempfile.mkdtemp(prefix='pv-config-drive-')
    try:
        proc = subprocess.run(['mount', '-o', 'ro', config_drive, mnt], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, check=False)
        if proc.returncode != 0:
            return None
        try:
            return _read_meta_json(os.path.join(mnt, 'openstack', 'latest', 'meta_data.json'))
        finally:
            subprocess.run(['umount', mnt], stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    finally:
        try:
            os.rmdir(mnt)
        except OSError:
            pass


def _from_metadata_service(metadata_url, timeout):
    try:
        from urllib.parse import urlsplit
        import http.client
        parts = urlsplit(metadata_url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
        try:
            conn.request('GET', parts.path or '/')
            resp = conn.getresponse()
            if resp.status != 200:
                return None
            data = json.loads(resp.read().decode('utf-8'))
        finally:
            conn.close()
        return data.get('uuid')
    except Exception:  # pylint: disable=broad-except
        return None


def _read_meta_json(path):
    try:
        with open(path) as handle:
            return json.load(handle).get('uuid')
    except (IOError, OSError, ValueError):
        return None
