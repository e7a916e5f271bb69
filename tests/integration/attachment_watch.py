# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One poller of "where is this storage attached" for the lab tests (fleet and Swarm), with a
reader per backend:

* :func:`cinder_reader` ``(volume_ids)``: Nova server ids each Cinder volume is attached to (own
  SDK connection);
* :func:`vsphere_reader` ``(vcsim, vmdk_paths)``: names of the VMs each VMDK is attached to (own
  vSphere session).

    with AttachmentWatch(cinder_reader([vol_id])) as watch:
        ...                                  # move, drain, kill
    assert watch.max_attached == 1           # never two at once
    watch.seen[vol_id]                       # the sequence of attachment sets, e.g. [(a,), (), (b,)]

A reader is a context manager: ``with reader as read: read() -> {key: tuple of holders}``. The
watch polls every ``interval`` seconds in a thread; a failed read is kept in ``errors`` (the
poll goes on).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import threading


class AttachmentWatch(object):
    def __init__(self, reader, interval=0.1):
        self.reader = reader
        self.interval = interval
        self.max_attached = 0
        self.seen = {}
        self.polls = 0
        self.errors = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name='attachment-watch', daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(30)

    def only(self):
        """The sequence seen for the one key watched."""
        assert len(self.seen) == 1, sorted(self.seen)
        return list(self.seen.values())[0]

    def _run(self):
        with self.reader as read:
            while not self._stop.is_set():
                try:
                    now = read()
                except Exception as exc:  # pylint: disable=broad-except
                    self.errors.append(repr(exc))
                    self._stop.wait(self.interval)
                    continue
                for key, holders in now.items():
                    holders = tuple(sorted(holders))
                    self.max_attached = max(self.max_attached, len(holders))
                    seq = self.seen.setdefault(key, [])
                    if not seq or seq[-1] != holders:
                        seq.append(holders)
                self.polls += 1
                self._stop.wait(self.interval)


@contextlib.contextmanager
def cinder_reader(volume_ids):
    import cinder_fixtures as _cinder  # pylint: disable=import-error
    conn = _cinder.connect()
    try:
        def read():
            return dict((vid, [a['server_id'] for a in conn.block_storage.get_volume(vid).attachments or []])
                        for vid in volume_ids)
        yield read
    finally:
        conn.close()


@contextlib.contextmanager
def vsphere_reader(vcsim, paths):
    from pyVmomi import vim
    from ansible_collections.persistent_volumes.docker.plugins.module_utils.vmware import client as vc
    keys = ('hostname', 'port', 'username', 'password', 'validate_certs')
    client = vc.VSphere(dict((k, vcsim[k]) for k in keys)).connect()
    try:
        def read():
            now = dict((p, []) for p in paths)
            for _vm, props in client.all_props(vim.VirtualMachine, ['name', 'config.hardware.device']):
                for dev in props.get('config.hardware.device') or []:
                    name = getattr(getattr(dev, 'backing', None), 'fileName', None)
                    if isinstance(dev, vim.vm.device.VirtualDisk) and name in now:
                        now[name].append(props['name'])
            return now
        yield read
    finally:
        client.close()
