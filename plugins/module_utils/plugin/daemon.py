# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Docker volume-plugin daemon's process: configuration, socket, signals, pidfile.

Run it as::

    PYTHONPATH=<dir holding ansible_collections/> \\
    python -m ansible_collections.persistent_volumes.docker.plugins.module_utils.plugin.daemon \\
        --config /etc/persistent-volumes/plugin-pv-loop.json [--pidfile FILE] [--check-config]

Rule: process only. It loads the configuration (:mod:`.config`), builds the driver
(:mod:`.driver`: what each call does), checks references against Docker, listens
(:mod:`.server`: HTTP over ``/run/docker/plugins/<driver>.sock``, dispatch from the
:mod:`.protocol` table), runs the background reference check, and on SIGTERM/SIGINT
stops listening, runs the pending releases, closes the idle cloud connections (kept between
calls by :mod:`..connpool`, switched on here) and removes socket and pidfile. One log
line per operation goes to stderr (journald under systemd); credentials from the
configuration are never logged or returned.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import argparse
import os
import signal
import sys
import threading
import time

from .. import connpool
from ..common import PVError, atomic_write
from .config import PluginConfig
from .driver import VolumeDriver
from .server import bind


class LogLine(object):
    """One timestamped, scrubbed line per call to stderr (journald under systemd)."""

    def __init__(self, config, stream=None):
        self.config = config
        self.stream = stream or sys.stderr
        self.lock = threading.Lock()

    def __call__(self, line):
        text = '%s %s: %s\n' % (time.strftime('%Y-%m-%dT%H:%M:%S'), self.config.driver,
                                self.config.scrub(line).replace('\n', ' '))
        with self.lock:
            try:
                self.stream.write(text)
                self.stream.flush()
            except (OSError, IOError, ValueError):
                pass


def main(argv=None):
    parser = argparse.ArgumentParser(prog='pv-volume-plugin', description='Docker volume plugin daemon '
                                     '(persistent_volumes.docker)')
    parser.add_argument('--config', required=True, help='JSON configuration file (mode 0600)')
    parser.add_argument('--check-config', action='store_true', help='validate the configuration and exit')
    parser.add_argument('--pidfile', help='write the daemon pid here once it listens (removed on exit)')
    args = parser.parse_args(argv)
    try:
        config = PluginConfig.load(args.config)
    except PVError as exc:
        sys.stderr.write('pv-volume-plugin: %s\n' % exc)
        return 2
    log_line = LogLine(config)
    if args.check_config:
        log_line('configuration %s is valid (backend %s, socket %s)' % (args.config, config.backend, config.socket))
        return 0
    if config.mode is not None and config.mode & 0o077:
        log_line('warning: %s is readable by others (mode %04o); it should be 0600' % (args.config, config.mode))
    # the daemon keeps idle cloud connections between calls (modules never do: off by default)
    connpool.enable(connpool.IDLE_SECONDS)
    driver = VolumeDriver(config, logger=log_line)
    try:
        driver.start()
        server = bind(config.socket, driver, log_line)
    except PVError as exc:
        log_line('cannot start: %s' % exc)
        driver.close()
        connpool.disable()
        return 1
    stop = threading.Event()

    def _stop(signum, _frame):
        if not stop.is_set():
            stop.set()
            log_line('signal %d: stopping' % signum)
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    verifier = threading.Thread(target=driver.verifier_loop, args=(stop,), daemon=True)
    verifier.start()
    if driver.unverified or not driver.verified_once:
        driver.wake.set()
    if args.pidfile:
        atomic_write(args.pidfile, '%d\n' % os.getpid(), 0o644)
    log_line('listening on %s (backend %s, scope %s, root %s, pid %d%s)'
             % (config.socket, config.backend, driver.scope, config.root, os.getpid(),
                ', fencing %s%s' % (config.fencing, ', fsck_repair' if config.fsck_repair else '')
                if config.fencing else ''))
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        stop.set()
        driver.wake.set()
        server.server_close()
        driver.flush()
        driver.close()
        connpool.disable()        # close the idle cloud connections
        for path in (config.socket, args.pidfile):
            if path:
                try:
                    os.unlink(path)
                except OSError:
                    pass
        log_line('stopped')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
