"""Starts the ``tritonserver`` binary shipped in the nvidia-pytriton wheel, waits for it, stops it cleanly.

The wheel carries the server, the python backend and one backend stub per Python version; the
stub must match the Python whose packages the models import, so it is copied next to the
backend in a private work directory before the server starts. The stub finds this environment's
packages through PATH (the environment's ``bin`` first) and links the matching libpython.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import pathlib
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import pytriton

from inferscale.settings import SettingError
from inferscale.triton.client import REPOSITORY_KEY_HEADER, REPOSITORY_KEY_VARIABLE

LOG = logging.getLogger(__name__)
_DIST = pathlib.Path(pytriton.__file__).parent / "tritonserver"
# Triton 2.51's python backend now and then aborts while it loads several python models at once
# ("terminate called after throwing an instance of 'boost::interprocess::lock_exception'"; seen
# twice in some sixty starts during this project's test runs), and now and then one model's
# python stub never finishes initializing, the server up but never ready (seen once, a replica
# restarted under load on two busy cores; the symptom of triton-inference-server/server#5211). A
# fresh start succeeds. Such an abort, or a start that is not ready in time, is retried, up to
# this many starts in all. A server that exits on its own (a broken model, a taken port) is not,
# except when the port taken is one the launcher picked: then it picks again (see start()).
_START_ATTEMPTS = 3
# A start that keeps loading models is waited for up to this many times its timeout in all.
START_PROGRESS_CAP = 5
_STARTUP_ABORT = "boost::interprocess::lock_exception"
# How Triton 2.51 exits when its gRPC or HTTP port is taken ("failed to start GRPC service:
# Unavailable - Socket '0.0.0.0:8001' already in use").
_PORT_TAKEN = "already in use"


def free_port() -> int:
    """Returns a TCP port that was free a moment ago on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
_LIBS = pathlib.Path(pytriton.__file__).parent.parent / "nvidia_pytriton.libs"


def otlp_traces_url(env: Mapping[str, str] = os.environ) -> str | None:
    """Returns where Triton sends its spans, from OpenTelemetry's standard variables; None when nowhere.

    Triton speaks OTLP over HTTP only and wants the full path of the traces resource. With no
    endpoint configured (or ``OTEL_TRACES_EXPORTER=none``) Triton's tracing stays off, as the
    services' export does: nothing would receive the spans, and Triton 2.51 tracing every
    request with its exporter failing was seen to crash with SIGSEGV under load (upstream issue
    triton-inference-server/server#7795).
    """
    if env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return None
    explicit = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if explicit:
        return explicit
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    return base.rstrip("/") + "/v1/traces" if base else None


# Triton splits its restricted-API flags at ",", ":" and "=": a key holds none of them.
_REPOSITORY_KEY = re.compile(r"[A-Za-z0-9._~-]{16,}")


@functools.cache
def process_repository_key() -> str:
    """The key of Triton's repository API: INFERSCALE_TRITON_REPOSITORY_KEY, or one generated when it is unset.

    A generated key is put into this process's environment, so that the services it starts
    (the suite, the demo) present the same key to the Triton it starts. Raises SettingError when
    the setting cannot be a key.
    """
    key = os.environ.get(REPOSITORY_KEY_VARIABLE, "").strip()
    if not key:
        key = os.environ[REPOSITORY_KEY_VARIABLE] = secrets.token_urlsafe(32)
    if not _REPOSITORY_KEY.fullmatch(key):
        raise SettingError(f"{REPOSITORY_KEY_VARIABLE} must be at least 16 characters of A-Z, a-z, 0-9, '.', '_', '~' and '-'")
    return key


@dataclass(frozen=True)
class TritonSettings:
    """How to start the embedded Triton."""

    model_repository: pathlib.Path
    # Triton binds only the ports it is given; 0 has the launcher pick a free one at start.
    grpc_port: int = 8001
    http_port: int = 8000
    metrics_port: int = 8002
    # "poll" follows changes to the repository on disk; "explicit" loads through the API only.
    model_control_mode: str = "poll"
    repository_poll_seconds: int = 2
    # Triton's OpenTelemetry export, None for none; rate 1 traces every request, so that a
    # caller's trace always gets Triton's spans joined to it.
    otlp_traces_url: str | None = field(default_factory=otlp_traces_url)
    trace_rate: int = 1
    log_path: pathlib.Path | None = None
    # Loading, unloading and listing models (Triton's repository API, over gRPC and HTTP) need
    # this key; the rest of the API stays open to the suite's network.
    repository_key: str = field(default_factory=process_repository_key, repr=False)
    exit_timeout_seconds: int = 10

    def command(self, tritonserver: pathlib.Path, backend_dir: pathlib.Path, shm_prefix: str) -> list[str]:
        """Returns the server's command line; ``shm_prefix`` names its python-backend shared memory."""
        args = [
            str(tritonserver),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={backend_dir}",
            f"--grpc-port={self.grpc_port}",
            f"--http-port={self.http_port}",
            f"--metrics-port={self.metrics_port}",
            "--allow-gpu-metrics=false",
            # One model loads at a time: the python backend's stubs, started several at once, now
            # and then abort the server (see _START_ATTEMPTS). With the text models and two busy
            # cores that became three aborts in a row on one fresh-clone run; loading one by one
            # took 31 s against 15 s side by side, measured one after the other on a loaded machine.
            "--model-load-thread-count=1",
            f"--model-control-mode={self.model_control_mode}",
            f"--exit-timeout-secs={self.exit_timeout_seconds}",
            # Each server its own shared-memory regions: two servers on one machine, or one
            # restarted after a crash left its regions behind, must not share their locks.
            f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
            f"--grpc-restricted-protocol=model-repository:{REPOSITORY_KEY_HEADER}={self.repository_key}",
            f"--http-restricted-api=model-repository:{REPOSITORY_KEY_HEADER}={self.repository_key}",
        ]
        if self.otlp_traces_url:
            args += self._trace_args()
        if self.model_control_mode == "poll":
            args.append(f"--repository-poll-secs={self.repository_poll_seconds}")
        if self.model_control_mode == "explicit":
            args.append("--load-model=*")
        return args

    def _trace_args(self) -> list[str]:
        return [
            "--trace-config=mode=opentelemetry",
            f"--trace-config=opentelemetry,url={self.otlp_traces_url}",
            "--trace-config=opentelemetry,resource=service.name=triton",
            "--trace-config=opentelemetry,resource=service.namespace=inferscale",
            # A short export delay keeps Triton's spans close behind the services' spans.
            "--trace-config=opentelemetry,bsp_schedule_delay=200",
            f"--trace-config=rate={self.trace_rate}",
            "--trace-config=level=TIMESTAMPS",
        ]


class TritonStartError(RuntimeError):
    """Triton exited or did not become ready; the message ends with its last log lines."""


class TritonStartTimeout(TritonStartError):
    """Triton stayed up but was not ready in time: a model never finished loading."""


class EmbeddedTriton:
    """One tritonserver process from the nvidia-pytriton wheel, used as a context manager or by start/stop."""

    def __init__(self, settings: TritonSettings) -> None:
        self.settings = settings
        # The ports as asked for, 0 for one to pick, until a start succeeds; then the ports bound.
        self._asked = settings
        self._work_dir: pathlib.Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_path: pathlib.Path | None = None
        self._shm_prefix = f"inferscale_{uuid.uuid4().hex[:12]}_"

    @property
    def grpc_url(self) -> str:
        """The "host:port" of Triton's gRPC endpoint."""
        return f"127.0.0.1:{self.settings.grpc_port}"

    @property
    def http_url(self) -> str:
        """The base URL of Triton's HTTP endpoint."""
        return f"http://127.0.0.1:{self.settings.http_port}"

    @property
    def metrics_url(self) -> str:
        """The URL of Triton's Prometheus metrics."""
        return f"http://127.0.0.1:{self.settings.metrics_port}/metrics"

    @property
    def running(self) -> bool:
        """Whether the server's process is up (False before its start and once it has exited)."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._process.pid if self._process else None

    def _prepare_backends(self, work_dir: pathlib.Path) -> pathlib.Path:
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = _DIST / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not stub.exists():
            raise TritonStartError(f"nvidia-pytriton ships no python backend stub for Python {version}")
        backends = work_dir / "backends"
        shutil.copytree(_DIST / "backends", backends)
        shutil.copy2(stub, backends / "python" / "triton_python_backend_stub")
        return backends

    def _environment(self) -> dict[str, str]:
        env = os.environ.copy()
        libdirs = [str(_LIBS), sysconfig.get_config_var("LIBDIR") or ""]
        if env.get("LD_LIBRARY_PATH"):
            libdirs.append(env["LD_LIBRARY_PATH"])
        env["LD_LIBRARY_PATH"] = ":".join(d for d in libdirs if d)
        env["PATH"] = f"{pathlib.Path(sys.executable).parent}:{env.get('PATH', '')}"
        return env

    def start(self, timeout_seconds: float = 180.0) -> None:
        """Starts the server and returns once it and every model in the repository are ready.

        A port given as 0 is picked free for each attempt, and an attempt that finds a picked
        port taken meanwhile (by another process, between the pick and Triton's bind) is retried
        with fresh ones. Once started, the server keeps its ports: a restart binds the same ones.
        """
        picks_ports = 0 in (self._asked.grpc_port, self._asked.http_port, self._asked.metrics_port)
        for attempt in range(1, _START_ATTEMPTS + 1):
            self.settings = replace(
                self._asked,
                grpc_port=self._asked.grpc_port or free_port(),
                http_port=self._asked.http_port or free_port(),
                metrics_port=self._asked.metrics_port or free_port(),
            )
            self._launch()
            try:
                self._wait_ready(timeout_seconds)
                self._asked = self.settings
                return
            except TritonStartError as error:
                process = self._process
                aborted = process is not None and (process.returncode or 0) < 0 and _STARTUP_ABORT in self.log_tail()
                port_taken = picks_ports and process is not None and process.returncode is not None and _PORT_TAKEN in self.log_tail()
                if process is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)  # its backend stubs, which outlive an abort
                    self._process = None
                self._remove_leftovers()
                hung = isinstance(error, TritonStartTimeout)
                if not (aborted or hung or port_taken) or attempt == _START_ATTEMPTS:
                    raise
                if port_taken:
                    why = "found a port it had picked taken by another process"
                elif hung:
                    why = "was not ready in time"
                else:
                    why = f"aborted while loading models ({_STARTUP_ABORT})"
                LOG.warning("tritonserver %s; starting it again", why)
                self._shm_prefix = f"inferscale_{uuid.uuid4().hex[:12]}_"

    def _launch(self) -> None:
        self._work_dir = pathlib.Path(tempfile.mkdtemp(prefix="inferscale-triton-"))
        backends = self._prepare_backends(self._work_dir)
        self._log_path = self.settings.log_path or self._work_dir / "tritonserver.log"
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._log_path, "ab") as log:
            self._process = subprocess.Popen(
                self.settings.command(_DIST / "bin" / "tritonserver", backends, self._shm_prefix),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._environment(),
                start_new_session=True,
            )

    def _wait_ready(self, timeout_seconds: float) -> None:
        """Waits for the server and its models; a start that writes nothing to its log for
        ``timeout_seconds`` (a backend stub that never finishes initializing) has hung.

        Each model loaded or failed writes a line, so a slow start on a busy machine is told from
        a hung one by its progress rather than by its total time, which grows with the repository
        and the load. The total is still capped, at START_PROGRESS_CAP times the timeout.
        """
        started = time.monotonic()
        deadline = started + timeout_seconds
        cap = started + START_PROGRESS_CAP * timeout_seconds
        logged = self._log_size()
        while time.monotonic() < deadline:
            if (size := self._log_size()) != logged:
                logged, deadline = size, min(time.monotonic() + timeout_seconds, cap)
            assert self._process is not None
            if self._process.poll() is not None:
                raise TritonStartError(
                    f"tritonserver exited with {self._process.returncode}:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=1) as reply:
                    if reply.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        self.stop()
        raise TritonStartTimeout(
            f"tritonserver not ready: nothing logged for {timeout_seconds} s, or still loading after "
            f"{START_PROGRESS_CAP * timeout_seconds:.0f} s:\n{self.log_tail()}"
        )

    def _log_size(self) -> int:
        try:
            return self._log_path.stat().st_size if self._log_path is not None else 0
        except FileNotFoundError:
            return 0

    def log_tail(self, lines: int = 30) -> str:
        """Returns the last lines of the server's log."""
        if self._log_path is None or not self._log_path.exists():
            return ""
        return "\n".join(self._log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """Stops the server: SIGTERM lets it unload models; SIGKILL follows if it lingers."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=self.settings.exit_timeout_seconds + 10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self._remove_leftovers()

    def _remove_leftovers(self) -> None:
        if self._work_dir is not None:
            shutil.rmtree(self._work_dir, ignore_errors=True)
            self._work_dir = None
        for region in pathlib.Path("/dev/shm").glob(f"{self._shm_prefix}*"):
            region.unlink(missing_ok=True)

    def kill(self) -> None:
        """Kills the server and its backend stubs at once, as a crash would."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        self._remove_leftovers()

    def __enter__(self) -> EmbeddedTriton:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main() -> None:
    """Runs the embedded Triton in the foreground until interrupted (``python -m inferscale.triton.launcher``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-repository", type=pathlib.Path, default=pathlib.Path("model_repository"))
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--metrics-port", type=int, default=8002)
    args = parser.parse_args()
    settings = TritonSettings(
        model_repository=args.model_repository.resolve(),
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        metrics_port=args.metrics_port,
    )
    with EmbeddedTriton(settings) as server:
        print(f"Triton ready: gRPC {server.grpc_url}, HTTP {server.http_url}, metrics {server.metrics_url}", flush=True)
        print(f"Its repository API needs the key in {REPOSITORY_KEY_VARIABLE}; give the orchestrator the same.", flush=True)
        stop_signals = {signal.SIGINT, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
        signal.sigwait(stop_signals)


if __name__ == "__main__":
    main()
