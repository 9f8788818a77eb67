"""A router that embeds the orchestrator (INFERSCALE_EMBED_ORCHESTRATOR=on) answers as the two-process suite does, without it."""

from __future__ import annotations

import grpc
import pytest

from inferscale.suite import Suite, SuitePorts
from inferscale.v1 import common_pb2, orchestrator_service_pb2, orchestrator_service_pb2_grpc, router_service_pb2_grpc
from tests.test_end_to_end import holdout, infer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def embedding_suite(suite: Suite, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A second suite on the session's Triton whose router runs the orchestrator itself; its own
    orchestrator process is stopped, so that nothing can reach it."""
    embedding = Suite(
        ports=SuitePorts.free(),
        triton_url=suite.triton_url,
        log_dir=tmp_path_factory.mktemp("embedded-logs"),
        env={"OTEL_TRACES_EXPORTER": "none", "INFERSCALE_EMBED_ORCHESTRATOR": "on"},
    )
    with embedding:
        embedding.kill_service("orchestrator")
        yield embedding


@pytest.fixture(scope="module")
def embedding_router(embedding_suite: Suite):  # type: ignore[no-untyped-def]
    with embedding_suite.channel("router") as channel:
        yield router_service_pb2_grpc.RouterServiceStub(channel)


def test_every_strategy_answers_as_through_the_orchestrator_service(router, embedding_router) -> None:
    images = holdout()[0]
    for fields in (
        {"strategy": common_pb2.STRATEGY_CASCADE},
        {"strategy": common_pb2.STRATEGY_ENSEMBLE},
        {"strategy": common_pb2.STRATEGY_SEARCH, "max_calls": 3},
    ):
        for index in (0, 7):
            remote = infer(router, images[index], skip_cache=True, request_id=f"embedded-{index}", **fields)
            local = infer(embedding_router, images[index], skip_cache=True, request_id=f"embedded-{index}", **fields)
            assert local.answer == remote.answer
            assert [(s.model.name, s.decision, s.answer.label) for s in local.steps] == [
                (s.model.name, s.decision, s.answer.label) for s in remote.steps
            ]


def test_errors_keep_their_status_in_process(embedding_router) -> None:
    image = holdout()[0][0]
    with pytest.raises(grpc.RpcError) as raised:
        infer(embedding_router, image, strategy=common_pb2.STRATEGY_SINGLE, model_name="no_such_model")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND and "no_such_model" in raised.value.details()
    with pytest.raises(grpc.RpcError) as raised:
        infer(embedding_router, image[:10], skip_cache=True)  # an image of the wrong shape
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # The router still answers after both.
    assert infer(embedding_router, image, skip_cache=True).answer.label


def test_the_routers_port_serves_no_orchestrator_rpc_even_with_the_orchestrator_embedded(embedding_suite: Suite) -> None:
    # Execute there would run any plan without a client token, and the admin calls would be public.
    with embedding_suite.channel("router") as client, embedding_suite.channel("router", role="admin") as admin:
        for channel in (client, admin):
            orchestrator = orchestrator_service_pb2_grpc.OrchestratorServiceStub(channel)
            for call, request in (
                (orchestrator.ListModels, orchestrator_service_pb2.ListModelsRequest()),
                (orchestrator.Execute, orchestrator_service_pb2.ExecuteRequest()),
                (orchestrator.UnloadModel, orchestrator_service_pb2.UnloadModelRequest(model_name="digits_linear")),
            ):
                with pytest.raises(grpc.RpcError) as raised:
                    call(request, timeout=10)
                assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
        # And the router still routes to every model.
        assert infer(router_service_pb2_grpc.RouterServiceStub(client), holdout()[0][0], skip_cache=True).answer.label
