"""Every port refuses what its caller may not do, on the real suite: no credentials, the wrong kind, or a client's
own embedding aimed at what others are served."""

from __future__ import annotations

import grpc
import pytest

from inferscale.auth import RPC_ACCESS, Access, bearer_metadata
from inferscale.models.intents import INTENTS
from inferscale.suite import Suite
from inferscale.tensors import bytes_tensor
from inferscale.v1 import cache_service_pb2, common_pb2, orchestrator_service_pb2, router_service_pb2
from tests.test_end_to_end import holdout, infer

pytestmark = pytest.mark.integration

SERVICE_OF = {"RouterService": "router", "OrchestratorService": "orchestrator", "CacheService": "cache", "MonitorService": "monitor"}
STREAMING = {"/inferscale.v1.MonitorService/StreamEvents"}


def raw_call(channel: grpc.Channel, method: str, metadata: list[tuple[str, str]]) -> grpc.StatusCode:
    """Calls ``method`` with an empty request (valid protobuf for every message) and returns the status."""
    try:
        if method in STREAMING:
            replies = channel.stream_stream(method)(iter([b""]), timeout=10, metadata=metadata)
            list(replies)
        else:
            channel.unary_unary(method)(b"", timeout=10, metadata=metadata)
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def methods_of(service: str) -> list[str]:
    return [m for m in RPC_ACCESS if SERVICE_OF[m.split("/")[1].split(".")[-1]] == service]


@pytest.mark.parametrize("service", ["router", "orchestrator", "cache", "monitor"])
def test_every_rpc_refuses_a_caller_without_credentials_or_with_the_wrong_kind(suite: Suite, service: str) -> None:
    tokens = suite.credentials
    with grpc.insecure_channel(suite.address(service)) as channel:
        for method in methods_of(service):
            access = RPC_ACCESS[method]
            assert raw_call(channel, method, []) == grpc.StatusCode.UNAUTHENTICATED, method
            assert raw_call(channel, method, bearer_metadata("not-a-token-of-this-suite")) == grpc.StatusCode.UNAUTHENTICATED, method
            if access is Access.SERVICE:
                # A client's token opens no service call.
                assert raw_call(channel, method, bearer_metadata(tokens.client_token)) == grpc.StatusCode.UNAUTHENTICATED, method
            if access is Access.ADMIN:
                # Nor does the service token open an admin call.
                assert raw_call(channel, method, bearer_metadata(tokens.service_token)) == grpc.StatusCode.PERMISSION_DENIED, method
        # The router's port serves Infer alone.
        if service == "router":
            for method in (m for m in RPC_ACCESS if "RouterService" not in m):
                assert raw_call(channel, method, bearer_metadata(tokens.admin_token)) == grpc.StatusCode.UNIMPLEMENTED, method


def test_a_store_without_credentials_stores_nothing_and_an_invalidation_without_the_admin_token_removes_nothing(
    suite: Suite, cache
) -> None:
    L4 = common_pb2.CACHE_LEVEL_L4_FINAL_RESULT
    entry = cache_service_pb2.CacheEntry(value=b"kept", produced_by=[common_pb2.ModelRef(name="digits_linear", version=1)])
    with grpc.insecure_channel(suite.address("cache")) as anonymous:
        with pytest.raises(grpc.RpcError) as raised:
            anonymous.unary_unary("/inferscale.v1.CacheService/Store")(
                cache_service_pb2.StoreRequest(level=L4, key="access-poisoned", entry=entry).SerializeToString(), timeout=10
            )
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert not cache.Lookup(cache_service_pb2.LookupRequest(level=L4, key="access-poisoned"), timeout=10).hit
    cache.Store(cache_service_pb2.StoreRequest(level=L4, key="access-kept", entry=entry), timeout=10)
    with pytest.raises(grpc.RpcError) as raised:
        cache.Invalidate(cache_service_pb2.InvalidateRequest(model_name="digits_linear"), timeout=10)  # the service token
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert cache.Lookup(cache_service_pb2.LookupRequest(level=L4, key="access-kept"), timeout=10).entry.value == b"kept"


def intent(router, text: str, **fields) -> router_service_pb2.InferResponse:  # type: ignore[no-untyped-def]
    request = router_service_pb2.InferRequest(task="intents", inputs=[bytes_tensor("TEXT", [text])], **fields)
    return router.Infer(request, timeout=30)


def test_a_callers_own_embedding_cannot_choose_what_other_requests_are_served(router, orchestrator) -> None:
    off_text, on_text = "turn off the porch lights now", "turn on the porch lights now"
    off_embedding = orchestrator.Embed(
        orchestrator_service_pb2.EmbedRequest(model_name="text_embedding", input=bytes_tensor("TEXT", [off_text])), timeout=30
    ).embedding
    # "on", sent with the embedding of "off": answered from its inputs, stored under that embedding.
    poisoned = intent(router, on_text, embedding=list(off_embedding))
    assert INTENTS[int(poisoned.answer.label)] == "lights_on"
    # Later, "off" as every client sends it: its server-made embedding must not find that entry.
    later = intent(router, off_text)
    assert later.cache_level != common_pb2.CACHE_LEVEL_L1_SEMANTIC
    assert INTENTS[int(later.answer.label)] == "lights_off"
    # The caller who sent the embedding is still served its own neighbours.
    again = intent(router, "turn on the porch lights, please", embedding=list(off_embedding))
    assert again.cache_level == common_pb2.CACHE_LEVEL_L1_SEMANTIC and again.answer == poisoned.answer


def test_a_good_request_is_answered_with_the_suites_client_token(router) -> None:
    assert infer(router, holdout()[0][0], skip_cache=True).answer.label
