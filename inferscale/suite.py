"""Brings the whole suite up on one machine: Triton (embedded or external) and the four services as processes.

Used by the demonstration, the benchmarks and the tests, so that all of them run the same real
processes the same way.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

from inferscale.rpc import wait_until_serving
from inferscale.settings import (
    DEFAULT_CACHE_PORT,
    DEFAULT_MONITOR_METRICS_PORT,
    DEFAULT_MONITOR_PORT,
    DEFAULT_ORCHESTRATOR_PORT,
    DEFAULT_ROUTER_PORT,
    DEFAULT_TRITON_GRPC_PORT,
)
from inferscale.tls import TlsSettings
from inferscale.triton.launcher import EmbeddedTriton, TritonSettings, otlp_traces_url

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
SERVICES = ("cache", "monitor", "orchestrator", "router")


def free_port() -> int:
    """Returns a TCP port that was free a moment ago on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class SuitePorts:
    """The ports the suite's processes listen on."""

    router: int = DEFAULT_ROUTER_PORT
    orchestrator: int = DEFAULT_ORCHESTRATOR_PORT
    cache: int = DEFAULT_CACHE_PORT
    monitor: int = DEFAULT_MONITOR_PORT
    monitor_metrics: int = DEFAULT_MONITOR_METRICS_PORT
    triton_grpc: int = DEFAULT_TRITON_GRPC_PORT
    triton_http: int = 8000
    triton_metrics: int = 8002

    @classmethod
    def free(cls) -> SuitePorts:
        """Picks free ports for every process, as the tests do."""
        return cls(*(free_port() for _ in range(8)))


@dataclass
class Suite:
    """The suite's processes. ``triton_url`` set means an external Triton and none is started."""

    model_repository: pathlib.Path = REPO_ROOT / "model_repository"
    ports: SuitePorts = field(default_factory=SuitePorts)
    triton_url: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    log_dir: pathlib.Path | None = None
    triton_settings: TritonSettings | None = None
    triton: EmbeddedTriton | None = None
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def tls(self) -> TlsSettings | None:
        """The TLS settings the suite's services run with, for clients that reach them."""
        return TlsSettings.from_env({**os.environ, **self.env})

    def address(self, service: str) -> str:
        """The "host:port" clients use to reach ``service`` (router, orchestrator, cache, monitor)."""
        return f"127.0.0.1:{getattr(self.ports, service)}"

    @property
    def metrics_url(self) -> str:
        """The monitor's Prometheus page."""
        return f"http://127.0.0.1:{self.ports.monitor_metrics}/metrics"

    def start(self, timeout_seconds: float = 180.0) -> Suite:
        """Starts Triton (unless external) and every service, and returns when all report SERVING."""
        if self.log_dir is None:
            self.log_dir = pathlib.Path(tempfile.mkdtemp(prefix="inferscale-logs-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # A suite starts with an empty memory, even in a log folder an earlier suite used.
        for stale in self.log_dir.glob("monitor.sqlite3*"):
            stale.unlink()
        if self.triton_url is None:
            settings = self.triton_settings or TritonSettings(
                model_repository=self.model_repository,
                grpc_port=self.ports.triton_grpc,
                http_port=self.ports.triton_http,
                metrics_port=self.ports.triton_metrics,
                log_path=self.log_dir / "tritonserver.log",
            )
            if self.triton_settings is None:
                # Triton exports where the services export, as the suite's environment says.
                settings = dataclasses.replace(settings, otlp_traces_url=otlp_traces_url({**os.environ, **self.env}))
            self.triton = EmbeddedTriton(settings)
            self.triton.start(timeout_seconds)
            self.triton_url = self.triton.grpc_url
        try:
            for service in SERVICES:
                self.start_service(service, timeout_seconds)
        except BaseException:
            self.stop()
            raise
        return self

    def _service_env(self) -> dict[str, str]:
        env = os.environ.copy()
        env.update(
            {
                "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")])),
                "INFERSCALE_TRITON_URL": self.triton_url or "",
                "INFERSCALE_MONITOR_METRICS_PORT": str(self.ports.monitor_metrics),
                "INFERSCALE_MONITOR_METRICS_HOST": "127.0.0.1",
                # The suite's monitor remembers feedback and policies across its own restarts,
                # not across suites.
                "INFERSCALE_MONITOR_DB": str(self.log_dir / "monitor.sqlite3") if self.log_dir else "off",
            }
        )
        for service in SERVICES:
            port = getattr(self.ports, service)
            env[f"INFERSCALE_{service.upper()}_LISTEN"] = f"127.0.0.1:{port}"
            env[f"INFERSCALE_{service.upper()}_ADDRESS"] = f"127.0.0.1:{port}"
        env.update(self.env)
        return env

    def start_service(self, service: str, timeout_seconds: float = 60.0) -> None:
        """Starts one service's process (again, after a kill) and waits until it serves."""
        assert self.log_dir is not None
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / f"{service}.log", "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", f"services.{service}.server"],
                cwd=REPO_ROOT,
                env=self._service_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.processes[service] = process
        try:
            wait_until_serving(self.address(service), timeout_seconds=timeout_seconds, tls=self.tls)
        except TimeoutError:
            if process.poll() is not None:
                raise RuntimeError(f"{service} exited with {process.returncode}:\n{self.log_tail(service)}") from None
            raise
        if process.poll() is not None:
            # Something else answered on the port: this process failed to bind and exited.
            raise RuntimeError(
                f"{service} exited with {process.returncode} while {self.address(service)} answered for another "
                f"server; is the port taken?\n{self.log_tail(service)}"
            )

    def log_tail(self, service: str, lines: int = 40) -> str:
        """Returns the end of a service's log."""
        assert self.log_dir is not None
        path = self.log_dir / f"{service}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def kill_service(self, service: str) -> None:
        """Kills a service at once, as a crash would."""
        process = self.processes.pop(service)
        process.kill()
        process.wait()

    def stop(self) -> None:
        """Stops the services (SIGTERM lets them drain and flush spans), then Triton."""
        stopping = [self.processes.pop(service) for service in reversed(SERVICES) if service in self.processes]
        for process in stopping:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in stopping:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.triton is not None:
            self.triton.stop()
            self.triton = None

    def __enter__(self) -> Suite:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
