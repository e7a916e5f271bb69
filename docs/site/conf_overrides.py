# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Settings appended to the conf.py that `antsibull-docs sphinx-init` generates (scripts/release-checks.sh).

Rule: the site builds offline and every link it writes works wherever the site is opened
(a web server's root, a sub-path or file://).
"""

# Sphinx cannot download inventories here: the Ansible docs' labels that antsibull-docs pages
# reference come from a local inventory with their real docs.ansible.com pages
# (tests/release/external_refs.py writes ansible_devel.inv next to this conf.py).
import os

intersphinx_mapping = {
    'ansible_devel': ('https://docs.ansible.com/projects/ansible/devel/',
                      os.path.join(os.path.dirname(os.path.abspath(__file__)), 'ansible_devel.inv')),
}

# _templates/extrabody.html replaces the theme's top bar: its home link was the absolute "/"
# (the root of docs.ansible.com), broken in a copy of the site; ours links this site's index.
templates_path = ['_templates']
html_theme_options = {
    'topbar_links': {},
}
