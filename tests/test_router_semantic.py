"""Where the router finds a request's embedding for the semantic cache, and the namespace it looks in."""

from __future__ import annotations

import numpy as np
import pytest

from inferscale.errors import InvalidArgument
from inferscale.tensors import bytes_tensor, from_numpy
from inferscale.v1 import common_pb2, router_service_pb2
from services.router.semantic import embedding_source, semantic_namespace, validate_embedding

PLAIN = common_pb2.ModelInfo(model=common_pb2.ModelRef(name="plain", version=1), task="t")
BY_INPUT = common_pb2.ModelInfo(model=common_pb2.ModelRef(name="m", version=1), task="t", semantic_input="X", semantic_threshold=0.9)
BY_MODEL = common_pb2.ModelInfo(
    model=common_pb2.ModelRef(name="m", version=1), task="t", semantic_input="TEXT", embedding_model="embedder"
)


def request(*inputs: common_pb2.InferTensor, embedding: list[float] | None = None) -> router_service_pb2.InferRequest:
    return router_service_pb2.InferRequest(task="t", inputs=inputs, embedding=embedding or [])


def test_a_task_without_a_declaration_has_no_semantic_cache_unless_the_caller_gives_an_embedding() -> None:
    x = from_numpy("X", np.ones((1, 4), np.float32))
    assert embedding_source(request(x), [PLAIN]) is None
    given = embedding_source(request(x, embedding=[1.0, 2.0]), [PLAIN])
    assert given is not None and given.vector.tolist() == [1.0, 2.0]


def test_a_declared_fp32_input_is_its_own_embedding_and_a_declared_model_embeds_text() -> None:
    x = from_numpy("X", np.arange(4, dtype=np.float32)[None, :])
    source = embedding_source(request(x), [BY_INPUT])
    assert source.vector.tolist() == [0.0, 1.0, 2.0, 3.0] and source.threshold == 0.9
    text = bytes_tensor("TEXT", ["turn on the lights"])
    source = embedding_source(request(text), [BY_MODEL])
    assert (source.embedding_model, source.tensor, source.vector) == ("embedder", text, None)


def test_a_declared_input_of_another_datatype_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="as an FP32 embedding"):
        embedding_source(request(from_numpy("X", np.ones((1, 4), np.int32))), [BY_INPUT])


def test_namespaces_differ_by_plan_and_embedding_length() -> None:
    plan = common_pb2.Plan(task="t", steps=[common_pb2.PlanStep(model=common_pb2.ModelRef(name="m", version=1))])
    newer = common_pb2.Plan(task="t", steps=[common_pb2.PlanStep(model=common_pb2.ModelRef(name="m", version=2))])
    assert semantic_namespace(plan, 8).startswith("t|")
    assert len({semantic_namespace(plan, 8), semantic_namespace(newer, 8), semantic_namespace(plan, 16)}) == 3


@pytest.mark.parametrize(("embedding", "named"), [([0.0, 0.0], "all zeros"), ([float("inf")], "NaN or infinite"), ([1.0] * 4097, "4097 values")])
def test_a_malformed_embedding_is_named(embedding: list[float], named: str) -> None:
    with pytest.raises(InvalidArgument, match=named):
        validate_embedding(embedding)
