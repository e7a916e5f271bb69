# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Writes a local Sphinx inventory for the few labels of the Ansible docs that antsibull-docs pages
reference (rule: only real labels of docs.ansible.com with their real page, nothing of ours).

The docs site is built offline (scripts/release-checks.sh): Sphinx cannot download the Ansible
documentation's objects.inv, so every ``:ref:`` into it would be an "undefined label" and
``sphinx-build -n -W`` would fail. This inventory lets those references resolve to their real
pages on docs.ansible.com, while every reference inside our own site is still checked.
A page of a later antsibull-docs that references another external label makes the build fail
naming it: add it here with its page.

Usage: python external_refs.py OUT.inv
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import sys
import zlib

BASE = 'https://docs.ansible.com/projects/ansible/devel/'

# label -> (page and anchor relative to BASE, title)
LABELS = {
    'common_return_values': ('reference_appendices/common_return_values.html#common-return-values',
                             'Return Values'),
    'ansible_configuration_settings': ('reference_appendices/config.html#ansible-configuration-settings',
                                       'Ansible Configuration Settings'),
}


def inventory_bytes(labels=None):
    """objects.inv (version 2) content for the given labels."""
    labels = LABELS if labels is None else labels
    header = (b'# Sphinx inventory version 2\n'
              b'# Project: Ansible\n'
              b'# Version: devel\n'
              b'# The remainder of this file is compressed using zlib.\n')
    lines = []
    for name in sorted(labels):
        uri, title = labels[name]
        lines.append('%s std:label -1 %s %s\n' % (name, uri, title))
    return header + zlib.compress(''.join(lines).encode('utf-8'))


def main(argv):
    if len(argv) != 2:
        sys.stderr.write('usage: external_refs.py OUT.inv\n')
        return 2
    with open(argv[1], 'wb') as f:
        f.write(inventory_bytes())
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
