"""Faults on real processes: a model's backend process dies, the only Triton dies and comes back, the cache's Redis dies."""

from __future__ import annotations

import os
import signal
import subprocess

import grpc
import numpy as np
import pytest

from inferscale.models.digits import load_split
from inferscale.tensors import from_numpy
from inferscale.v1 import common_pb2, router_service_pb2, router_service_pb2_grpc
from tests.conftest import private_repository, private_suite, system_binary
from tests.redis_server import RedisServer
from tests.test_live_registry import eventually

pytestmark = pytest.mark.integration


def stub_pid(repository: str, model: str) -> int:
    """The python-backend stub process serving ``model`` from ``repository``."""
    listing = subprocess.run(["pgrep", "-af", "triton_python_backend_stub"], capture_output=True, text=True).stdout
    for line in listing.splitlines():
        if f"{repository}/{model}/" in line:
            return int(line.split()[0])
    raise AssertionError(f"no stub process serves {model}:\n{listing}")


def test_a_dead_model_process_and_a_dead_triton_cost_no_wrong_answer_and_service_comes_back(tmp_path_factory) -> None:
    images = load_split()[2].astype(np.float32)
    repository = private_repository(tmp_path_factory, "faults")
    env = {"INFERSCALE_TRITON_HEALTH_SECONDS": "0.2", "INFERSCALE_CATALOG_TTL_SECONDS": "0.2"}
    # Explicit model control: a polling Triton would also reload models while the test kills them.
    with private_suite(tmp_path_factory, "faults", repository, env, model_control_mode="explicit") as suite:
        with suite.channel("router") as channel:
            router = router_service_pb2_grpc.RouterServiceStub(channel)

            def single(index: int) -> router_service_pb2.InferResponse:
                request = router_service_pb2.InferRequest(
                    task="digits", inputs=[from_numpy("IMAGE", images[index][None, :])],
                    strategy=common_pb2.STRATEGY_SINGLE, model_name="digits_linear", skip_cache=True,
                )
                return router.Infer(request, timeout=20)

            assert single(0).answer.label
            # Triton 2.51 stays live and calls the model ready while its process is dead, and fails
            # every call to it. The orchestrator reloads the model and runs the call again.
            os.kill(stub_pid(str(repository), "digits_linear"), signal.SIGKILL)
            answers = [single(index) for index in range(1, 21)]
            assert all(a.answer.label and a.steps[0].decision == common_pb2.DECISION_ACCEPT for a in answers)

            # The only Triton dies: a clear UNAVAILABLE, and no hang (a hang would end at the
            # call's deadline, as DEADLINE_EXCEEDED).
            assert suite.triton is not None
            suite.triton.stop()
            with pytest.raises(grpc.RpcError) as raised:
                single(21)
            assert raised.value.code() == grpc.StatusCode.UNAVAILABLE and "Triton" in raised.value.details()
            # It comes back on the same ports: service resumes without restarting InferScale.
            suite.triton.start()

            def answered() -> bool:
                try:
                    return bool(single(22).answer.label)
                except grpc.RpcError:
                    return False

            eventually(answered, what="requests to succeed once Triton is back")


def test_requests_keep_succeeding_while_the_caches_redis_is_dead_and_hits_return_after(tmp_path_factory) -> None:
    redis_server = RedisServer(system_binary("redis-server"), tmp_path_factory.mktemp("redis")).start()
    images = load_split()[2].astype(np.float32)
    repository = private_repository(tmp_path_factory, "redis-faults")
    env = {"INFERSCALE_CACHE_BACKEND": "redis", "INFERSCALE_CACHE_REDIS_URL": redis_server.url}
    try:
        with private_suite(tmp_path_factory, "redis-faults", repository, env) as suite:
            with suite.channel("router") as channel:
                router = router_service_pb2_grpc.RouterServiceStub(channel)

                def infer(index: int) -> router_service_pb2.InferResponse:
                    request = router_service_pb2.InferRequest(task="digits", inputs=[from_numpy("IMAGE", images[index][None, :])])
                    return router.Infer(request, timeout=20)

                infer(0)
                assert infer(0).cache_level == common_pb2.CACHE_LEVEL_L4_FINAL_RESULT
                redis_server.kill()
                answers = [infer(index) for index in range(1, 11)]
                # The requests are answered, uncached, each within its deadline.
                assert all(a.answer.label and a.cache_level == common_pb2.CACHE_LEVEL_UNSPECIFIED for a in answers)
                redis_server.start()
                # The router skips the cache that failed until a probe finds it back; then an
                # answer is stored again, and the same request hits it.
                eventually(
                    lambda: infer(12).cache_level == common_pb2.CACHE_LEVEL_L4_FINAL_RESULT,
                    what="hits to return once Redis is back",
                )
    finally:
        redis_server.stop()
