"""Who may call what: the access table covers every RPC, and each kind of caller gets exactly its calls."""

from __future__ import annotations

import pathlib

import pytest

from inferscale.auth import RPC_ACCESS, Access, Credentials, access_of, bearer_metadata
from inferscale.errors import PermissionDenied, Unauthenticated
from inferscale.settings import SettingError
from inferscale.v1 import cache_service_pb2, monitor_service_pb2, orchestrator_service_pb2, router_service_pb2

SERVICE = "service-token-0123456789"
ADMIN = "admin-token-0123456789ab"
CREDENTIALS = Credentials(service_token=SERVICE, admin_token=ADMIN, mutual_tls=False)


def test_every_rpc_of_every_service_has_an_access_rule_and_no_rule_names_a_missing_rpc() -> None:
    served = {
        f"/{service.full_name}/{method.name}"
        for module in (router_service_pb2, orchestrator_service_pb2, cache_service_pb2, monitor_service_pb2)
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }
    assert served == set(RPC_ACCESS)
    # Only the router's Infer and its streamed twin are for clients; what changes what every
    # caller gets is admin's.
    assert [m for m, a in RPC_ACCESS.items() if a is Access.CLIENT] == [
        "/inferscale.v1.RouterService/Infer",
        "/inferscale.v1.RouterService/InferStream",
    ]
    assert {m.rsplit("/", 1)[1] for m, a in RPC_ACCESS.items() if a is Access.ADMIN} == {
        "LoadModel", "UnloadModel", "Invalidate", "ProposeRoutingPolicy"
    }


def test_only_the_health_check_is_open_and_an_unknown_method_has_no_rule() -> None:
    assert access_of("/grpc.health.v1.Health/Check") is Access.OPEN
    # Calls that can stay open for long need a credential: anyone could take up the calls served at once.
    assert access_of("/grpc.health.v1.Health/Watch") is Access.CALLER
    assert access_of("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo") is Access.CALLER
    assert access_of("/inferscale.v1.CacheService/Flush") is None
    assert access_of("/grpc.health.v1.HealthX/Check") is None
    assert access_of("/grpc.health.v1.Health/Check/..") is None


def test_watches_and_reflection_take_any_credential_the_server_knows(tmp_path: pathlib.Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("client-a client-token-0123456789\n")
    environ = {"INFERSCALE_SERVICE_TOKEN": SERVICE, "INFERSCALE_ADMIN_TOKEN": ADMIN, "INFERSCALE_CLIENT_TOKENS_FILE": str(tokens)}
    router = Credentials.from_env(environ, serves_clients=True)
    assert router.check(Access.CALLER, bearer_metadata("client-token-0123456789")) == "client-a"
    assert router.check(Access.CALLER, bearer_metadata(SERVICE)) == "service"
    with pytest.raises(Unauthenticated):
        router.check(Access.CALLER, [])
    # On an internal service a client's token is no credential.
    with pytest.raises(Unauthenticated):
        CREDENTIALS.check(Access.CALLER, bearer_metadata("client-token-0123456789"))
    assert CREDENTIALS.check(Access.CALLER, bearer_metadata(SERVICE)) == "service"


def test_a_token_given_to_two_roles_is_refused_at_start(tmp_path: pathlib.Path) -> None:
    with pytest.raises(SettingError, match="every service would be an operator"):
        Credentials.from_env({"INFERSCALE_SERVICE_TOKEN": SERVICE, "INFERSCALE_ADMIN_TOKEN": SERVICE})
    tokens = tmp_path / "tokens"
    tokens.write_text(f"client-a {ADMIN}\n")
    environ = {"INFERSCALE_SERVICE_TOKEN": SERVICE, "INFERSCALE_ADMIN_TOKEN": ADMIN, "INFERSCALE_CLIENT_TOKENS_FILE": str(tokens)}
    with pytest.raises(SettingError, match="internal services"):
        Credentials.from_env(environ, serves_clients=True)


def test_the_service_token_opens_service_calls_and_the_admin_token_opens_everything() -> None:
    assert CREDENTIALS.check(Access.SERVICE, bearer_metadata(SERVICE)) == "service"
    assert CREDENTIALS.check(Access.SERVICE, bearer_metadata(ADMIN)) == "admin"
    assert CREDENTIALS.check(Access.ADMIN, bearer_metadata(ADMIN)) == "admin"
    with pytest.raises(PermissionDenied, match="needs the admin token"):
        CREDENTIALS.check(Access.ADMIN, bearer_metadata(SERVICE))
    with pytest.raises(Unauthenticated, match="not valid"):
        CREDENTIALS.check(Access.ADMIN, bearer_metadata("a-wrong-token-of-some-length"))


@pytest.mark.parametrize("access", [Access.SERVICE, Access.ADMIN])
def test_a_missing_or_wrong_token_is_unauthenticated_and_never_echoed(access: Access) -> None:
    with pytest.raises(Unauthenticated, match="needs the metadata|needs 'authorization"):
        CREDENTIALS.check(access, [])
    guess = "guess-guess-guess-guess"
    with pytest.raises(Unauthenticated) as raised:
        CREDENTIALS.check(access, bearer_metadata(guess))
    for secret in (guess, SERVICE, ADMIN):
        assert secret not in str(raised.value)


def test_without_an_admin_token_the_admin_calls_are_disabled_for_everyone() -> None:
    credentials = Credentials(service_token=SERVICE, admin_token="", mutual_tls=False)
    for metadata in ([], bearer_metadata(SERVICE), bearer_metadata("")):
        with pytest.raises(PermissionDenied, match="disabled"):
            credentials.check(Access.ADMIN, metadata)


def test_under_mutual_tls_the_handshake_names_a_service_but_admin_calls_still_need_the_token() -> None:
    credentials = Credentials(service_token="", admin_token=ADMIN, mutual_tls=True)
    assert credentials.check(Access.SERVICE, []) == "service"
    with pytest.raises(PermissionDenied, match="needs the admin token"):
        credentials.check(Access.ADMIN, [])
    assert credentials.check(Access.ADMIN, bearer_metadata(ADMIN)) == "admin"


def test_a_service_without_a_service_identity_refuses_to_start(tmp_path: pathlib.Path) -> None:
    with pytest.raises(SettingError, match="INFERSCALE_SERVICE_TOKEN is unset"):
        Credentials.from_env({})
    with pytest.raises(SettingError, match="at least 16"):
        Credentials.from_env({"INFERSCALE_SERVICE_TOKEN": "short"})
    with pytest.raises(SettingError, match="at least 16"):
        Credentials.from_env({"INFERSCALE_SERVICE_TOKEN": SERVICE, "INFERSCALE_ADMIN_TOKEN": "short"})
    assert Credentials.from_env({"INFERSCALE_SERVICE_TOKEN": SERVICE}).check(Access.SERVICE, bearer_metadata(SERVICE))


def test_a_router_without_client_tokens_refuses_to_start_unless_told_to_serve_anyone(tmp_path: pathlib.Path) -> None:
    environ = {"INFERSCALE_SERVICE_TOKEN": SERVICE}
    with pytest.raises(SettingError, match="would serve anyone"):
        Credentials.from_env(environ, serves_clients=True)
    with pytest.raises(SettingError, match="neither 'on' nor 'off'"):
        Credentials.from_env({**environ, "INFERSCALE_CLIENT_AUTH": "maybe"}, serves_clients=True)
    assert Credentials.from_env({**environ, "INFERSCALE_CLIENT_AUTH": "off"}, serves_clients=True).check(Access.CLIENT, []) == ""
    tokens = tmp_path / "tokens"
    tokens.write_text("client-a client-token-0123456789\n")
    credentials = Credentials.from_env({**environ, "INFERSCALE_CLIENT_TOKENS_FILE": str(tokens)}, serves_clients=True)
    assert credentials.check(Access.CLIENT, bearer_metadata("client-token-0123456789")) == "client-a"
    with pytest.raises(Unauthenticated):
        credentials.check(Access.CLIENT, bearer_metadata(SERVICE))
