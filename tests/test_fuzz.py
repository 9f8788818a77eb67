"""Ten thousand malformed requests against a real router: each gets a clear status, no process dies, memory stays flat."""

from __future__ import annotations

import math
import pathlib
from collections import Counter

import grpc
import numpy as np
import pytest
import tritonclient.grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferscale.v1 import common_pb2, router_service_pb2, router_service_pb2_grpc
from tests.conftest import private_repository, private_suite

pytestmark = pytest.mark.integration

EXAMPLES = 10_000
# What a malformed request may get: refused naming the field, an unknown task or model, or (the
# fuzzer found a valid request) an answer. Never INTERNAL, UNKNOWN, a timeout or a dead server.
CLEAR = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}
DATATYPES = ["FP32", "FP16", "FP64", "INT8", "INT32", "INT64", "UINT8", "BOOL", "BYTES", "fp32", "", "FP128", "STRING"]
ODD_FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, 0.5, 0.9, 1.0, 1.5, -0.1, math.nan, math.inf])
)


def tensors() -> st.SearchStrategy[common_pb2.InferTensor]:
    shapes = st.lists(st.integers(min_value=-2, max_value=70), max_size=4)

    def with_bytes(fields: tuple[str, str, list[int], int, bytes]) -> common_pb2.InferTensor:
        name, datatype, shape, mode, noise = fields
        if mode == 0 and shape and all(d > 0 for d in shape) and math.prod(shape) <= 4096:
            # The right number of bytes for FP32, so that validation passes and the models see
            # them: NaN, huge or random values.
            values = np.frombuffer((noise + b"\0" * (-len(noise) % 4)) or b"\0" * 4, np.float32)
            raw = np.resize(values, math.prod(shape)).tobytes()
        else:
            raw = noise
        return common_pb2.InferTensor(name=name, datatype=datatype, shape=shape, raw_contents=raw)

    return st.tuples(
        st.sampled_from(["IMAGE", "TEXT", "", "PRIOR", "image"]) | st.text(max_size=20),
        st.sampled_from(DATATYPES),
        st.one_of(shapes, st.just([1, 64])),
        st.integers(min_value=0, max_value=2),
        st.binary(max_size=300),
    ).map(with_bytes)


def requests() -> st.SearchStrategy[router_service_pb2.InferRequest]:
    return st.builds(
        lambda task, inputs, strategy, model, threshold, low, ceiling, aggregation, tiers, embedding, request_id: router_service_pb2.InferRequest(
            request_id=request_id,
            task=task,
            inputs=inputs,
            strategy=strategy,
            model_name=model,
            confidence_threshold=threshold,
            escalate_threshold=low,
            cost_ceiling=ceiling,
            aggregation=aggregation,
            tier_thresholds=tiers,
            embedding=embedding,
            skip_cache=True,
        ),
        st.sampled_from(["digits", "intents", "", "nope"]) | st.text(max_size=200),
        st.lists(tensors(), max_size=3),
        st.integers(min_value=-1, max_value=6),
        st.sampled_from(["", "digits_linear", "digits_ensemble", "missing"]),
        ODD_FLOATS,
        ODD_FLOATS,
        ODD_FLOATS,
        st.integers(min_value=-1, max_value=5),
        st.lists(
            st.builds(common_pb2.TierThresholds, tier=st.integers(-1, 4), accept_threshold=ODD_FLOATS, escalate_threshold=ODD_FLOATS),
            max_size=3,
        ),
        st.lists(ODD_FLOATS, max_size=40) | st.lists(st.just(0.0), max_size=8),
        st.text(max_size=140),
    )


def near_valid_requests() -> st.SearchStrategy[router_service_pb2.InferRequest]:
    """Requests that pass the router's checks or nearly do, so that the orchestrator and the models see odd values."""
    pixels = st.floats(width=32, allow_nan=True, allow_infinity=True)
    image = st.binary(min_size=256, max_size=256) | st.lists(pixels, min_size=64, max_size=64).map(
        lambda values: np.array(values, np.float32).tobytes()
    )
    return st.builds(
        lambda raw, strategy, model, threshold, embedding: router_service_pb2.InferRequest(
            task="digits",
            inputs=[common_pb2.InferTensor(name="IMAGE", datatype="FP32", shape=[1, 64], raw_contents=raw)],
            strategy=strategy,
            model_name=model if strategy == common_pb2.STRATEGY_SINGLE else "",
            confidence_threshold=threshold,
            embedding=embedding,
            skip_cache=True,
        ),
        image,
        st.sampled_from([0, 1, 2, 3, 4]),
        st.sampled_from(["digits_linear", "digits_mlp", "digits_ensemble", "missing"]),
        st.sampled_from([0.0, 0.5, 0.9, 1.0]),
        st.just([]) | st.lists(ODD_FLOATS, min_size=1, max_size=16),
    )


def rss_bytes(pid: int) -> int:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_ten_thousand_malformed_requests_each_get_a_clear_status(tmp_path_factory) -> None:
    repository = private_repository(tmp_path_factory, "fuzz")
    with private_suite(tmp_path_factory, "fuzz", repository, {"INFERSCALE_MONITOR_ADDRESS": "off"}) as suite:
        channel = grpc.insecure_channel(suite.address("router"))
        router = router_service_pb2_grpc.RouterServiceStub(channel)
        statuses: Counter[grpc.StatusCode] = Counter()
        unclear: list[str] = []
        memory: list[int] = []

        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(st.one_of(requests(), near_valid_requests()))
        def send(request: router_service_pb2.InferRequest) -> None:
            try:
                router.Infer(request, timeout=20)
                code = grpc.StatusCode.OK
            except grpc.RpcError as error:
                code = error.code()
                if code not in CLEAR or not error.details():
                    unclear.append(f"{code.name}: {error.details()!r} for {str(request)[:300]!r}")
            statuses[code] += 1
            if sum(statuses.values()) in (1000, EXAMPLES):
                memory.append(rss_bytes(suite.processes["router"].pid))

        send()
        channel.close()
        print(f"statuses: {dict((code.name, n) for code, n in statuses.items())}; router RSS {memory}")
        assert sum(statuses.values()) >= EXAMPLES
        assert not unclear, "\n".join(unclear[:20])
        # Both kinds of request went deep: most were refused, and hundreds reached the models and
        # were answered (derandomized: 542 of 10,000 when written).
        assert statuses[grpc.StatusCode.INVALID_ARGUMENT] > EXAMPLES // 2 and statuses[grpc.StatusCode.OK] > EXAMPLES // 50
        for name, process in suite.processes.items():
            assert process.poll() is None, f"{name} died"
        assert tritonclient.grpc.InferenceServerClient(suite.triton_url).is_server_live()
        # After the first thousand the router's memory no longer grows with the requests.
        assert memory[-1] - memory[0] < 32 * 2**20, f"router RSS grew from {memory[0]} to {memory[-1]} bytes"
