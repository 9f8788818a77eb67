"""Brings the whole suite up on one machine: Triton (embedded or external) and the four services as processes.

Used by the demonstration, the benchmarks and the tests, so that all of them run the same real
processes the same way.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import grpc

from inferscale.auth import (
    ADMIN_TOKEN_VARIABLE,
    CLIENT_TOKEN_VARIABLE,
    CLIENT_TOKENS_FILE_VARIABLE,
    SERVICE_TOKEN_VARIABLE,
    bearer_metadata,
)
from inferscale.rpc import PORT_FILE_VARIABLE, open_blocking_channel, open_service_channel, wait_until_serving
from inferscale.settings import (
    DEFAULT_CACHE_PORT,
    DEFAULT_MONITOR_METRICS_PORT,
    DEFAULT_MONITOR_PORT,
    DEFAULT_ORCHESTRATOR_PORT,
    DEFAULT_ROUTER_PORT,
    DEFAULT_TRITON_GRPC_PORT,
)
from inferscale.tls import TlsSettings
from inferscale.triton.launcher import EmbeddedTriton, TritonSettings, free_port, otlp_traces_url

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
# In the order they start: each service's peers are up (and their ports known) before it starts.
SERVICES = ("monitor", "cache", "orchestrator", "router")
# How often a monitor whose /metrics port was taken between the pick and its bind is started again.
_METRICS_PORT_ATTEMPTS = 3
# What Python says when a port it binds is taken.
_ADDRESS_IN_USE = "Address already in use"


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
        """Port 0 for every process, as the tests use: each binds a free port itself, and the suite
        learns which as it starts (``Suite.ports`` then holds the ports bound)."""
        return cls(*(0 for _ in range(8)))


class _PortTaken(RuntimeError):
    """A service exited because a port it was to bind was taken."""


def _write_secret(path: pathlib.Path, text: str) -> None:
    """Writes ``text`` to a file only its owner can read, afresh: an earlier suite's file holds its own tokens."""
    path.unlink(missing_ok=True)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
        file.write(text)


@dataclass(frozen=True)
class SuiteCredentials:
    """The tokens a suite's services are started with, made afresh for each suite unless given."""

    service_token: str
    admin_token: str
    client_token: str
    client_id: str = "suite-client"

    @classmethod
    def generate(cls) -> SuiteCredentials:
        """New random tokens."""
        return cls(*(secrets.token_urlsafe(24) for _ in range(3)))

    def metadata(self, role: str) -> list[tuple[str, str]]:
        """The metadata that carries the token of ``role``: "client", "service" or "admin"."""
        return bearer_metadata(getattr(self, f"{role}_token"))


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
    credentials: SuiteCredentials = field(default_factory=SuiteCredentials.generate)

    @property
    def tls(self) -> TlsSettings | None:
        """The TLS settings the suite's services run with, for clients that reach them."""
        return TlsSettings.from_env({**os.environ, **self.env})

    def address(self, service: str) -> str:
        """The "host:port" clients use to reach ``service`` (router, orchestrator, cache, monitor)."""
        return f"127.0.0.1:{getattr(self.ports, service)}"

    def channel(self, service: str, *, role: str | None = None) -> grpc.Channel:
        """A blocking channel to ``service`` that presents the token of ``role`` on every call that
        carries none of its own: by default the client token to the router, the service token to the others."""
        role = role or ("client" if service == "router" else "service")
        return open_blocking_channel(self.address(service), self.tls, token=getattr(self.credentials, f"{role}_token"))

    def aio_channel(self, service: str, *, role: str | None = None) -> grpc.aio.Channel:
        """As ``channel``, for grpc.aio."""
        role = role or ("client" if service == "router" else "service")
        return open_service_channel(self.address(service), self.tls, token=getattr(self.credentials, f"{role}_token"))

    def metadata(self, role: str) -> list[tuple[str, str]]:
        """The metadata that carries this suite's token of ``role``: "client", "service" or "admin"."""
        return self.credentials.metadata(role)

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
            bound = self.triton.settings
            self.ports = dataclasses.replace(
                self.ports, triton_grpc=bound.grpc_port, triton_http=bound.http_port, triton_metrics=bound.metrics_port
            )
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
        assert self.log_dir is not None
        tokens_file = self.log_dir / "client-tokens"
        credentials = self.credentials
        _write_secret(tokens_file, f"{credentials.client_id} {credentials.client_token}\n")
        # For a person's tools (`set -a; . credentials.env` before `inferscale ...`).
        _write_secret(
            self.log_dir / "credentials.env",
            f"{CLIENT_TOKEN_VARIABLE}={credentials.client_token}\n{SERVICE_TOKEN_VARIABLE}={credentials.service_token}\n"
            f"{ADMIN_TOKEN_VARIABLE}={credentials.admin_token}\n",
        )
        env.update(
            {
                SERVICE_TOKEN_VARIABLE: self.credentials.service_token,
                ADMIN_TOKEN_VARIABLE: self.credentials.admin_token,
                CLIENT_TOKENS_FILE_VARIABLE: str(tokens_file),
            }
        )
        for service in SERVICES:
            port = getattr(self.ports, service)
            env[f"INFERSCALE_{service.upper()}_LISTEN"] = f"127.0.0.1:{port}"
            env[f"INFERSCALE_{service.upper()}_ADDRESS"] = f"127.0.0.1:{port}"
        env.update(self.env)
        return env

    def start_service(self, service: str, timeout_seconds: float = 60.0) -> None:
        """Starts one service's process (again, after a kill) and waits until it serves.

        A service whose port is 0 binds a free one and reports it (rpc.report_port); ``ports``
        then holds it, and a restart binds the same port again.
        """
        assert self.log_dir is not None
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # prometheus_client reports no port back: the monitor's /metrics port is picked here, and
        # picked again if another process takes it before the monitor binds it.
        picks_metrics_port = service == "monitor" and self.ports.monitor_metrics == 0
        for attempt in range(1, _METRICS_PORT_ATTEMPTS + 1):
            if picks_metrics_port:
                self.ports = dataclasses.replace(self.ports, monitor_metrics=free_port())
            try:
                self._start_process(service, timeout_seconds)
                return
            except _PortTaken:
                if not picks_metrics_port or attempt == _METRICS_PORT_ATTEMPTS:
                    raise

    def _start_process(self, service: str, timeout_seconds: float) -> None:
        assert self.log_dir is not None
        log_path = self.log_dir / f"{service}.log"
        logged_before = log_path.stat().st_size if log_path.exists() else 0
        port_file = self.log_dir / f"{service}.port"
        port_file.unlink(missing_ok=True)
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", f"services.{service}.server"],
                cwd=REPO_ROOT,
                env={**self._service_env(), PORT_FILE_VARIABLE: str(port_file)},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.processes[service] = process
        deadline = time.monotonic() + timeout_seconds
        # Written once the process serves on the port it bound; a process that exits first failed.
        while not port_file.exists():
            if process.poll() is not None:
                with open(log_path, "rb") as log:
                    log.seek(logged_before)
                    said = log.read().decode(errors="replace")
                failure = _PortTaken if _ADDRESS_IN_USE in said else RuntimeError
                raise failure(f"{service} exited with {process.returncode}:\n{self.log_tail(service)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{service} did not report its port within {timeout_seconds} s:\n{self.log_tail(service)}")
            time.sleep(0.05)
        self.ports = dataclasses.replace(self.ports, **{service: int(port_file.read_text())})
        try:
            wait_until_serving(self.address(service), timeout_seconds=timeout_seconds, tls=self.tls)
        except TimeoutError:
            if process.poll() is not None:
                raise RuntimeError(f"{service} exited with {process.returncode}:\n{self.log_tail(service)}") from None
            raise
        if process.poll() is not None:
            raise RuntimeError(f"{service} exited with {process.returncode} once serving:\n{self.log_tail(service)}")

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
