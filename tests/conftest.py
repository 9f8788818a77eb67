"""Session-wide real servers for the integration tests: an OTLP receiver, Triton and the four services."""

from __future__ import annotations

import os
import pathlib
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest

from inferscale.auth import SERVICE_TOKEN_VARIABLE
from inferscale.suite import REPO_ROOT, Suite, SuitePorts
from inferscale.triton.launcher import TritonSettings
from inferscale.v1 import (
    cache_service_pb2_grpc,
    monitor_service_pb2_grpc,
    orchestrator_service_pb2_grpc,
    router_service_pb2_grpc,
)
from tests.otlp_receiver import OtlpReceiver

MODEL_REPOSITORY = REPO_ROOT / "model_repository"
# A service started inside the test process (tests/test_event_stream.py) reads its credentials
# from the environment, and the channels opened here present them; suites make their own.
os.environ.setdefault(SERVICE_TOKEN_VARIABLE, secrets.token_urlsafe(24))


def system_binary(name: str) -> str:
    """The path of a server binary `make system-packages` installs; fails under CI, skips elsewhere, when missing."""
    binary = shutil.which(name)
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is not installed; `make test` installs it (make system-packages)")
        pytest.skip(f"{name} is not installed; run `make system-packages`")
    return binary


def ensure_trained_models() -> None:
    """Trains the sample models when their weights are missing (a fresh clone without `make`)."""
    if not list(MODEL_REPOSITORY.glob("*/1/weights.npz")):
        subprocess.run([sys.executable, "-m", "inferscale.models.train"], cwd=REPO_ROOT, check=True)


def private_repository(factory: pytest.TempPathFactory, name: str) -> pathlib.Path:
    """Copies the trained sample repository where a test may change it without touching the others."""
    ensure_trained_models()
    repository = factory.mktemp(name) / "model_repository"
    shutil.copytree(MODEL_REPOSITORY, repository, ignore=shutil.ignore_patterns("__pycache__"))
    return repository


def private_suite(
    factory: pytest.TempPathFactory,
    name: str,
    repository: pathlib.Path,
    env: dict[str, str],
    *,
    model_control_mode: str = "poll",
    repository_poll_seconds: int = 2,
) -> Suite:
    """A suite (not yet started) with its own Triton on ``repository``, free ports and no tracing."""
    ports = SuitePorts.free()
    log_dir = factory.mktemp(f"{name}-logs")
    return Suite(
        model_repository=repository,
        ports=ports,
        log_dir=log_dir,
        env={"OTEL_TRACES_EXPORTER": "none", **env},
        triton_settings=TritonSettings(
            model_repository=repository,
            grpc_port=ports.triton_grpc,
            http_port=ports.triton_http,
            metrics_port=ports.triton_metrics,
            model_control_mode=model_control_mode,
            repository_poll_seconds=repository_poll_seconds,
            otlp_traces_url=None,
            log_path=log_dir / "tritonserver.log",
        ),
    )


@pytest.fixture(scope="session")
def otlp_receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="session")
def suite(otlp_receiver: OtlpReceiver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    ensure_trained_models()
    running = Suite(
        model_repository=MODEL_REPOSITORY,
        ports=SuitePorts.free(),
        log_dir=tmp_path_factory.mktemp("suite-logs"),
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "INFERSCALE_SHUTDOWN_GRACE_SECONDS": "2",
            # Every semantic hit is audited, and the cache reports often, so that tests see both soon.
            "INFERSCALE_SEMANTIC_AUDIT_RATE": "1",
            "INFERSCALE_CACHE_STATS_INTERVAL_SECONDS": "0.2",
            "INFERSCALE_TRITON_STATS_SECONDS": "0.5",
        },
    )
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def router(suite: Suite) -> Iterator[router_service_pb2_grpc.RouterServiceStub]:
    with suite.channel("router") as channel:
        yield router_service_pb2_grpc.RouterServiceStub(channel)


@pytest.fixture(scope="session")
def orchestrator(suite: Suite) -> Iterator[orchestrator_service_pb2_grpc.OrchestratorServiceStub]:
    with suite.channel("orchestrator") as channel:
        yield orchestrator_service_pb2_grpc.OrchestratorServiceStub(channel)


@pytest.fixture(scope="session")
def cache(suite: Suite) -> Iterator[cache_service_pb2_grpc.CacheServiceStub]:
    with suite.channel("cache") as channel:
        yield cache_service_pb2_grpc.CacheServiceStub(channel)


@pytest.fixture(scope="session")
def monitor(suite: Suite) -> Iterator[monitor_service_pb2_grpc.MonitorServiceStub]:
    with suite.channel("monitor") as channel:
        yield monitor_service_pb2_grpc.MonitorServiceStub(channel)
