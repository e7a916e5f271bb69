# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""backends/registry.py is the single source of backend names: everything that lists them agrees."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest
import yaml

from ansible_collections.persistent_volumes.docker.plugins.module_utils.backends import registry
from ansible_collections.persistent_volumes.docker.plugins.module_utils.common import PVError
from ansible_collections.persistent_volumes.docker.plugins.module_utils.plugin import config as plugin_config

REPO = os.environ.get('PV_REPO_ROOT') or os.path.abspath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), *(['..'] * 5)))


def _load(*parts):
    with open(os.path.join(REPO, *parts)) as handle:
        return yaml.safe_load(handle)


def test_volumes_role_backend_choices_are_the_registry():
    spec = _load('roles', 'volumes', 'meta', 'argument_specs.yml')
    volume = spec['argument_specs']['main']['options']['pv_volumes']['options']['backend']
    assert volume['choices'] == registry.names()


def test_volume_plugin_role_backend_choices_are_the_plugin_backends():
    spec = _load('roles', 'volume_plugin', 'meta', 'argument_specs.yml')
    backend = spec['argument_specs']['main']['options']['pv_plugin_backend']
    assert backend['choices'] == registry.names('plugin')
    assert list(plugin_config.BACKENDS) == registry.names('plugin')


def test_volume_module_documents_the_registry_names():
    path = os.path.join(REPO, 'plugins', 'modules', 'volume.py')
    with open(path) as handle:
        text = handle.read()
    doc = yaml.safe_load(text.split("DOCUMENTATION = r'''", 1)[1].split("'''", 1)[0])
    assert doc['options']['backend']['choices'] == registry.names()


@pytest.mark.parametrize('name', registry.names())
def test_each_implementation_matches_its_entry(name):
    try:
        cls = registry.backend_class(name)
    except ImportError as exc:          # pragma: no cover - an optional SDK missing
        pytest.skip('backend %s needs %s' % (name, exc))
    assert cls.name == name
    assert cls.scope == registry.scope(name)
    assert (registry.scope(name) == 'global') == registry.info(name).can('move')


def test_unknown_backend_names_the_known_ones():
    with pytest.raises(PVError, match='unknown backend .*nfs.*known: loop, cinder, vsphere, device'):
        registry.get_backend('nfs')
