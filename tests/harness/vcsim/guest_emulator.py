# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The guest side of a simulated vSphere VM, for the integration tests.

The govmomi simulator keeps VMDKs as empty files in real datastore folders and
has no guest. This emulator plays "hypervisor + guest kernel + udev" for one
simulated VM, using only real things on this machine:

* a sysfs-shaped tree (``sys_root``) with one SCSI host per possible controller
  (``class/scsi_host/hostN/{proc_name,scan}`` and a ``device`` link into a PCI
  device path), as the guest kernel would show for PVSCSI (``vmw_pvscsi``) and
  LSI Logic (``mptspi``) controllers. The PCI addresses use the made-up PCI
  domain ``00fe`` so they never clash with a real device of the machine;
* for every disk the simulator says is attached to the VM (polled through the
  vSphere API), the disk's real extent file in the simulator's datastore folder
  (``<name>-flat.vmdk``) is sized to the disk's capacity and attached as a
  loop device, published as
  ``/dev/disk/by-path/pci-<controller PCI address>-scsi-0:0:<unit>:0`` like
  udev does for a SCSI disk. Detaching the disk in vSphere removes the link and
  the loop device; the data stays in the extent file, so it survives a
  detach/reattach, and goes away when vSphere destroys the disk. A capacity
  change (grow) resizes the file and the loop device (``losetup -c``).

``size_delta`` publishes devices of the wrong size (tests of the size check).
The address computation here is independent of the product's code: controller
*k* of a type (by bus number) is the k-th entry of :data:`PCI`.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import subprocess
import threading
import time

from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl

PCI = {
    'pvscsi': ('00fe:03:00.0', '00fe:0b:00.0', '00fe:13:00.0', '00fe:1b:00.0'),
    'lsilogic': ('00fe:02:01.0', '00fe:02:02.0', '00fe:02:03.0', '00fe:02:04.0'),
}
DRIVER = {'pvscsi': 'vmw_pvscsi', 'lsilogic': 'mptspi'}
FIRST_HOST = 40


def _ctype(dev):
    if isinstance(dev, vim.vm.device.ParaVirtualSCSIController):
        return 'pvscsi'
    if isinstance(dev, vim.vm.device.VirtualLsiLogicController):
        return 'lsilogic'
    return None


def _run(cmd):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          check=True).stdout.strip()


class GuestEmulator(object):
    def __init__(self, host, port, user, password, vm_moid, sys_root, dev_root='/dev',
                 folder='persistent-volumes/', size_delta=0, interval=0.2):
        self.conn = dict(host=host, port=int(port), user=user, pwd=password, disableSslCertValidation=True)
        self.vm_moid = vm_moid
        self.sys_root = sys_root
        self.by_path = os.path.join(dev_root, 'disk', 'by-path')
        self.folder = folder
        self.size_delta = size_delta
        self.interval = interval
        self.published = {}        # link -> {'loop', 'flat', 'size'}
        self.errors = []
        self._stop = threading.Event()
        self._thread = None
        self._created_dirs = []
        self.si = None

    # -- fake sysfs ------------------------------------------------------------
    def build_sysfs(self):
        number = FIRST_HOST
        for ctype, addresses in sorted(PCI.items()):
            for pci in addresses:
                host = 'host%d' % number
                devdir = os.path.join(self.sys_root, 'devices', 'pci0000:00', '0000:00:15.0', pci, host)
                os.makedirs(devdir, exist_ok=True)
                hdir = os.path.join(self.sys_root, 'class', 'scsi_host', host)
                os.makedirs(hdir, exist_ok=True)
                with open(os.path.join(hdir, 'proc_name'), 'w') as f:
                    f.write(DRIVER[ctype] + '\n')
                with open(os.path.join(hdir, 'scan'), 'w') as f:
                    f.write('')
                os.symlink(os.path.relpath(devdir, hdir), os.path.join(hdir, 'device'))
                number += 1

    # -- life cycle ------------------------------------------------------------
    def start(self):
        self.build_sysfs()
        path = self.by_path
        missing = []
        while not os.path.isdir(path):
            missing.append(path)
            path = os.path.dirname(path)
        for d in reversed(missing):
            os.mkdir(d)
            self._created_dirs.append(d)
        self.si = SmartConnect(**self.conn)
        self.sync()
        self._thread = threading.Thread(target=self._loop, name='guest-emulator', daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        for link in list(self.published):
            self._unpublish(link)
        if self.si is not None:
            try:
                Disconnect(self.si)
            except Exception:  # pylint: disable=broad-except
                pass
            self.si = None
        for d in reversed(self._created_dirs):
            try:
                os.rmdir(d)
            except OSError:
                pass
        shutil.rmtree(self.sys_root, ignore_errors=True)

    def _loop(self):
        while not self._stop.wait(self.interval):
            try:
                self.sync()
            except Exception as exc:  # pylint: disable=broad-except
                self.errors.append('%s: %s' % (type(exc).__name__, exc))

    # -- the "hypervisor + kernel + udev" step ----------------------------------
    def _datastore_dirs(self, content):
        dirs = {}
        view = content.viewManager.CreateContainerView(content.rootFolder, [vim.Datastore], True)
        try:
            for ds in view.view:
                dirs[ds.name] = ds.summary.url
        finally:
            view.DestroyView()
        return dirs

    def wanted(self):
        """{link: (flat file, size)} for the VM's disks in the watched folder."""
        content = self.si.RetrieveContent()
        vm = vim.VirtualMachine(self.vm_moid, self.si._stub)
        pc = vmodl.query.PropertyCollector
        spec = pc.FilterSpec(objectSet=[pc.ObjectSpec(obj=vm)],
                             propSet=[pc.PropertySpec(type=vim.VirtualMachine, pathSet=['config.hardware.device'])])
        devices = content.propertyCollector.RetrieveContents([spec])[0].propSet[0].val
        ctrls = dict((d.key, d) for d in devices if _ctype(d))
        ranks = {}
        for ctype in PCI:
            buses = sorted(c.busNumber for c in ctrls.values() if _ctype(c) == ctype)
            for rank, bus in enumerate(buses):
                ranks[(ctype, bus)] = rank
        dirs = None
        out = {}
        for dev in devices:
            if not isinstance(dev, vim.vm.device.VirtualDisk) or dev.controllerKey not in ctrls:
                continue
            name = getattr(dev.backing, 'fileName', '') or ''
            if not name.startswith('[') or ']' not in name:
                continue
            ds, rel = name[1:].split(']', 1)
            rel = rel.strip()
            if not rel.startswith(self.folder):
                continue
            ctrl = ctrls[dev.controllerKey]
            ctype = _ctype(ctrl)
            pci = PCI[ctype][ranks[(ctype, ctrl.busNumber)]]
            link = os.path.join(self.by_path, 'pci-%s-scsi-0:0:%d:0' % (pci, dev.unitNumber))
            if dirs is None:
                dirs = self._datastore_dirs(content)
            flat = os.path.join(dirs[ds], rel[:-len('.vmdk')] + '-flat.vmdk')
            size = dev.capacityInBytes or dev.capacityInKB * 1024
            out[link] = (flat, size + self.size_delta)
        return out

    def sync(self):
        want = self.wanted()
        for link in list(self.published):
            if link not in want or want[link][0] != self.published[link]['flat']:
                self._unpublish(link)
        for link, (flat, size) in want.items():
            pub = self.published.get(link)
            if pub is None:
                self._publish(link, flat, size)
            elif pub['size'] != size:
                if os.path.getsize(flat) < size:
                    os.truncate(flat, size)
                _run(['losetup', '--set-capacity', pub['loop']])
                pub['size'] = size

    def _publish(self, link, flat, size):
        if os.path.lexists(link):
            raise RuntimeError('%s exists and is not ours; refusing to replace it' % link)
        if not os.path.exists(flat):
            return          # not created yet
        if os.path.getsize(flat) < size:
            os.truncate(flat, size)
        loop = _run(['losetup', '--find', '--show', flat])
        if os.path.getsize(flat) > size:
            # wrong-size emulation only: show a device smaller than the file
            _run(['losetup', '--detach', loop])
            loop = _run(['losetup', '--find', '--show', '--sizelimit', str(size), flat])
        os.symlink(loop, link)
        self.published[link] = {'loop': loop, 'flat': flat, 'size': size}

    def _unpublish(self, link):
        pub = self.published.pop(link)
        if os.path.islink(link) and os.readlink(link) == pub['loop']:
            os.unlink(link)
        # a loop still mounted is detached by the kernel when unmounted (autoclear)
        subprocess.run(['losetup', '--detach', pub['loop']], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)

    def wait_published(self, count, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.published) >= count:
                return dict(self.published)
            time.sleep(0.05)
        raise AssertionError('guest emulator published %d of %d disks (errors: %s)'
                             % (len(self.published), count, self.errors))
