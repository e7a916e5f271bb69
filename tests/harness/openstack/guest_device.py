# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Publish what a KVM guest sees for an attached Cinder volume, on this machine.

Nova's fake virt driver attaches nothing. A real guest gets a virtio disk whose
serial is the volume id cut to 20 characters, shown by udev as
``/dev/disk/by-id/virtio-<id[:20]>``. This helper plays the hypervisor + udev:
a sparse file of the volume's size on a loop device, linked under that name
(``mkdir -p /dev/disk/by-id``; there is no udev here).

    guest_device.py publish VOLUME_ID SIZE_BYTES [--name virtio-<id20>] [--dir STATE_DIR]
    guest_device.py resize VOLUME_ID SIZE_BYTES      # grow the backing file + losetup -c
    guest_device.py unpublish VOLUME_ID [--keep-image]  # remove the link, detach the loop, delete the file
    guest_device.py list

Used by the integration tests (importable: publish/unpublish/resize).
"""

import argparse
import json
import os
import subprocess
import sys

BYID = os.environ.get('PV_GUEST_BYID', '/dev/disk/by-id')
STATE_DIR = os.environ.get('PV_GUEST_DIR') or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', '.state', 'openstack', 'guest')


def _registry(state_dir):
    return os.path.join(state_dir, 'devices.json')


def _load(state_dir):
    try:
        with open(_registry(state_dir)) as handle:
            return json.load(handle)
    except (IOError, OSError, ValueError):
        return {}


def _save(state_dir, data):
    os.makedirs(state_dir, exist_ok=True)
    tmp = _registry(state_dir) + '.tmp'
    with open(tmp, 'w') as handle:
        json.dump(data, handle, indent=1)
    os.rename(tmp, _registry(state_dir))


def link_name(volume_id, kind='virtio'):
    if kind == 'virtio':
        return 'virtio-%s' % volume_id[:20]
    if kind == 'scsi':
        return 'scsi-0QEMU_QEMU_HARDDISK_%s' % volume_id[:20]
    if kind == 'wwn':
        return 'wwn-0x%s' % volume_id.replace('-', '')
    raise ValueError(kind)


def publish(volume_id, size, name=None, state_dir=STATE_DIR, byid=BYID):
    """Create the backing file + loop device + by-id link; returns (link, loop device)."""
    data = _load(state_dir)
    name = name or link_name(volume_id)
    key = '%s:%s' % (volume_id, name)
    os.makedirs(state_dir, exist_ok=True)
    os.makedirs(byid, exist_ok=True)
    image = os.path.join(state_dir, '%s.img' % name)
    if key in data and data[key]['loop'] and os.path.exists(data[key]['loop']) \
            and os.path.islink(data[key]['link']):
        return data[key]['link'], data[key]['loop']
    with open(image, 'ab') as handle:
        handle.truncate(size)
    loop = subprocess.run(['losetup', '--find', '--show', image], check=True, stdout=subprocess.PIPE,
                          universal_newlines=True).stdout.strip()
    link = os.path.join(byid, name)
    if os.path.lexists(link):
        os.unlink(link)
    os.symlink(os.path.relpath(loop, byid), link)
    data[key] = {'volume_id': volume_id, 'link': link, 'loop': loop, 'image': image, 'size': size}
    _save(state_dir, data)
    return link, loop


def resize(volume_id, size, state_dir=STATE_DIR):
    data = _load(state_dir)
    for item in data.values():
        if item['volume_id'] == volume_id:
            with open(item['image'], 'ab') as handle:
                handle.truncate(size)
            subprocess.run(['losetup', '-c', item['loop']], check=True)
            item['size'] = size
    _save(state_dir, data)


def unpublish(volume_id=None, state_dir=STATE_DIR, keep_image=False):
    """Remove what publish made for ``volume_id`` (all when None). Never raises.

    ``keep_image``: keep the backing file (a detach: the volume's data stays in "Cinder",
    and the next publish of the same volume shows the same data)."""
    data = _load(state_dir)
    errors = []
    for key in list(data):
        item = data[key]
        if volume_id is not None and item['volume_id'] != volume_id:
            continue
        try:
            if os.path.islink(item['link']):
                os.unlink(item['link'])
            out = subprocess.run(['losetup', '-j', item['image']], stdout=subprocess.PIPE,
                                 universal_newlines=True, check=False).stdout
            for line in out.splitlines():
                dev = line.split(':', 1)[0]
                subprocess.run(['losetup', '-d', dev], stderr=subprocess.PIPE, check=False)
            if keep_image:
                item['loop'] = ''
                continue
            if os.path.exists(item['image']):
                os.unlink(item['image'])
            del data[key]
        except Exception as exc:  # pylint: disable=broad-except
            errors.append('%s: %s' % (key, exc))
    _save(state_dir, data)
    return errors


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest='cmd', required=True)
    p = sub.add_parser('publish')
    p.add_argument('volume_id')
    p.add_argument('size', type=int)
    p.add_argument('--name')
    p = sub.add_parser('resize')
    p.add_argument('volume_id')
    p.add_argument('size', type=int)
    p = sub.add_parser('unpublish')
    p.add_argument('volume_id', nargs='?')
    p.add_argument('--keep-image', action='store_true')
    sub.add_parser('list')
    args = parser.parse_args()
    if args.cmd == 'publish':
        print('%s -> %s' % publish(args.volume_id, args.size, args.name))
    elif args.cmd == 'resize':
        resize(args.volume_id, args.size)
    elif args.cmd == 'unpublish':
        errors = unpublish(args.volume_id, keep_image=args.keep_image)
        for err in errors:
            sys.stderr.write(err + '\n')
        return 1 if errors else 0
    else:
        print(json.dumps(_load(STATE_DIR), indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
