# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One connection spec per cloud: the cinder_*/vsphere_* modules and the cinder/vsphere dicts of
``volume`` accept the same options and aliases (checked through Ansible's own argument validation),
with the same types, defaults, choices and environment fallbacks."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.persistent_volumes.docker.plugins.modules import cinder_attachment, cinder_volume
from ansible_collections.persistent_volumes.docker.plugins.modules import volume, vsphere_disk, vsphere_fcd
from ansible_collections.persistent_volumes.docker.plugins.module_utils.openstack import spec as osspec
from ansible_collections.persistent_volumes.docker.plugins.module_utils.vmware import spec as vspec

SAMPLE = {'str': 'x', 'path': '/x', 'int': 5, 'bool': False, 'dict': {'k': 'v'}, 'raw': 'x'}
SHAPE = ('type', 'aliases', 'default', 'choices', 'no_log', 'fallback')

CINDER_MODULES = (cinder_volume.CinderVolumeModule, cinder_attachment.CinderAttachmentModule)
VSPHERE_MODULES = (vsphere_disk.VSphereDiskModule, vsphere_fcd.VSphereFcdModule)


def sample(opt):
    return (opt.get('choices') or [SAMPLE[opt.get('type', 'str')]])[-1]


def names(spec):
    for name, opt in sorted(spec.items()):
        yield name, name, opt
        for alias in opt.get('aliases') or ():
            yield name, alias, opt


def shape(opt):
    return dict((k, opt.get(k)) for k in SHAPE if opt.get(k) not in (None, False, []))


def dict_option(name):
    return volume.VolumeModule.argument_spec[name]['options']


def accepted_by_volume(dict_name, key, value):
    validator = ArgumentSpecValidator(volume.VolumeModule.argument_spec)
    result = validator.validate({'name': 'v', dict_name: {key: value}})
    return [str(e) for e in result.errors.errors]


def accepted_by_module(module_cls, key, value):
    validator = ArgumentSpecValidator(module_cls.argument_spec)
    return validator.validate({key: value}).unsupported_parameters


@pytest.mark.parametrize('module_cls,dict_name,connection', [
    (CINDER_MODULES[0], 'cinder', osspec.connection_spec()),
    (CINDER_MODULES[1], 'cinder', osspec.connection_spec()),
    (VSPHERE_MODULES[0], 'vsphere', vspec.connection_spec()),
    (VSPHERE_MODULES[1], 'vsphere', vspec.connection_spec()),
])
def test_every_connection_option_and_alias_of_a_module_is_accepted_by_volume(module_cls, dict_name, connection):
    for name, key, opt in names(connection):
        assert name in module_cls.argument_spec, (module_cls.__name__, name)
        errors = accepted_by_volume(dict_name, key, sample(module_cls.argument_spec[name]))
        assert not errors, (dict_name, key, errors)


@pytest.mark.parametrize('dict_name,modules', [('cinder', CINDER_MODULES), ('vsphere', VSPHERE_MODULES)])
def test_every_option_and_alias_of_the_volume_dict_is_accepted_by_a_module(dict_name, modules):
    for name, key, opt in names(dict_option(dict_name)):
        takers = [m for m in modules if not accepted_by_module(m, key, sample(opt))]
        assert takers, (dict_name, key)


@pytest.mark.parametrize('dict_name,modules', [('cinder', CINDER_MODULES), ('vsphere', VSPHERE_MODULES)])
def test_same_types_defaults_choices_and_fallbacks(dict_name, modules):
    for name, opt in dict_option(dict_name).items():
        for module_cls in modules:
            theirs = module_cls.argument_spec.get(name)
            if theirs is None:
                continue
            if module_cls is vsphere_fcd.VSphereFcdModule and name not in vspec.connection_spec():
                continue        # fcd's own datacenter/datastore/provisioning/vm_* mean the same, shapes may differ
            assert shape(theirs) == shape(opt), (module_cls.__name__, name)


def test_cinder_verify_false_is_accepted_by_volume_as_by_cinder_volume():
    """The drift of issue 9: ``cinder: {verify: false}`` was refused by volume."""
    assert not accepted_by_volume('cinder', 'verify', False)
    assert not accepted_by_module(cinder_volume.CinderVolumeModule, 'verify', False)


def test_vsphere_dict_has_the_env_fallbacks_and_port_443(monkeypatch):
    monkeypatch.setenv('VMWARE_HOST', 'vc.example')
    monkeypatch.setenv('VMWARE_PORT', '8443')
    result = ArgumentSpecValidator(volume.VolumeModule.argument_spec).validate({'name': 'v', 'vsphere': {}})
    assert not result.errors.errors, [str(e) for e in result.errors.errors]
    got = result.validated_parameters['vsphere']
    assert got['hostname'] == 'vc.example' and got['port'] == 8443
    monkeypatch.delenv('VMWARE_PORT')
    result = ArgumentSpecValidator(vsphere_disk.VSphereDiskModule.argument_spec).validate(
        {'vm_name': 'x', 'disk_name': 'd', 'datastore': 'ds'})
    assert result.validated_parameters['port'] == 443


def test_sdk_log_options():
    spec = osspec.connection_spec()
    assert spec['sdk_log_level'] == dict(type='str', default='INFO', choices=['INFO', 'DEBUG'])
    assert spec['sdk_log_path'] == dict(type='str')


def test_vmware_auth_spec_shapes():
    spec = vspec.connection_spec()
    assert spec['password']['no_log'] is True and 'fallback' not in spec['hostname']
    marker = object()
    spec = vspec.connection_spec(marker)
    assert spec['hostname']['fallback'] == (marker, ['VMWARE_HOST'])
    assert spec['validate_certs']['fallback'] == (marker, ['VMWARE_VALIDATE_CERTS'])
