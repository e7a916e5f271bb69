# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Parsing and decision logic of the core (no root, no devices)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import struct
import uuid

import pytest

from ansible_collections.persistent_volumes.docker.plugins.module_utils import common

from ansible_collections.persistent_volumes.docker.plugins.module_utils.host import chain as host
from ansible_collections.persistent_volumes.docker.plugins.module_utils.core.engine import VolumeSpec


@pytest.mark.parametrize('text,expected', [
    ('2GiB', 2 * 1024 ** 3), ('512MiB', 512 * 1024 ** 2), ('1G', 1024 ** 3), ('1GB', 10 ** 9),
    ('1.5GiB', 3 * 512 * 1024 ** 2), ('1048576', 1048576), (4096, 4096), (' 10 m ', 10 * 1024 ** 2),
])
def test_parse_size(text, expected):
    assert common.parse_size(text) == expected


@pytest.mark.parametrize('text,message', [
    ('0', 'greater than zero'), ('-1G', 'not a size'), ('abc', 'not a size'), ('3 furlongs', 'unknown unit'),
    (True, 'must be a size'), ('0.0001B', 'greater than zero'),
])
def test_parse_size_rejects(text, message):
    with pytest.raises(common.PVError, match=message):
        common.parse_size(text)


def test_human_size():
    assert common.human_size(2 * 1024 ** 3) == '2GiB'
    assert common.human_size(1536 * 1024 ** 2) == '1536MiB'
    assert common.human_size(1000) == '1000B'


@pytest.mark.parametrize('name', ['db', 'app_data-1', 'a.b', 'x' * 64, '0start'])
def test_valid_names(name):
    assert common.validate_name(name) == name


@pytest.mark.parametrize('name', ['', 'a/b', '..', 'a..b', '.hidden', '-dash', 'with space', 'x' * 65, None, 'é'])
def test_invalid_names(name):
    with pytest.raises(common.PVError):
        common.validate_name(name)


@pytest.mark.parametrize('path', ['/', '//', 'rel', '/proc', '/proc/x', '/sys/fs', '/dev/x', '/a/../b', '/a//b',
                                  '/run/x', '/a b'])
def test_bad_mount_paths(path):
    with pytest.raises(common.PVError):
        common.validate_mount_path(path)


def test_good_mount_path_is_normalised():
    assert common.validate_mount_path('/srv/data/') == '/srv/data'
    assert common.validate_mount_path('/devices') == '/devices'      # only /dev itself is forbidden


MOUNTINFO = r"""22 1 0:21 / / rw,relatime shared:1 - overlay overlay rw
36 22 7:0 / /var/lib/persistent-volumes/mounts/db rw,relatime shared:2 - ext4 /dev/loop0 rw
37 22 7:1 / /mnt/with\040space rw - xfs /dev/loop1 rw,attr2
"""


def test_parse_mountinfo():
    mounts = host.parse_mountinfo(MOUNTINFO)
    assert [(m.devno, m.target, m.fstype, m.source) for m in mounts] == [
        ('0:21', '/', 'overlay', 'overlay'),
        ('7:0', '/var/lib/persistent-volumes/mounts/db', 'ext4', '/dev/loop0'),
        ('7:1', '/mnt/with space', 'xfs', '/dev/loop1'),
    ]


FSTAB = """# /etc/fstab: static file system information.
UUID=1234 / ext4 errors=remount-ro 0 1
/swapfile none swap sw 0 0

# keep this comment
"""


def test_fstab_keeps_foreign_lines_and_edits_its_own(tmp_path):
    path = tmp_path / 'fstab'
    path.write_text(FSTAB)
    tab = host.Fstab(str(path))
    assert tab.get('/') .spec == 'UUID=1234'
    entry = host.FstabEntry('UUID=abcd', '/srv/db', 'ext4', 'defaults,nofail', 0, 2)
    tab.set('db', entry)
    assert tab.changed
    tab.write()
    text = path.read_text()
    assert text.startswith(FSTAB)
    assert text.endswith('# persistent_volumes.docker: db\nUUID=abcd /srv/db ext4 defaults,nofail 0 2\n')
    tab = host.Fstab(str(path))
    assert tab.get('/srv/db') == entry
    tab.set('db', entry)
    assert not tab.changed                        # same entry: no write
    changed = host.FstabEntry('UUID=abcd', '/srv/db', 'ext4', 'defaults', 0, 2)
    tab.set('db', changed)
    assert tab.changed and tab.get('/srv/db') == changed
    assert tab.remove('/srv/db')
    tab.write()
    assert path.read_text() == FSTAB              # marker comment removed with its line
    assert not host.Fstab(str(path)).remove('/srv/db')


def test_fstab_short_lines_default_fields(tmp_path):
    path = tmp_path / 'fstab'
    path.write_text('/dev/sdb1 /data ext4\n')
    assert host.Fstab(str(path)).get('/data').render() == '/dev/sdb1 /data ext4 defaults 0 0'


def _ext4_image(tmp_path, blocks, log_bs=2, incompat=0x2C2):
    u = uuid.uuid4()
    sb = bytearray(1024)
    struct.pack_into('<I', sb, 4, blocks)
    struct.pack_into('<I', sb, 24, log_bs)
    sb[0x38:0x3A] = b'\x53\xef'
    struct.pack_into('<I', sb, 0x60, incompat)
    sb[0x68:0x78] = u.bytes
    path = tmp_path / 'ext4.img'
    path.write_bytes(b'\0' * 1024 + bytes(sb) + b'\0' * 2048)
    return str(path), str(u)


def test_read_superblock_ext4(tmp_path):
    path, u = _ext4_image(tmp_path, 16384)
    assert host.read_superblock(path) == ('ext4', u, 16384 * 4096)


def test_read_superblock_xfs(tmp_path):
    u = uuid.uuid4()
    head = bytearray(4096)
    head[0:4] = b'XFSB'
    struct.pack_into('>I', head, 4, 4096)
    struct.pack_into('>Q', head, 8, 81920)
    head[32:48] = u.bytes
    path = tmp_path / 'xfs.img'
    path.write_bytes(bytes(head))
    assert host.read_superblock(str(path)) == ('xfs', str(u), 81920 * 4096)


def test_read_superblock_unknown(tmp_path):
    path = tmp_path / 'zero.img'
    path.write_bytes(b'\0' * 8192)
    assert host.read_superblock(str(path)) is None


@pytest.mark.parametrize('info,text', [
    ({'PTTYPE': 'gpt'}, 'a gpt partition table'),
    ({'TYPE': 'crypto_LUKS'}, 'a LUKS header'),
    ({'TYPE': 'swap'}, 'a swap signature'),
    ({'TYPE': 'btrfs'}, 'a btrfs filesystem'),
])
def test_describe_signature(info, text):
    assert host.describe_signature(info) == text


def test_parse_mode():
    assert host.parse_mode('0750') == 0o750
    assert host.parse_mode(None) is None
    with pytest.raises(common.PVError):
        host.parse_mode('rwx')
    with pytest.raises(common.PVError):
        host.parse_mode('17777')


def test_volume_spec_defaults_and_errors():
    spec = VolumeSpec.from_dict({'name': 'db', 'size': '1GiB'}, root='/r')
    assert (spec.backend, spec.fstype, spec.mount_path, spec.state) == ('loop', 'ext4', '/r/mounts/db', 'present')
    assert spec.mount_options == ['defaults', 'nofail'] and spec.docker_volume and spec.check_users
    assert VolumeSpec.from_dict({'name': 'db', 'state': 'absent'}).size is None
    for raw, message in [({'name': 'db'}, 'size is required'),
                         ({'name': 'db', 'size': '1G', 'state': 'gone'}, 'state must be one of'),
                         ({'name': 'db', 'size': '1G', 'fstype': 'zfs'}, 'not supported'),
                         ({'name': 'db', 'size': '200MiB', 'fstype': 'xfs'}, 'at least 300MiB'),
                         ({'name': 'db', 'size': '1G', 'mount_options': ['a b']}, 'invalid'),
                         ({'name': 'db', 'size': '1G', 'labels': ['x']}, 'labels must be a dict')]:
        with pytest.raises(common.PVError, match=message):
            VolumeSpec.from_dict(raw)


def test_fstab_concurrent_writers_lose_nothing(tmp_path):
    path = tmp_path / 'fstab'
    path.write_text(FSTAB)
    first, second = host.Fstab(str(path)), host.Fstab(str(path))   # both read the same old file
    first.set('a', host.FstabEntry('UUID=a', '/srv/a', 'ext4', 'defaults', 0, 2))
    second.set('b', host.FstabEntry('UUID=b', '/srv/b', 'xfs', 'defaults', 0, 0))
    assert first.write() and second.write()
    with open(str(path), 'a') as handle:                             # a foreign tool appends a line
        handle.write('/dev/sdz1 /srv/z ext4 defaults 0 0\n')
    first.remove('/srv/a')
    assert first.write()
    final = host.Fstab(str(path))
    assert final.get('/srv/a') is None
    assert final.get('/srv/b').spec == 'UUID=b' and final.get('/srv/z').spec == '/dev/sdz1'
    assert final.render().startswith(FSTAB)
