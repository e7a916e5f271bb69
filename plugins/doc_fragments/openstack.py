# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # OpenStack connection options (the same names as openstack.cloud's modules)
    DOCUMENTATION = r'''
options:
  cloud:
    description:
      - Named cloud from C(clouds.yaml) (looked up in C(./clouds.yaml), C(~/.config/openstack/clouds.yaml),
        C(/etc/openstack/clouds.yaml) and E(OS_CLIENT_CONFIG_FILE)), or a dict with a whole cloud
        configuration.
      - Without O(cloud) and O(auth), the E(OS_CLOUD) or E(OS_AUTH_URL), E(OS_USERNAME), E(OS_PASSWORD),
        E(OS_PROJECT_NAME), ... environment variables are used.
    type: raw
  auth:
    description:
      - Authentication dict (C(auth_url), C(username), C(password), C(project_name), C(user_domain_name),
        C(project_domain_name), or C(token), C(application_credential_id), ... depending on O(auth_type)).
      - Overrides the values of O(cloud).
    type: dict
  auth_type:
    description: Keystone authentication plugin, such as V(password), V(token), V(v3applicationcredential).
    type: str
  region_name:
    description: Region of the cloud.
    type: str
  interface:
    description: Endpoint interface of the service catalog.
    type: str
    choices: [admin, internal, public]
    default: public
    aliases: [endpoint_type]
  validate_certs:
    description: Verify TLS certificates (default from the cloud config, else V(true)).
    type: bool
    aliases: [verify]
  ca_cert:
    description: CA bundle to verify the endpoints' certificates with.
    type: str
    aliases: [cacert]
  client_cert:
    description: Client certificate (PEM) for TLS client authentication.
    type: str
    aliases: [cert]
  client_key:
    description: Key of O(client_cert).
    type: str
    aliases: [key]
  api_timeout:
    description: Timeout in seconds of each API request.
    type: int
  retry_timeout:
    description:
      - For how many seconds API calls answered with HTTP 500/502/503/504, or failing to connect or timing out,
        are retried (exponential backoff from 0.5 s to 5 s) before the task fails.
      - A create that failed that way is looked up by a unique token before it is retried, so a retry never
        makes a second volume.
    type: int
    default: 60
  sdk_log_path:
    description:
      - Path of a file openstacksdk (and keystoneauth) log their requests to, as in openstack.cloud
        (C(openstack.enable_logging(path=...))). Nothing is logged when not set.
    type: str
  sdk_log_level:
    description:
      - Level of the log in O(sdk_log_path). V(DEBUG) adds the HTTP requests and answers, which may contain
        credentials and tokens.
    type: str
    choices: [INFO, DEBUG]
    default: INFO
notes:
  - >-
    The OpenStack calls are made from the host the module runs on: usually the controller
    (C(delegate_to: localhost)) where the credentials are; that host needs the C(openstacksdk) Python package.
  - >-
    The modules of the C(persistent_volumes.docker.openstack) action group take these options from
    C(module_defaults) for C(group/persistent_volumes.docker.openstack).
requirements:
  - openstacksdk >= 1.0
'''
