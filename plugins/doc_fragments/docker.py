# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Docker Engine connection options: the names, aliases and environment variables of
    # community.docker (plugins/module_utils/docker/client.py CONNECTION_SPEC is the spec)
    DOCUMENTATION = r'''
options:
  docker_host:
    description:
      - The URL or Unix socket path of the Docker Engine API, for example V(unix:///run/docker.sock) or
        V(tcp://192.0.2.23:2376). With TLS, V(tcp://) is turned into V(https://).
      - If not set in the task, the environment variable E(DOCKER_HOST) is used, else V(unix:///var/run/docker.sock).
    type: str
    aliases: [docker_url]
  tls:
    description:
      - Secure the connection to the API with TLS without verifying the Docker host's certificate.
        O(validate_certs=true) takes precedence.
      - If not set in the task, the environment variable E(DOCKER_TLS) is used, else V(false).
    type: bool
  validate_certs:
    description:
      - Secure the connection to the API with TLS and verify the Docker host's certificate (against O(ca_path)
        when given).
      - If not set in the task, the environment variable E(DOCKER_TLS_VERIFY) is used, else V(false).
    type: bool
    aliases: [tls_verify]
  ca_path:
    description:
      - CA certificate file to verify the Docker host's certificate with.
      - If not set in the task and the environment variable E(DOCKER_CERT_PATH) is set, C(ca.pem) in that directory.
    type: path
    aliases: [ca_cert, tls_ca_cert, cacert_path]
  client_cert:
    description:
      - The client's TLS certificate file (with O(client_key)).
      - If not set in the task and the environment variable E(DOCKER_CERT_PATH) is set, C(cert.pem) in that directory.
    type: path
    aliases: [tls_client_cert, cert_path]
  client_key:
    description:
      - The client's TLS key file (with O(client_cert)).
      - If not set in the task and the environment variable E(DOCKER_CERT_PATH) is set, C(key.pem) in that directory.
    type: path
    aliases: [tls_client_key, key_path]
  docker_timeout:
    description:
      - Seconds to wait for an answer of the Docker API (community.docker's C(timeout); named so because
        M(persistent_volumes.docker.volume) has its own O(persistent_volumes.docker.volume#module:timeout)).
      - If not set in the task, the environment variable E(DOCKER_TIMEOUT) is used, else V(60).
    type: int
notes:
  - The Docker connection options and their environment variables follow community.docker
    (E(DOCKER_HOST), E(DOCKER_TLS), E(DOCKER_TLS_VERIFY), E(DOCKER_CERT_PATH), E(DOCKER_TIMEOUT)), so the same
    environment serves both collections.
'''
