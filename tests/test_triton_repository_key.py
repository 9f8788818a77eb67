"""Triton's repository API is restricted to a key: a load or unload without it is refused, the orchestrator's presents it."""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
import tritonclient.grpc as triton_grpc
from tritonclient.utils import InferenceServerException

from inferscale.suite import Suite, SuitePorts, free_port
from inferscale.triton.launcher import EmbeddedTriton, TritonSettings
from inferscale.v1 import orchestrator_service_pb2, orchestrator_service_pb2_grpc
from tests.conftest import MODEL_REPOSITORY, ensure_trained_models

pytestmark = pytest.mark.integration
MODEL = "digits_linear"


@pytest.fixture(scope="module")
def explicit_triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedTriton]:
    """A Triton that loads and unloads models only through its repository API, serving one model."""
    ensure_trained_models()
    root = tmp_path_factory.mktemp("repository-key")
    shutil.copytree(MODEL_REPOSITORY / MODEL, root / "model_repository" / MODEL, ignore=shutil.ignore_patterns("__pycache__"))
    server = EmbeddedTriton(
        TritonSettings(
            model_repository=root / "model_repository",
            grpc_port=free_port(),
            http_port=free_port(),
            metrics_port=free_port(),
            model_control_mode="explicit",
            otlp_traces_url=None,
            log_path=root / "tritonserver.log",
        )
    )
    server.start()
    yield server
    server.stop()


def test_a_load_without_the_key_is_refused_while_the_orchestrators_load_and_unload_work(
    explicit_triton: EmbeddedTriton, tmp_path_factory: pytest.TempPathFactory
) -> None:
    client = triton_grpc.InferenceServerClient(explicit_triton.grpc_url)
    for call in (client.unload_model, client.load_model):
        with pytest.raises(InferenceServerException) as raised:
            call(MODEL)
        assert "restricted" in raised.value.message()
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(
            urllib.request.Request(f"{explicit_triton.http_url}/v2/repository/models/{MODEL}/unload", data=b"{}", method="POST"),
            timeout=10,
        )
    refused.value.close()
    assert refused.value.code == 403
    assert client.is_model_ready(MODEL)

    orchestrator = Suite(
        ports=SuitePorts.free(),
        triton_url=explicit_triton.grpc_url,
        log_dir=tmp_path_factory.mktemp("repository-key-logs"),
        env={"OTEL_TRACES_EXPORTER": "none", "INFERSCALE_CACHE_ADDRESS": "off", "INFERSCALE_MONITOR_ADDRESS": "off"},
    )
    try:
        orchestrator.start_service("orchestrator")
        with orchestrator.channel("orchestrator") as channel:
            stub = orchestrator_service_pb2_grpc.OrchestratorServiceStub(channel)
            admin = orchestrator.metadata("admin")
            # The registry read the repository index with the key: it knows the model to unload.
            stub.UnloadModel(orchestrator_service_pb2.UnloadModelRequest(model_name=MODEL), timeout=60, metadata=admin)
            assert not client.is_model_ready(MODEL)
            loaded = stub.LoadModel(orchestrator_service_pb2.LoadModelRequest(model_name=MODEL), timeout=120, metadata=admin)
        assert loaded.model.ready
        assert client.is_model_ready(MODEL)
    finally:
        orchestrator.stop()
        client.close()
