"""Malformed and near-valid requests against every public RPC of a real suite (benchmarks/fuzz.py, shorter).

Each request gets a clear status (never UNKNOWN or INTERNAL, always with a message), no process
dies or is restarted, resident memory stays flat and a good request is still answered correctly.
The run is seeded, so it sends the same requests every time. After it, the requests the fuzzing
found faults with are sent once each, so that they are checked whatever the seed draws.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import grpc
import pytest

from benchmarks.fuzz import (
    ABSENT_PREFIX,
    MEMORY_GROWTH_LIMIT,
    FuzzReport,
    fuzz,
    fuzz_suite,
    public_rpcs,
    resident_bytes,
    suite_processes,
)
from inferscale.suite import Suite
from inferscale.tensors import bytes_tensor
from inferscale.v1 import (
    common_pb2,
    orchestrator_service_pb2,
    orchestrator_service_pb2_grpc,
    router_service_pb2,
    router_service_pb2_grpc,
)

pytestmark = pytest.mark.integration

REQUESTS = 1_200
SEED = 0
# What a request to the router may get: refused naming the field or for its credentials, an
# unknown task or model, or (the fuzzer made a valid request) an answer.
CLEAR_FOR_INFER = {"OK", "INVALID_ARGUMENT", "NOT_FOUND", "UNAUTHENTICATED"}


@pytest.fixture(scope="module")
def fuzzed_suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    with fuzz_suite(tmp_path_factory.mktemp("fuzz")) as suite:
        yield suite


@pytest.fixture(scope="module")
def report(fuzzed_suite: Suite) -> FuzzReport:
    return fuzz(fuzzed_suite, REQUESTS, SEED, progress=lambda line: None)


def test_every_public_rpc_gets_its_share_of_the_requests(report: FuzzReport) -> None:
    assert report.sent >= REQUESTS
    fuzzed = {rpc: sum(counter.values()) for rpc, counter in report.statuses.items()}
    assert set(fuzzed) == {f"{rpc.service}.{rpc.method}" for rpc in public_rpcs()}
    assert min(fuzzed.values()) >= REQUESTS // 40, fuzzed


def test_no_request_gets_unknown_or_internal_and_every_refusal_says_why(report: FuzzReport) -> None:
    assert report.server_faults == 0 and report.unexplained == 0, report.table()


def test_every_process_comes_through_alive_and_unrestarted(report: FuzzReport) -> None:
    assert set(report.pids_before) == {"router", "orchestrator", "cache", "monitor", "triton"}
    assert report.pids_after == report.pids_before
    assert all(report.alive_after.values()), report.alive_after


def test_resident_memory_of_every_process_stays_flat(report: FuzzReport) -> None:
    ratios = {name: round(report.memory_ratio(name), 3) for name in report.memory_before}
    assert set(ratios) == set(report.pids_before)
    assert max(ratios.values()) <= MEMORY_GROWTH_LIMIT, report.table()


def test_a_holdout_digit_is_answered_correctly_before_and_after_the_fuzz(report: FuzzReport) -> None:
    assert report.good_answer_before == report.good_label
    assert report.good_answer_after == report.good_label


def test_malformed_infer_requests_are_refused_clearly_and_near_valid_ones_answered(report: FuzzReport) -> None:
    infer = report.statuses["router.Infer"]
    assert set(infer) <= CLEAR_FOR_INFER, dict(infer)
    # Both kinds of request went deep: many were refused naming a field, and some reached the
    # models and were answered.
    sent = sum(infer.values())
    assert infer["INVALID_ARGUMENT"] > sent // 3 and infer["OK"] > sent // 50, dict(infer)


# Requests the fuzzing found faults with, each sent once.


@pytest.mark.parametrize("rpc", public_rpcs(), ids=lambda rpc: f"{rpc.service}.{rpc.method}")
def test_bytes_that_are_no_message_are_refused_invalid_argument(fuzzed_suite: Suite, report: FuzzReport, rpc) -> None:
    role = {"router": "client"}.get(rpc.service, "admin")
    with fuzzed_suite.channel(rpc.service, role=role) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            if rpc.streaming:
                list(channel.stream_stream(rpc.path)(iter([b"\xff\xff\xff"]), timeout=30))
            else:
                channel.unary_unary(rpc.path)(b"\xff\xff\xff", timeout=30)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.value.details()


def test_an_arc_task_nested_deeper_than_python_reads_is_refused_invalid_argument(fuzzed_suite: Suite, report: FuzzReport) -> None:
    task = bytes_tensor("TASK", ["[" * 5_000])
    with fuzzed_suite.channel("router") as channel:
        with pytest.raises(grpc.RpcError) as refused:
            router_service_pb2_grpc.RouterServiceStub(channel).Infer(
                router_service_pb2.InferRequest(task="arc", inputs=[task], skip_cache=True), timeout=60
            )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "nests deeper" in refused.value.details()
    # A task that is well formed is still solved.
    grid = [[1, 2], [3, 4]]
    solvable = json.dumps({"train": [{"input": grid, "output": grid}], "test": [{"input": grid}]})
    with fuzzed_suite.channel("router") as channel:
        reply = router_service_pb2_grpc.RouterServiceStub(channel).Infer(
            router_service_pb2.InferRequest(task="arc", inputs=[bytes_tensor("TASK", [solvable])], skip_cache=True), timeout=60
        )
    assert reply.answer.label


def test_loading_a_model_the_repository_lacks_is_not_found(fuzzed_suite: Suite, report: FuzzReport) -> None:
    with fuzzed_suite.channel("orchestrator", role="admin") as channel:
        with pytest.raises(grpc.RpcError) as refused:
            orchestrator_service_pb2_grpc.OrchestratorServiceStub(channel).LoadModel(
                orchestrator_service_pb2.LoadModelRequest(model_name=f"{ABSENT_PREFIX}model"), timeout=60
            )
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    assert "not in Triton's model repository" in refused.value.details()


def test_a_search_whose_cost_ceiling_affords_no_model_is_refused_invalid_argument(fuzzed_suite: Suite, report: FuzzReport) -> None:
    image = common_pb2.InferTensor(name="IMAGE", datatype="FP32", shape=[1, 64], raw_contents=bytes(256))
    step = common_pb2.PlanStep(model=common_pb2.ModelRef(name="digits_ensemble"), tier=3, accept_threshold=0.9)
    plan = common_pb2.Plan(strategy=common_pb2.STRATEGY_SEARCH, task="digits", steps=[step], max_calls=4, cost_ceiling=1.0)
    with fuzzed_suite.channel("orchestrator") as channel:
        with pytest.raises(grpc.RpcError) as refused:
            orchestrator_service_pb2_grpc.OrchestratorServiceStub(channel).Execute(
                orchestrator_service_pb2.ExecuteRequest(request_id="search", plan=plan, inputs=[image]), timeout=60
            )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "plan.cost_ceiling" in refused.value.details()


def test_refused_requests_are_freed_when_their_call_ends(fuzzed_suite: Suite, report: FuzzReport) -> None:
    # 2 MB, refused at once for its 25,000 inputs. A refusal that keeps its request (context.abort
    # leaves it in a reference cycle until a full garbage collection) grows the router by about
    # that much per call: 150 MiB over these 100 calls when written, 19 MiB once freed. A fresh
    # router, so that no slack the fuzzing left in its heap hides the growth.
    fuzzed_suite.kill_service("router")
    fuzzed_suite.start_service("router")
    image = common_pb2.InferTensor(name="IMAGE", datatype="FP32", shape=[1, 64], raw_contents=bytes(64))
    oversized = router_service_pb2.InferRequest(task="digits", inputs=[image] * 25_000)
    router = suite_processes(fuzzed_suite)["router"]
    with fuzzed_suite.channel("router") as channel:
        infer = router_service_pb2_grpc.RouterServiceStub(channel).Infer
        before = resident_bytes(router)
        for _ in range(100):
            with pytest.raises(grpc.RpcError) as refused:
                infer(oversized, timeout=30)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    grown = resident_bytes(router) - before
    assert grown < 64 * 2**20, f"the router grew by {grown / 2**20:.0f} MiB over 100 refused requests"
