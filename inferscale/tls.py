"""TLS and mutual TLS between the services and for clients, switched on by settings.

``INFERSCALE_TLS_CERT_FILE`` and ``INFERSCALE_TLS_KEY_FILE`` (PEM) turn TLS on: every service
serves with that certificate and presents it as its client certificate to its peers.
``INFERSCALE_TLS_CA_FILE`` is the CA that signs the peers' certificates (servers' for clients;
clients' for servers under mutual TLS). ``INFERSCALE_TLS_CLIENT_AUTH=on`` makes every server
require and verify a client certificate (mutual TLS). The connection to Triton is not covered:
Triton has TLS settings of its own.
"""

from __future__ import annotations

import functools
import os
import pathlib
from collections.abc import Mapping
from dataclasses import dataclass

import grpc

from inferscale.settings import SettingError


@dataclass(frozen=True)
class TlsSettings:
    """The PEM bytes of this service's certificate, key and trusted CA, and whether servers require client certificates."""

    certificate: bytes
    private_key: bytes
    ca: bytes | None
    require_client_auth: bool

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> TlsSettings | None:
        """The settings, or None when TLS is off; raises SettingError naming a variable that is wrong."""
        cert, key = environ.get("INFERSCALE_TLS_CERT_FILE", "").strip(), environ.get("INFERSCALE_TLS_KEY_FILE", "").strip()
        ca = environ.get("INFERSCALE_TLS_CA_FILE", "").strip()
        client_auth = environ.get("INFERSCALE_TLS_CLIENT_AUTH", "off").strip().lower()
        if client_auth not in ("on", "off"):
            raise SettingError(f"INFERSCALE_TLS_CLIENT_AUTH={client_auth!r} is neither 'on' nor 'off'")
        if not cert and not key:
            if client_auth == "on" or ca:
                raise SettingError("INFERSCALE_TLS_CA_FILE and INFERSCALE_TLS_CLIENT_AUTH need INFERSCALE_TLS_CERT_FILE and _KEY_FILE")
            return None
        if not (cert and key):
            raise SettingError("INFERSCALE_TLS_CERT_FILE and INFERSCALE_TLS_KEY_FILE must be set together")
        if client_auth == "on" and not ca:
            raise SettingError("INFERSCALE_TLS_CLIENT_AUTH=on needs INFERSCALE_TLS_CA_FILE to verify client certificates")

        def read(name: str, path: str) -> bytes:
            try:
                return pathlib.Path(path).read_bytes()
            except OSError as error:
                raise SettingError(f"{name}={path!r} cannot be read: {error.strerror}") from None

        return cls(
            certificate=read("INFERSCALE_TLS_CERT_FILE", cert),
            private_key=read("INFERSCALE_TLS_KEY_FILE", key),
            ca=read("INFERSCALE_TLS_CA_FILE", ca) if ca else None,
            require_client_auth=client_auth == "on",
        )

    def server_credentials(self) -> grpc.ServerCredentials:
        """What a server listens with."""
        return grpc.ssl_server_credentials(
            [(self.private_key, self.certificate)], root_certificates=self.ca, require_client_auth=self.require_client_auth
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """What a client connects with: it verifies the server against the CA and presents this certificate."""
        return grpc.ssl_channel_credentials(root_certificates=self.ca, private_key=self.private_key, certificate_chain=self.certificate)


@functools.cache
def process_tls() -> TlsSettings | None:
    """This process's settings, read once."""
    return TlsSettings.from_env()
