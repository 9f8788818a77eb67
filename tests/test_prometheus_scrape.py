"""A real Prometheus server (Debian's package) scrapes the monitor, and a metric is queried back."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest

from inferscale.models.digits import load_split
from inferscale.suite import Suite, free_port
from inferscale.tensors import from_numpy
from inferscale.v1 import monitor_service_pb2, router_service_pb2
from tests.conftest import system_binary

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def prometheus(suite: Suite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = system_binary("prometheus")
    workdir = tmp_path_factory.mktemp("prometheus")
    config = workdir / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: inferscale-monitor\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{suite.ports.monitor_metrics}']\n"
    )
    address = f"127.0.0.1:{free_port()}"
    with open(workdir / "prometheus.log", "wb") as log:
        process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}", f"--web.listen-address={address}"],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            yield f"http://{address}"
        finally:
            process.terminate()
            process.wait(timeout=30)


def query(base: str, promql: str) -> list[dict]:
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    with urllib.request.urlopen(url, timeout=5) as reply:
        body = json.loads(reply.read())
    assert body["status"] == "success", body
    return body["data"]["result"]


def test_prometheus_scrapes_the_monitor_and_returns_its_request_count(prometheus: str, router, monitor) -> None:
    images = load_split().x_holdout.astype(np.float32)
    for index in range(5):
        router.Infer(
            router_service_pb2.InferRequest(task="digits", inputs=[from_numpy("IMAGE", images[index][None, :] + 0.875)]),
            timeout=30,
        )
    deadline = time.monotonic() + 60
    while True:
        expected = sum(
            s.requests for s in monitor.GetStats(monitor_service_pb2.GetStatsRequest(), timeout=5).strategies
        )
        try:
            result = query(prometheus, "sum(inferscale_requests_total)")
        except OSError:
            result = []  # Prometheus still starting
        if result and float(result[0]["value"][1]) == expected:
            break
        assert time.monotonic() < deadline, f"Prometheus never reported {expected} requests: {result}"
        time.sleep(0.5)
    (up,) = query(prometheus, 'up{job="inferscale-monitor"}')
    assert up["value"][1] == "1"
    assert query(prometheus, "inferscale_steps_total"), "step counters are scraped too"
