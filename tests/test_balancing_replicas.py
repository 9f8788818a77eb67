"""Replicas of a service behind one target all take calls: the services' channels balance round robin over its addresses.

Two orchestrator processes on the session's Triton, and a router whose orchestrator target names
both (an ``ipv4:`` list, as a dns:/// name of a headless Service resolves to every pod). Each
replica counts what it served itself: its Execute spans, exported to a receiver of its own.
"""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from inferscale.models.digits import load_split
from inferscale.suite import Suite, SuiteCredentials, SuitePorts
from inferscale.tensors import from_numpy
from inferscale.v1 import router_service_pb2, router_service_pb2_grpc
from tests.otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.integration

REQUESTS = 12
EXECUTE = "/inferscale.v1.OrchestratorService/Execute"
# The replicas and the router work alone: no cache and no monitor that other tests count on.
ALONE = {"INFERSCALE_CACHE_ADDRESS": "off", "INFERSCALE_MONITOR_ADDRESS": "off", "INFERSCALE_SHUTDOWN_GRACE_SECONDS": "1"}


def process(suite: Suite, log_dir: pathlib.Path, credentials: SuiteCredentials, env: dict[str, str]) -> Suite:
    """A suite of its own for one process on the session's Triton, with the credentials the others share."""
    return Suite(
        ports=SuitePorts.free(),
        triton_url=suite.triton_url,
        log_dir=log_dir,
        credentials=credentials,
        env={**ALONE, **env},
    )


def test_a_router_sends_calls_to_every_orchestrator_replica_its_target_names(suite: Suite, tmp_path_factory) -> None:
    credentials = SuiteCredentials.generate()
    receivers = {name: OtlpReceiver() for name in ("a", "b")}
    replicas = {
        name: process(
            suite,
            tmp_path_factory.mktemp(f"orchestrator-{name}"),
            credentials,
            {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
        )
        for name, receiver in receivers.items()
    }
    image = load_split().x_holdout[0].astype(np.float32)
    request = router_service_pb2.InferRequest(task="digits", inputs=[from_numpy("IMAGE", image[None, :])], skip_cache=True)
    front = None
    try:
        for replica in replicas.values():
            replica.start_service("orchestrator")
        # Named once they run: each replica binds a free port of its own choosing.
        target = "ipv4:" + ",".join(replica.address("orchestrator") for replica in replicas.values())
        front = process(
            suite,
            tmp_path_factory.mktemp("router"),
            credentials,
            {"INFERSCALE_ORCHESTRATOR_ADDRESS": target, "OTEL_TRACES_EXPORTER": "none"},
        )
        front.start_service("router")
        with front.channel("router") as channel:
            router = router_service_pb2_grpc.RouterServiceStub(channel)
            for _ in range(REQUESTS):
                assert router.Infer(request, timeout=30).answer.label
    finally:
        if front is not None:
            front.stop()
        # A stopped replica has flushed its spans (SIGTERM shuts its tracer provider down).
        for replica in replicas.values():
            replica.stop()
    try:
        served = {name: sum(span.name == EXECUTE for span in receiver.spans) for name, receiver in receivers.items()}
    finally:
        for receiver in receivers.values():
            receiver.close()
    assert sum(served.values()) >= REQUESTS
    assert all(count > 0 for count in served.values()), f"Execute calls served per replica: {served}"
