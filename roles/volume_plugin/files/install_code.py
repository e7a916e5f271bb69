# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Installs the plugin daemon's code in one step (run by tasks/present.yml as ``python -c``).

usage: python -c "<this file>" CODE_DIR STAMP HASH check|apply

stdin: base64 of a JSON object {relative path: text} (the collection's module_utils files,
e.g. ``common.py``, ``core/engine.py``). Makes CODE_DIR hold exactly those ``*.py`` files: writes each one whose content, owner
(root) or mode (0644) differs (atomically: a temp file renamed over it), removes every
other ``*.py``/``*.pyc`` below CODE_DIR (what an older version left behind, __pycache__
included), then writes HASH to STAMP. ``check`` only reports. Prints JSON:
{"changed": bool, "written": [names], "removed": [paths]}.
"""

import base64
import json
import os
import sys
import tempfile

MODE = 0o644


def needs_write(path, text):
    try:
        st = os.stat(path)
        with open(path, 'rb') as handle:
            current = handle.read()
    except OSError:
        return True
    return (current != text.encode('utf-8') or (st.st_mode & 0o7777) != MODE
            or (os.geteuid() == 0 and (st.st_uid, st.st_gid) != (0, 0)))


def write(path, text):
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        os.makedirs(parent, 0o755)
    fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, 'wb') as handle:
            handle.write(text.encode('utf-8'))
        os.chmod(tmp, MODE)
        if os.geteuid() == 0:
            os.chown(tmp, 0, 0)
        os.rename(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def stale(code_dir, wanted):
    for top, dummy, names in os.walk(code_dir):
        for name in names:
            path = os.path.join(top, name)
            if name.endswith(('.py', '.pyc')) and os.path.relpath(path, code_dir) not in wanted:
                yield path


def check_names(files):
    for name in files:
        parts = name.split('/')
        if name.startswith('/') or '..' in parts or not name.endswith('.py'):
            raise SystemExit('install_code: refusing file name %r' % name)


def main(argv):
    code_dir, stamp, code_hash, mode = argv
    check = mode == 'check'
    files = json.loads(base64.b64decode(sys.stdin.read().strip()).decode('utf-8'))
    check_names(files)
    written = sorted(name for name, text in files.items() if needs_write(os.path.join(code_dir, name), text))
    removed = sorted(stale(code_dir, files))
    if not check:
        if not os.path.isdir(code_dir):
            os.makedirs(code_dir, 0o755)
        for name in written:
            write(os.path.join(code_dir, name), files[name])
        for path in removed:
            os.unlink(path)
        for top, dirs, names in os.walk(code_dir, topdown=False):   # folders an older layout left empty
            if top != code_dir and not os.listdir(top):
                os.rmdir(top)
        write(stamp, code_hash + '\n')
    print(json.dumps({'changed': bool(written or removed), 'written': written, 'removed': removed}))


if __name__ == '__main__':
    main(sys.argv[1:])
