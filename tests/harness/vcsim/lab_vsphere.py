# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hypervisor + guest kernel + udev emulation for the multi-host lab: each lab host is a VM of
the vSphere simulator (the vSphere counterpart of tests/harness/openstack/lab_hypervisor.py).

Rules: it follows vSphere's view only (the disks of each lab host's VM, polled through the API)
and publishes a disk attached to VM X inside lab host X ONLY, as a SCSI disk shows up in a VMware
guest: ``/dev/disk/by-path/pci-<controller PCI address>-scsi-0:0:<unit>:0``. The controllers'
PCI addresses come from a sysfs-shaped tree it mounts (tmpfs) over ``/sys/class/scsi_host`` inside
each lab host (one SCSI host per possible PVSCSI / LSI Logic controller, the made-up PCI domain
``00fe`` of guest_emulator.py), so the product resolves the address through the host's own sysfs.
The data lives in the disk's real extent file in the simulator's datastore folder
(``<name>-flat.vmdk``): that file plays the SAN, what host A wrote is there when the disk shows up on
host B. Only loop devices this emulator attached (to extent files) are ever detached.

A VM that vSphere reports ``poweredOff`` is a stopped guest: its lab host's container is killed
(dockerd, sshd and its mount namespace go with it), whoever powered it off (:meth:`guest_died`,
or the product's fence_stop through the API); its disks leave it.

    lv = LabVSphere(lab, conn, {'host1': vm_moid, ...}).start()      # polls every 0.3 s
    lv.wait_published(vmdk_path, 'host1')
    lv.guest_died('host1'); ...; lv.guest_rebooted('host1')          # power-cycle emulation
    lv.guest_replaced('host1')                                       # a fresh host instead
    lv.stop()

``conn``: SmartConnect kwargs (host, port, user, pwd). ``events``: (monotonic time,
'publish'/'unpublish'/'killed'/'booted', disk file name or '', host).
"""

from __future__ import absolute_import, division, print_function

import os
import subprocess
import threading
import time

from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl

from guest_emulator import DRIVER, FIRST_HOST, PCI, _ctype  # pylint: disable=import-error

BYPATH = '/dev/disk/by-path'
SCSI_HOST = '/sys/class/scsi_host'


def _losetup(*args):
    return subprocess.run(['losetup'] + list(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=False)


def sysfs_script():
    """Shell that gives a lab host the fake SCSI hosts under /sys/class/scsi_host (idempotent).

    The machine's kernel may have no SCSI class at all, and sysfs takes no new directories: a tmpfs
    with every real /sys/class/<class> bound into it, plus scsi_host, is bound over /sys/class in
    the host's mount namespace (the rest of sysfs stays as it is)."""
    tree = '/run/pvlab-sysclass'
    lines = ['set -e', '[ -e %s/host%d/proc_name ] && exit 0' % (SCSI_HOST, FIRST_HOST),
             'mkdir -p %s' % tree, 'mount -t tmpfs -o size=1m,mode=755 pvlab-sysclass %s' % tree,
             'for d in /sys/class/*; do mkdir %s/"${d##*/}"; mount --rbind "$d" %s/"${d##*/}"; done'
             % (tree, tree),
             'mkdir -p %s/scsi_host' % tree]
    number = FIRST_HOST
    for ctype, addresses in sorted(PCI.items()):
        for pci in addresses:
            host = 'host%d' % number
            rel = '_devices/pci0000:00/0000:00:15.0/%s/%s' % (pci, host)
            lines += ['mkdir -p %s/scsi_host/%s %s/scsi_host/%s' % (tree, rel, tree, host),
                      'echo %s > %s/scsi_host/%s/proc_name' % (DRIVER[ctype], tree, host),
                      ': > %s/scsi_host/%s/scan' % (tree, host),
                      'ln -s ../%s %s/scsi_host/%s/device' % (rel, tree, host)]
            number += 1
    lines.append('mount --rbind %s /sys/class' % tree)
    return '\n'.join(lines)


class LabVSphere(object):
    def __init__(self, lab, conn, vms, folder='persistent-volumes/', interval=0.3):
        self.lab = lab
        self.conn = dict(conn, disableSslCertValidation=True)
        self.vms = dict(vms)                    # lab host name -> VM moid
        self.folder = folder
        self.interval = interval
        self.published = {}                     # (flat file, host) -> {'loop', 'link', 'size'}
        self.events = []
        self.errors = []
        self.down = set()
        self._sysfs = set()
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name='lab-vsphere', daemon=True)
        self.si = None

    # ---------------------------------------------------------------- life cycle
    def start(self):
        self.si = SmartConnect(**self.conn)
        self.sync()
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(30)
        with self._lock:
            for key in list(self.published):
                self._unpublish(*key)
        if self.si is not None:
            try:
                Disconnect(self.si)
            except Exception:  # pylint: disable=broad-except
                pass

    def _loop(self):
        while not self._stop.wait(self.interval):
            try:
                self.sync()
            except Exception as exc:  # pylint: disable=broad-except
                self.errors.append('%s: %r' % (time.strftime('%H:%M:%S'), exc))

    # ---------------------------------------------------------------- vSphere's view -> guests
    def _props(self):
        content = self.si.RetrieveContent()
        pc = vmodl.query.PropertyCollector
        spec = pc.FilterSpec(objectSet=[pc.ObjectSpec(obj=vim.VirtualMachine(m, self.si._stub))
                                        for m in self.vms.values()],
                             propSet=[pc.PropertySpec(type=vim.VirtualMachine,
                                                      pathSet=['config.hardware.device', 'runtime.powerState'])])
        out = {}
        for oc in content.propertyCollector.RetrieveContents([spec]):
            out[oc.obj._moId] = dict((p.name, p.val) for p in oc.propSet or [])
        return content, out

    def _ds_dirs(self, content):
        dirs = {}
        view = content.viewManager.CreateContainerView(content.rootFolder, [vim.Datastore], True)
        try:
            for ds in view.view:
                dirs[ds.name] = ds.summary.url
        finally:
            view.DestroyView()
        return dirs

    def _wanted(self, devices, dirs):
        """{flat file: (link, size)} of one VM's disks in the watched folder."""
        ctrls = dict((d.key, d) for d in devices if _ctype(d))
        ranks = {}
        for ctype in PCI:
            for rank, bus in enumerate(sorted(c.busNumber for c in ctrls.values() if _ctype(c) == ctype)):
                ranks[(ctype, bus)] = rank
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
            link = os.path.join(BYPATH, 'pci-%s-scsi-0:0:%d:0' % (pci, dev.unitNumber))
            flat = os.path.join(dirs[ds], rel[:-len('.vmdk')] + '-flat.vmdk')
            out[flat] = (link, dev.capacityInBytes or dev.capacityInKB * 1024)
        return out

    def sync(self):
        with self._lock:
            content, props = self._props()
            dirs = None
            want = {}
            for host, moid in self.vms.items():
                vm = props.get(moid, {})
                if host not in self.down and str(vm.get('runtime.powerState')) == 'poweredOff':
                    self._kill(host)            # a stopped guest: whoever powered the VM off
                if host in self.down:
                    continue
                if dirs is None:
                    dirs = self._ds_dirs(content)
                for flat, (link, size) in self._wanted(vm.get('config.hardware.device') or [], dirs).items():
                    want[(flat, host)] = (link, size)
            for key in list(self.published):
                if key not in want or want[key][0] != self.published[key]['link']:
                    self._unpublish(*key)
            for key, (link, size) in want.items():
                if key not in self.published:
                    self._publish(key[0], key[1], link, size)

    def _ensure_sysfs(self, host):
        if host in self._sysfs:
            return
        out = self.lab.exec(host, ['sh', '-c', sysfs_script()], check=False)
        if out.returncode != 0:
            raise RuntimeError('fake sysfs in %s: %s' % (host, (out.stderr or out.stdout).strip()))
        self._sysfs.add(host)

    def _publish(self, flat, host, link, size):
        if not os.path.exists(flat):
            return                              # not created yet
        self._ensure_sysfs(host)
        with open(flat, 'ab') as handle:
            if os.fstat(handle.fileno()).st_size < size:
                handle.truncate(size)
        proc = _losetup('--find', '--show', flat)
        if proc.returncode != 0:
            raise RuntimeError('losetup %s: %s' % (flat, proc.stderr.strip()))
        loop = proc.stdout.strip()
        st = os.stat(flat)
        number = int(loop[len('/dev/loop'):])
        script = ('mkdir -p %(dir)s && { [ -b %(loop)s ] || mknod -m 660 %(loop)s b 7 %(n)d; } && '
                  'ln -sfn ../../loop%(n)d %(link)s.tmp && mv -T %(link)s.tmp %(link)s'
                  % dict(dir=BYPATH, loop=loop, n=number, link=link))
        out = self.lab.exec(host, ['sh', '-c', script], check=False)
        if out.returncode != 0:
            _losetup('-d', loop)
            raise RuntimeError('publish %s in %s: %s' % (flat, host, (out.stderr or out.stdout).strip()))
        ident = (st.st_ino, '%d:%d' % (os.major(st.st_dev), os.minor(st.st_dev)))
        self.published[(flat, host)] = {'loop': loop, 'link': link, 'size': size, 'ident': ident}
        self.events.append((time.monotonic(), 'publish', os.path.basename(flat), host))

    def _unpublish(self, flat, host):
        item = self.published.pop((flat, host))
        if host not in self.down:
            self.lab.exec(host, ['sh', '-c', '[ "$(readlink %s)" = "../../%s" ] && rm -f %s || true'
                                 % (item['link'], os.path.basename(item['loop']), item['link'])], check=False)
        # only our own loop device, still over this extent file (matched by inode and device: the file
        # may be gone already, when vSphere destroyed the disk); a mounted one is freed at its unmount
        out = _losetup('--list', '--noheadings', '-O', 'BACK-INO,BACK-MAJ:MIN', item['loop']).stdout.split()
        if len(out) == 2 and (int(out[0]), out[1]) == item['ident']:
            _losetup('-d', item['loop'])
        self.events.append((time.monotonic(), 'unpublish', os.path.basename(flat), host))

    def _kill(self, host):
        self.down.add(host)
        self._sysfs.discard(host)
        container = [h for h in self.lab.hosts if h['name'] == host][0]['container']
        self.lab.docker('kill', container, check=False)
        self.events.append((time.monotonic(), 'killed', '', host))

    # ---------------------------------------------------------------- for the tests
    def vm(self, host):
        return vim.VirtualMachine(self.vms[host], self.si._stub)

    def power_state(self, host):
        return str(self._props()[1][self.vms[host]].get('runtime.powerState'))

    def where(self, flat_name):
        with self._lock:
            return sorted(h for (f, h) in self.published if os.path.basename(f) == flat_name)

    def wait_published(self, flat_name, host, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if host in self.where(flat_name):
                return
            time.sleep(0.05)
        raise AssertionError('%s not published in %s after %ss (errors: %s)'
                             % (flat_name, host, timeout, self.errors[-3:]))

    def _wait_task(self, task):
        while task.info.state not in ('success', 'error'):
            time.sleep(0.05)
        if task.info.state == 'error':
            raise RuntimeError('task failed: %s' % task.info.error)

    def kill_guest(self, host):
        """Host ``host``'s guest dies but vSphere does not know yet (its VM stays poweredOn): its
        container is killed; :meth:`guest_died` is the hypervisor's report that follows."""
        with self._lock:
            if host not in self.down:
                self._kill(host)

    def guest_died(self, host):
        """Host ``host`` dies as a guest does: its container is killed and vSphere reports its VM
        poweredOff (as the hypervisor does when the guest is gone)."""
        with self._lock:
            if host not in self.down:
                self._kill(host)
            if self.power_state(host) != 'poweredOff':
                self._wait_task(self.vm(host).PowerOffVM_Task())
            self.sync()

    def guest_rebooted(self, host, timeout=120):
        """Host ``host`` comes back: its VM powered on, then the SAME container started again (its
        rootfs and /etc/fstab as they were; /dev, /run and dockerd fresh: a reboot whose boot runs
        ``mount -a``, with the other hosts' loop devices hidden, see lab-init). The disks attached to
        its VM are published once it has booted. Returns the boot log lines of lab-init."""
        with self._lock:
            if self.power_state(host) != 'poweredOn':
                self._wait_task(self.vm(host).PowerOnVM_Task())
            container = [h for h in self.lab.hosts if h['name'] == host][0]['container']
            since = self.lab.docker('inspect', '-f', '{{.State.FinishedAt}}', container).stdout.strip()
            self.lab.docker('start', container)
            deadline = time.monotonic() + timeout
            logs = ''
            while time.monotonic() < deadline:
                proc = self.lab.docker('logs', '--since', since, container, check=False, quiet=True)
                logs = proc.stdout + proc.stderr
                if 'lab-init: READY' in logs or 'lab-init: ERROR' in logs:
                    break
                time.sleep(0.2)
            if 'lab-init: READY' not in logs:
                raise AssertionError('lab host %s did not boot again:\n%s' % (host, logs[-3000:]))
            self.down.discard(host)
            self.events.append((time.monotonic(), 'booted', '', host))
            self.sync()
        return [line for line in logs.splitlines() if line.startswith('lab-init:')]

    def guest_replaced(self, host):
        """Bring ``host`` back as a fresh lab host and its VM poweredOn (test clean-up)."""
        with self._lock:
            self.lab.reset_host(host)
            if self.power_state(host) != 'poweredOn':
                self._wait_task(self.vm(host).PowerOnVM_Task())
            self.down.discard(host)
            self.sync()
