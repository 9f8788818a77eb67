"""Which gRPC calls the instrumentation traces: every request's calls, not the background ones."""

from __future__ import annotations

import grpc
import pytest

from inferscale.telemetry import is_traced


class Details(grpc.HandlerCallDetails):
    def __init__(self, method: str | bytes) -> None:
        self.method = method
        self.invocation_metadata = ()


@pytest.mark.parametrize(
    "method",
    [
        "/inferscale.v1.RouterService/Infer",
        "/inferscale.v1.OrchestratorService/Execute",
        "/inferscale.v1.CacheService/Lookup",
        b"/inference.GRPCInferenceService/ModelInfer",
        # A method merely named like a background one, in another position, is still traced.
        "/inferscale.v1.MonitorService/RecordEventsSummary",
    ],
)
def test_request_calls_are_traced(method: str | bytes) -> None:
    assert is_traced(Details(method))


@pytest.mark.parametrize(
    "method",
    [
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "/inferscale.v1.MonitorService/RecordEvents",
        b"/inferscale.v1.MonitorService/StreamEvents",
    ],
)
def test_probes_reflection_and_event_batches_are_not(method: str | bytes) -> None:
    assert not is_traced(Details(method))
