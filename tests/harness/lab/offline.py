# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What an air-gapped lab host gets from its admin instead of a mirror: Debian packages and
Python wheels, fetched once on the machine (apt-get download / pip download), cached, and
copied into the hosts.

Rule: the lab hosts stay offline (no route out); nothing is fetched from inside a host. This
plays the part of a site's local package mirror / wheel house, which is how the
``volume_plugin`` role is documented to run offline (``pv_plugin_install_dependencies: false``
after the OS packages are there, ``pv_plugin_pip_extra_args: --no-index --find-links <dir>``).

    path = offline.bundle(lab, 'host1', debs=offline.VENV_DEBS, wheels=['openstacksdk>=1.0'])
    offline.provision(lab, 'host1', path)      # /srv/pv-offline/{debs,wheels}; the debs installed

The lab image has no python3-venv (what the role would install with apt): ``VENV_DEBS`` are
those packages, pinned to the host's own Python version.
"""

from __future__ import absolute_import, division, print_function

import glob
import hashlib
import json
import os
import shutil
import sys
import tempfile

import lab as lab_mod  # pylint: disable=import-error

#: deb name pattern -> whose installed version it must have (None: the suite's candidate)
VENV_DEBS = {'{py}-venv': '{py}', 'python3-venv': 'python3', 'python3-pip-whl': None,
             'python3-setuptools-whl': None}
DEST = '/srv/pv-offline'


def _host_versions(lab, host, names):
    out = lab.exec(host, ['dpkg-query', '-W', '-f', '${Package} ${Version}\\n'] + list(names)).stdout
    return dict(line.split(' ', 1) for line in out.splitlines() if ' ' in line)


def bundle(lab, host, debs=None, wheels=(), cache=None):
    """Fetch (once) the debs and wheels ``host`` needs; return the cache folder
    (``debs/*.deb``, ``wheels/*.whl``)."""
    pyminor = lab.exec(host, ['python3', '-c', 'import sys; print(sys.version_info[1])']).stdout.strip()
    py = 'python3.%s' % pyminor
    debs = dict((k.format(py=py), v.format(py=py) if v else None) for k, v in (debs or {}).items())
    versions = _host_versions(lab, host, sorted(set(v for v in debs.values() if v)))
    pins = dict((name, versions.get(of)) for name, of in debs.items())
    key = hashlib.sha256(json.dumps({'debs': pins, 'wheels': sorted(wheels), 'py': py},
                                    sort_keys=True).encode()).hexdigest()[:16]
    folder = os.path.join(cache or lab_mod.CACHE, 'offline', key)
    if os.path.isdir(folder):
        return folder
    os.makedirs(os.path.dirname(folder), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='.tmp-', dir=os.path.dirname(folder))
    try:
        os.makedirs(os.path.join(tmp, 'debs'))
        os.makedirs(os.path.join(tmp, 'wheels'))
        if pins:
            specs = [('%s=%s' % (n, v)) if v else n for n, v in sorted(pins.items())]
            lab_mod.run(['apt-get', 'download'] + specs, cwd=os.path.join(tmp, 'debs'))
        if wheels:
            lab_mod.run([sys.executable, '-m', 'pip', 'download', '--quiet', '--only-binary=:all:',
                         '--python-version', '3.%s' % pyminor, '-d', os.path.join(tmp, 'wheels')] + list(wheels))
        os.rename(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def provision(lab, host, folder, install_debs=True):
    """Copy the bundle to ``DEST`` in ``host`` and install its debs (dpkg -i, no network)."""
    lab.copy_in(host, folder, DEST)
    if install_debs and glob.glob(os.path.join(folder, 'debs', '*.deb')):
        proc = lab.exec(host, ['sh', '-c', 'dpkg -i %s/debs/*.deb' % DEST], check=False)
        if proc.returncode != 0:
            raise RuntimeError('dpkg -i in %s: %s' % (host, (proc.stderr or proc.stdout)[-2000:]))
    return DEST


def pip_args(dest=DEST):
    """``pv_plugin_pip_extra_args`` for a provisioned host."""
    return '--no-index --find-links %s/wheels' % dest

