"""A request Triton refuses (a shape, a datatype or an input its model does not take) reaches the
client as INVALID_ARGUMENT with Triton's own message, naming the input, whatever way it took.

Every strategy of the digits task, the complexity analysis, the per-model cache path, the text
and ARC tasks, the orchestrator's Execute and Embed: none may lose Triton's text on the way.

Triton ends its shape refusals with a space ("... got [8,8]. "). Python's gRPC hands such a
message over as it is, but HTTP/2 forbids a header value framed in whitespace, and Node's HTTP/2
(grpc-js) drops the whole grpc-message trailer: a Node client saw INVALID_ARGUMENT with an empty
message. So the messages here must not start or end with whitespace, and the Node client itself
must print Triton's text.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess

import grpc
import numpy as np
import pytest

from inferscale.suite import REPO_ROOT
from inferscale.tensors import bytes_tensor, from_numpy
from inferscale.v1 import (
    common_pb2,
    orchestrator_service_pb2,
    orchestrator_service_pb2_grpc,
    router_service_pb2,
    router_service_pb2_grpc,
)

pytestmark = pytest.mark.integration

# How Triton 2.51 words the refusals of a request that does not fit the model's config.
TRITON_PHRASES = (
    "unexpected shape for input",
    "data-type is",
    "unexpected inference input",
    "inputs but got",
)
IMAGE = np.full((1, 64), 3.0, dtype=np.float32)
REQUEST_IDS = itertools.count()


def _bytes_of_shape(name: str, items: list[str], shape: list[int]) -> common_pb2.InferTensor:
    tensor = bytes_tensor(name, items)
    del tensor.shape[:]
    tensor.shape.extend(shape)
    return tensor


# (case, the input Triton must name, the inputs sent)
DIGITS_REFUSALS = [
    ("columns", "IMAGE", [from_numpy("IMAGE", IMAGE[:, :63].copy())]),
    ("one_dimension", "IMAGE", [from_numpy("IMAGE", IMAGE[0].copy())]),
    ("three_dimensions", "IMAGE", [from_numpy("IMAGE", IMAGE[None])]),
    ("rows_of_32", "IMAGE", [from_numpy("IMAGE", IMAGE.reshape(2, 32))]),
    ("fp64", "IMAGE", [from_numpy("IMAGE", IMAGE.astype(np.float64))]),
    ("int32", "IMAGE", [from_numpy("IMAGE", IMAGE.astype(np.int32))]),
    ("bytes", "IMAGE", [bytes_tensor("IMAGE", ["not an image"])]),
    ("unknown_input", "PIXELS", [from_numpy("PIXELS", IMAGE)]),
]
S = common_pb2
DIGITS_STRATEGIES = {
    "default": {},
    "cascade": {"strategy": S.STRATEGY_CASCADE},
    "cascade_analysed": {"strategy": S.STRATEGY_CASCADE, "analyze_complexity": True},
    "ensemble": {"strategy": S.STRATEGY_ENSEMBLE},
    "ensemble_vote": {"strategy": S.STRATEGY_ENSEMBLE, "aggregation": S.AGGREGATION_WEIGHTED_VOTE},
    "ensemble_plurality": {"strategy": S.STRATEGY_ENSEMBLE, "aggregation": S.AGGREGATION_PLURALITY},
    "refinement": {"strategy": S.STRATEGY_REFINEMENT},
    "expert": {"strategy": S.STRATEGY_EXPERT},
    "search": {"strategy": S.STRATEGY_SEARCH, "max_calls": 4},
    "single_linear": {"strategy": S.STRATEGY_SINGLE, "model_name": "digits_linear"},
    "single_mlp": {"strategy": S.STRATEGY_SINGLE, "model_name": "digits_mlp"},
    "single_ensemble": {"strategy": S.STRATEGY_SINGLE, "model_name": "digits_ensemble"},
}
TEXT_REFUSALS = [
    ("two_dimensions", "TEXT", [_bytes_of_shape("TEXT", ["set an alarm"], [1, 1])]),
    ("fp32", "TEXT", [from_numpy("TEXT", np.ones((1,), dtype=np.float32))]),
    ("unknown_input", "PROMPT", [bytes_tensor("PROMPT", ["set an alarm"])]),
]
TEXT_STRATEGIES = {
    "default": {},
    "ensemble": {"strategy": S.STRATEGY_ENSEMBLE},
    "search": {"strategy": S.STRATEGY_SEARCH, "max_calls": 2},
    "single": {"strategy": S.STRATEGY_SINGLE, "model_name": "intent_classifier"},
}
ARC_REFUSALS = [
    ("two_dimensions", "TASK", [_bytes_of_shape("TASK", ["{}"], [1, 1])]),
    ("fp32", "TASK", [from_numpy("TASK", np.ones((1,), dtype=np.float32))]),
    ("seed_shape", "SEED", [bytes_tensor("TASK", ["{}"]), from_numpy("SEED", np.array([1, 2], dtype=np.int64))]),
]
ARC_STRATEGIES = {
    "default": {},
    "ensemble": {"strategy": S.STRATEGY_ENSEMBLE, "aggregation": S.AGGREGATION_BEST_SCORE},
    "search": {"strategy": S.STRATEGY_SEARCH, "max_calls": 3},
    "single": {"strategy": S.STRATEGY_SINGLE, "model_name": "arc_geometry"},
}


def _cases(task: str, refusals: list, strategies: dict) -> list:
    return [
        pytest.param(task, name, inputs, fields, skip_cache, id=f"{task}-{case}-{strategy}-{'skip' if skip_cache else 'cached'}")
        for case, name, inputs in refusals
        for strategy, fields in strategies.items()
        for skip_cache in (True, False)
    ]


def assert_triton_refusal(error: grpc.RpcError, input_name: str) -> None:
    details = error.details() or ""
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (error.code(), details)
    assert f"'{input_name}'" in details, f"Triton's message naming {input_name!r} was lost: {details!r}"
    assert any(phrase in details for phrase in TRITON_PHRASES), f"not Triton's message: {details!r}"
    # Framed in whitespace, the message is dropped whole by HTTP/2 clients that check header values (grpc-js).
    assert details == details.strip(), f"a message framed in whitespace is lost to grpc-js clients: {details!r}"


@pytest.fixture(scope="module")
def client_router(suite):  # type: ignore[no-untyped-def]
    with suite.channel("router") as channel:
        yield router_service_pb2_grpc.RouterServiceStub(channel)


@pytest.fixture(scope="module")
def service_orchestrator(suite):  # type: ignore[no-untyped-def]
    with suite.channel("orchestrator") as channel:
        yield orchestrator_service_pb2_grpc.OrchestratorServiceStub(channel)


@pytest.mark.parametrize(
    ("task", "input_name", "inputs", "fields", "skip_cache"),
    _cases("digits", DIGITS_REFUSALS, DIGITS_STRATEGIES)
    + _cases("intents", TEXT_REFUSALS, TEXT_STRATEGIES)
    + _cases("arc", ARC_REFUSALS, ARC_STRATEGIES),
)
def test_the_router_passes_on_tritons_refusal_with_its_message(
    client_router, task: str, input_name: str, inputs: list, fields: dict, skip_cache: bool
) -> None:
    request = router_service_pb2.InferRequest(
        task=task, inputs=inputs, skip_cache=skip_cache, request_id=f"refusal-{next(REQUEST_IDS)}", **fields
    )
    with pytest.raises(grpc.RpcError) as raised:
        client_router.Infer(request, timeout=30)
    assert_triton_refusal(raised.value, input_name)


@pytest.mark.parametrize(
    "strategy",
    [S.STRATEGY_CASCADE, S.STRATEGY_REFINEMENT, S.STRATEGY_ENSEMBLE, S.STRATEGY_SEARCH, S.STRATEGY_EXPERT],
    ids=lambda s: S.Strategy.Name(s),
)
@pytest.mark.parametrize(("case", "input_name", "inputs"), DIGITS_REFUSALS, ids=[c[0] for c in DIGITS_REFUSALS])
def test_the_orchestrator_passes_on_tritons_refusal_with_its_message(
    service_orchestrator, strategy: int, case: str, input_name: str, inputs: list
) -> None:
    plan = common_pb2.Plan(
        strategy=strategy,
        task="digits",
        steps=[
            common_pb2.PlanStep(model=common_pb2.ModelRef(name=name), accept_threshold=0.99)
            for name in ("digits_linear", "digits_mlp", "digits_ensemble")
        ],
        max_calls=3 if strategy == S.STRATEGY_SEARCH else 0,
        complexity_model="digits_complexity" if strategy == S.STRATEGY_EXPERT else "",
    )
    request = orchestrator_service_pb2.ExecuteRequest(request_id=f"refusal-{next(REQUEST_IDS)}", plan=plan, inputs=inputs)
    with pytest.raises(grpc.RpcError) as raised:
        service_orchestrator.Execute(request, timeout=30)
    assert_triton_refusal(raised.value, input_name)


@pytest.mark.parametrize(("case", "input_name", "inputs"), TEXT_REFUSALS[:2], ids=[c[0] for c in TEXT_REFUSALS[:2]])
def test_embed_passes_on_tritons_refusal_with_its_message(service_orchestrator, case: str, input_name: str, inputs: list) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        service_orchestrator.Embed(orchestrator_service_pb2.EmbedRequest(model_name="text_embedding", input=inputs[0]), timeout=30)
    assert_triton_refusal(raised.value, input_name)


NODE_CLIENT = REPO_ROOT / "clients" / "node" / "infer.js"


@pytest.mark.parametrize("shape", ["8,8", "64", "1,1,64", "2,32"])
def test_a_node_client_receives_tritons_shape_refusal_with_its_message(suite, shape: str) -> None:
    node = shutil.which("node")
    if node is None or not (NODE_CLIENT.parent / "node_modules" / "@grpc" / "grpc-js").is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail("node and clients/node's dependencies are needed (npm ci in clients/node)")
        pytest.skip("node, or clients/node's dependencies (npm ci), missing")
    env = {**os.environ, "INFERSCALE_CLIENT_TOKEN": suite.credentials.client_token, "no_grpc_proxy": "127.0.0.1,localhost"}
    completed = subprocess.run(
        # 64 pixels in a shape Triton refuses: the bytes match it, so the router passes it on to Triton.
        [node, str(NODE_CLIENT), "--address", suite.address("router"), "--pixels", ",".join(["3"] * 64), "--shape", shape],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 2, f"exit {completed.returncode}\nstdout:\n{completed.stdout}\nstderr:\n{completed.stderr}"
    assert completed.stderr.startswith("error: INVALID_ARGUMENT: "), completed.stderr
    assert "unexpected shape for input 'IMAGE'" in completed.stderr, f"Triton's message was lost: {completed.stderr!r}"
