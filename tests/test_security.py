"""Access: TLS and mutual TLS between all the services, and per-client tokens at the router, on real processes."""

from __future__ import annotations

import pathlib

import grpc
import numpy as np
import pytest

from inferscale.auth import ClientTokens, bearer_metadata
from inferscale.errors import Unauthenticated
from inferscale.models.digits import load_split
from inferscale.settings import SettingError
from inferscale.tensors import from_numpy
from inferscale.tls import TlsSettings
from inferscale.v1 import router_service_pb2, router_service_pb2_grpc
from tests.certificates import make_ca, make_certificate
from tests.conftest import private_repository, private_suite

TOKEN = "s3cret-token-of-client-a"


def test_client_tokens_name_the_caller_and_refuse_the_rest(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"# client token\nclient-a {TOKEN}\nclient-b another-long-token-0001\n")
    tokens = ClientTokens.from_file(str(path))
    assert tokens.authenticate(bearer_metadata(TOKEN)) == "client-a"
    for metadata, message in (([], "needs the metadata"), (bearer_metadata("wrong-token-xxxxxxxx"), "not valid")):
        with pytest.raises(Unauthenticated, match=message) as raised:
            tokens.authenticate(metadata)
        assert TOKEN not in str(raised.value)
    for text, message in (("client-a short\n", "at least 16"), (f"a {TOKEN}\nb {TOKEN}\n", "already given"), ("", "names no client")):
        path.write_text(text)
        with pytest.raises(SettingError, match=message) as raised:
            ClientTokens.from_file(str(path))
        assert TOKEN not in str(raised.value)


def test_tls_settings_must_be_complete(tmp_path: pathlib.Path) -> None:
    assert TlsSettings.from_env({}) is None
    for environ, message in (
        ({"INFERSCALE_TLS_CERT_FILE": "a.pem"}, "set together"),
        ({"INFERSCALE_TLS_CLIENT_AUTH": "on"}, "need INFERSCALE_TLS_CERT_FILE"),
        ({"INFERSCALE_TLS_CERT_FILE": "a", "INFERSCALE_TLS_KEY_FILE": "b", "INFERSCALE_TLS_CLIENT_AUTH": "on"}, "needs INFERSCALE_TLS_CA_FILE"),
        ({"INFERSCALE_TLS_CERT_FILE": str(tmp_path / "missing"), "INFERSCALE_TLS_KEY_FILE": "b"}, "cannot be read"),
    ):
        with pytest.raises(SettingError, match=message):
            TlsSettings.from_env(environ)


@pytest.mark.integration
def test_with_mutual_tls_and_client_tokens_only_a_certified_client_with_a_token_is_served(tmp_path_factory) -> None:
    folder = tmp_path_factory.mktemp("pki")
    ca = make_ca(folder / "trusted", "inferscale-ca")
    service_cert, service_key = make_certificate(ca, "service")
    client_cert, client_key = make_certificate(ca, "client")
    rogue_ca = make_ca(folder / "rogue", "rogue-ca")
    rogue_cert, rogue_key = make_certificate(rogue_ca, "rogue")
    tokens = folder / "client-tokens"
    tokens.write_text(f"client-a {TOKEN}\n")
    env = {
        "INFERSCALE_TLS_CERT_FILE": str(service_cert),
        "INFERSCALE_TLS_KEY_FILE": str(service_key),
        "INFERSCALE_TLS_CA_FILE": str(ca),
        "INFERSCALE_TLS_CLIENT_AUTH": "on",
        "INFERSCALE_CLIENT_TOKENS_FILE": str(tokens),
    }
    image = load_split()[2][0].astype(np.float32)
    request = router_service_pb2.InferRequest(task="digits", inputs=[from_numpy("IMAGE", image[None, :])])

    def call(credentials: grpc.ChannelCredentials | None, metadata: list) -> grpc.StatusCode:
        channel = (
            grpc.secure_channel(suite.address("router"), credentials)
            if credentials is not None
            else grpc.insecure_channel(suite.address("router"))
        )
        with channel:
            try:
                router_service_pb2_grpc.RouterServiceStub(channel).Infer(request, timeout=10, metadata=metadata)
            except grpc.RpcError as error:
                assert TOKEN not in (error.details() or "")
                return error.code()
            return grpc.StatusCode.OK

    def credentials(cert: pathlib.Path | None, key: pathlib.Path | None) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=ca.read_bytes(),
            private_key=key.read_bytes() if key else None,
            certificate_chain=cert.read_bytes() if cert else None,
        )

    with private_suite(tmp_path_factory, "secure", private_repository(tmp_path_factory, "secure"), env) as suite:
        # Every service came up over mutual TLS: the suite's own health checks used the service certificate.
        certified = credentials(client_cert, client_key)
        assert call(certified, bearer_metadata(TOKEN)) == grpc.StatusCode.OK
        assert call(certified, []) == grpc.StatusCode.UNAUTHENTICATED
        assert call(certified, bearer_metadata("not-the-token-at-all")) == grpc.StatusCode.UNAUTHENTICATED
        assert call(credentials(None, None), bearer_metadata(TOKEN)) == grpc.StatusCode.UNAVAILABLE  # no client certificate
        assert call(credentials(rogue_cert, rogue_key), bearer_metadata(TOKEN)) == grpc.StatusCode.UNAVAILABLE
        assert call(None, bearer_metadata(TOKEN)) == grpc.StatusCode.UNAVAILABLE  # plaintext
        logs = "".join(path.read_text(errors="replace") for path in suite.log_dir.glob("*.log"))
        assert TOKEN not in logs
