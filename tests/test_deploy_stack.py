"""The CPU deployment for real: images built, deploy/compose.cpu.yaml brought up in Docker, faults survived.

Builds the images with deploy/build-images.sh (Docker's layer cache makes a rebuild quick), brings
the stack up on the host's network under a project name of its own and ports picked free, then
sends a bounded load through both routers from a client that balances over them and retries
UNAVAILABLE by gRPC service config, as a user's client would. Under that load it crashes one
router, one cache replica and one Triton container in turn (SIGKILL, so that the restart policy
brings each back), and requires that no request failed and that each crashed container came back
healthy. The stack, its volumes and its secrets are removed at the end; the images stay, as the
cache of the next build.

Needs root and a Docker engine (`make test` installs and starts one: deploy/start-dockerd.sh);
without them the test is skipped, and under CI it fails.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc
import numpy as np
import pytest

from inferscale.auth import BlockingTokenInterceptor
from inferscale.models.digits import load_split
from inferscale.rpc import CHANNEL_OPTIONS, wait_until_serving
from inferscale.suite import REPO_ROOT
from inferscale.tensors import from_numpy
from inferscale.triton.launcher import free_port
from inferscale.v1 import router_service_pb2, router_service_pb2_grpc
from tests.test_live_registry import eventually

pytestmark = pytest.mark.deploy

DEPLOY = REPO_ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "compose.cpu.yaml"
# Each phase sends this many requests from this many threads, and crashes its container once this
# many have been answered: the rest run while the container is down and coming back.
REQUESTS_PER_FAULT = 240
LOAD_THREADS = 4
CRASH_AFTER = 60
# The containers crashed, in order, and whether their phase bypasses the cache, so that every
# request reaches Triton (a cached answer would never notice a Triton down).
FAULTS = (("router-a", False), ("cache-a", False), ("triton-a", True))
# The port variables of compose.cpu.yaml, each given a free port so that the stack runs beside
# anything else on this machine.
PORT_VARIABLES = (
    "INFERSCALE_ROUTER_A_PORT",
    "INFERSCALE_ROUTER_B_PORT",
    "INFERSCALE_ORCHESTRATOR_PORT",
    "INFERSCALE_CACHE_A_PORT",
    "INFERSCALE_CACHE_B_PORT",
    "INFERSCALE_MONITOR_PORT",
    "INFERSCALE_MONITOR_METRICS_PORT",
    "INFERSCALE_TRITON_A_HTTP_PORT",
    "INFERSCALE_TRITON_A_GRPC_PORT",
    "INFERSCALE_TRITON_A_METRICS_PORT",
    "INFERSCALE_TRITON_B_HTTP_PORT",
    "INFERSCALE_TRITON_B_GRPC_PORT",
    "INFERSCALE_TRITON_B_METRICS_PORT",
    "INFERSCALE_REDIS_PORT",
    "INFERSCALE_PROMETHEUS_PORT",
)
# Bounds on waits that only guard against a hang: a cold build compiles nothing (llama.cpp's wheel
# comes from pip's cache) but downloads the wheelhouses and installs Debian.
BUILD_TIMEOUT_SECONDS = 1800
UP_TIMEOUT_SECONDS = 900
BACK_HEALTHY_TIMEOUT_SECONDS = 600
CALL_TIMEOUT_SECONDS = 30


def router_client_service_config(max_attempts: int = 5) -> str:
    """The service config of a client of several routers: round_robin over every address, and each
    Infer retried on UNAVAILABLE (a router gone mid-call or before it), which is safe: an
    inference changes nothing."""
    return json.dumps(
        {
            "loadBalancingConfig": [{"round_robin": {}}],
            "methodConfig": [
                {
                    "name": [{"service": "inferscale.v1.RouterService"}],
                    "retryPolicy": {
                        "maxAttempts": max_attempts,
                        "initialBackoff": "0.1s",
                        "maxBackoff": "1s",
                        "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE"],
                    },
                }
            ],
        }
    )


def docker_engine_problem() -> str | None:
    """Why Docker cannot run this test here, or None when it can."""
    if os.geteuid() != 0:
        return "not root: the test crashes containers by their process id"
    for tool in ("docker", "docker-compose"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (make system-packages installs it)"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60)
    if info.returncode != 0:
        return f"no Docker engine answers (deploy/start-dockerd.sh starts one): {info.stderr.strip()[-300:]}"
    return None


@dataclass
class Stack:
    """A running compose.cpu.yaml project: its name, settings file and ports."""

    project: str
    env_file: pathlib.Path
    ports: dict[str, int]
    client_token: str
    timings: dict[str, float] = field(default_factory=dict)

    def compose(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Runs docker-compose on this project; raises with its output when it fails."""
        command = ["docker-compose", "--env-file", str(self.env_file), "-p", self.project, "-f", str(COMPOSE_FILE), *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done

    def container(self, service: str) -> str:
        """The id of the service's container."""
        return self.compose("ps", "-q", service).stdout.strip()

    def state(self, service: str) -> dict[str, object]:
        """The container's state as docker inspect reports it, with its restart count."""
        reply = subprocess.run(
            ["docker", "inspect", "-f", "{{json .State}}|{{.RestartCount}}", self.container(service)],
            capture_output=True, text=True, check=True, timeout=60,
        ).stdout.strip()
        state, restarts = reply.rsplit("|", 1)
        return {**json.loads(state), "RestartCount": int(restarts)}

    def unhealthy(self) -> list[str]:
        """The containers of the stack whose health check does not (yet) pass."""
        ids = self.compose("ps", "-q").stdout.split()
        reply = subprocess.run(
            ["docker", "inspect", "-f", "{{.Name}} {{if .State.Health}}{{.State.Health.Status}}{{else}}unchecked{{end}}", *ids],
            capture_output=True, text=True, check=True, timeout=60,
        ).stdout
        return [line for line in reply.splitlines() if not line.endswith((" healthy", " unchecked"))]

    def logs(self, service: str) -> str:
        """What the service's container printed."""
        return self.compose("logs", "--no-color", service).stdout

    def crash(self, service: str) -> None:
        """Kills the container's processes at once, as a crash would; its restart policy restarts it."""
        os.kill(int(self.state(service)["Pid"]), signal.SIGKILL)

    def routers_target(self) -> str:
        """The target a client of both routers dials."""
        return f"ipv4:127.0.0.1:{self.ports['INFERSCALE_ROUTER_A_PORT']},127.0.0.1:{self.ports['INFERSCALE_ROUTER_B_PORT']}"


def timed(what: str, timings: dict[str, float], command: list[str], timeout: float, log: pathlib.Path) -> None:
    """Runs ``command`` with its output in ``log``, and records how long it took under ``what``."""
    started = time.monotonic()
    with open(log, "w") as out:
        done = subprocess.run(command, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
    timings[what] = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({' '.join(command)}):\n" + "\n".join(log.read_text().splitlines()[-40:]))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    problem = docker_engine_problem()
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the deployment test must run under CI: {problem}")
        pytest.skip(problem)
    folder = tmp_path_factory.mktemp("deploy-stack")
    timings: dict[str, float] = {}
    # The project's interpreter resolves the wheelhouses: its pip is configured for this host.
    build = ["env", f"PYTHON={sys.executable}", "nice", "-n", "10", str(DEPLOY / "build-images.sh")]
    timed("build", timings, build, BUILD_TIMEOUT_SECONDS, folder / "build.log")
    subprocess.run([str(DEPLOY / "make-secrets.sh"), str(folder)], check=True, capture_output=True, timeout=60)
    free: set[int] = set()
    while len(free) < len(PORT_VARIABLES):
        free.add(free_port())
    ports = dict(zip(PORT_VARIABLES, sorted(free), strict=True))
    prometheus_config = folder / "prometheus.yml"
    prometheus_config.write_text(
        (DEPLOY / "prometheus.cpu.yml")
        .read_text()
        .replace("127.0.0.1:9464", f"127.0.0.1:{ports['INFERSCALE_MONITOR_METRICS_PORT']}")
        .replace("127.0.0.1:8002", f"127.0.0.1:{ports['INFERSCALE_TRITON_A_METRICS_PORT']}")
        .replace("127.0.0.1:8012", f"127.0.0.1:{ports['INFERSCALE_TRITON_B_METRICS_PORT']}")
        .replace("127.0.0.1:9090", f"127.0.0.1:{ports['INFERSCALE_PROMETHEUS_PORT']}")
    )
    env_file = folder / ".env"
    with open(env_file, "a") as env:
        env.writelines(f"{variable}={port}\n" for variable, port in ports.items())
        env.write(f"INFERSCALE_PROMETHEUS_CONFIG={prometheus_config}\n")
    client_token = (folder / "client-tokens").read_text().split()[1]
    running = Stack(f"inferscale-test-{os.getpid()}", env_file, ports, client_token, timings)
    try:
        started = time.monotonic()
        running.compose("up", "-d", timeout=UP_TIMEOUT_SECONDS)
        timings["up"] = time.monotonic() - started
        yield running
    finally:
        # Kept beside the build log for whoever reads a failure; the containers go with `down`.
        (folder / "compose.log").write_text(running.compose("logs", "--no-color", timeout=300).stdout)
        running.compose("down", "--volumes", "--remove-orphans", "--timeout", "20", timeout=300)
        for secret in (env_file, folder / "client-tokens"):
            secret.unlink()


@dataclass
class PhaseResult:
    """What one phase of load saw: the requests sent and the errors of those that failed."""

    sent: int = 0
    errors: list[str] = field(default_factory=list)


def run_load(stub: router_service_pb2_grpc.RouterServiceStub, images: np.ndarray, *, skip_cache: bool,
             crash_at: threading.Event) -> PhaseResult:
    """Sends REQUESTS_PER_FAULT requests from LOAD_THREADS threads; sets ``crash_at`` once CRASH_AFTER are answered."""
    result = PhaseResult()
    lock = threading.Lock()
    next_index = iter(range(REQUESTS_PER_FAULT))

    def send() -> None:
        while True:
            with lock:
                index = next(next_index, None)
            if index is None:
                return
            request = router_service_pb2.InferRequest(
                task="digits", inputs=[from_numpy("IMAGE", images[index % len(images)][None, :])], skip_cache=skip_cache
            )
            try:
                answer = stub.Infer(request, timeout=CALL_TIMEOUT_SECONDS)
                failure = None if answer.answer.label else f"request {index}: no label in the answer"
            except grpc.RpcError as error:
                failure = f"request {index}: {error.code().name}: {error.details()}"
            with lock:
                result.sent += 1
                if failure:
                    result.errors.append(failure)
                if result.sent == CRASH_AFTER:
                    crash_at.set()

    threads = [threading.Thread(target=send, daemon=True) for _ in range(LOAD_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return result


def crash_when_set(event: threading.Event, stack: Stack, service: str) -> None:
    """Crashes ``service`` once ``event`` is set; the load always sets it, failed requests counting too."""
    event.wait()
    stack.crash(service)


def test_the_cpu_stack_answers_every_request_while_a_router_a_cache_replica_and_a_triton_crash(stack: Stack) -> None:
    images = load_split()[2].astype(np.float32)
    for port in ("INFERSCALE_ROUTER_A_PORT", "INFERSCALE_ROUTER_B_PORT"):
        wait_until_serving(f"127.0.0.1:{stack.ports[port]}", timeout_seconds=UP_TIMEOUT_SECONDS)
    options = [option for option in CHANNEL_OPTIONS if option[0] != "grpc.service_config"]
    options.append(("grpc.service_config", router_client_service_config()))
    channel = grpc.intercept_channel(
        grpc.insecure_channel(stack.routers_target(), options=options), BlockingTokenInterceptor(stack.client_token)
    )
    report = [f"build {stack.timings['build']:.0f} s, up {stack.timings['up']:.0f} s"]
    with channel:
        stub = router_service_pb2_grpc.RouterServiceStub(channel)
        for service, skip_cache in FAULTS:
            # Each fault on a whole stack: a Triton that a crash (or a start that Triton 2.51 aborts)
            # has left loading would leave no replica to fail over to.
            eventually(lambda: not stack.unhealthy(), BACK_HEALTHY_TIMEOUT_SECONDS, what="every container to be healthy")
            restarts_before = int(stack.state(service)["RestartCount"])
            crash_at = threading.Event()
            crasher = threading.Thread(target=crash_when_set, args=(crash_at, stack, service), daemon=True)
            crasher.start()
            started = time.monotonic()
            result = run_load(stub, images, skip_cache=skip_cache, crash_at=crash_at)
            crasher.join()
            assert result.errors == [], f"{service} crashed: {len(result.errors)} of {result.sent} requests failed: {result.errors[:5]}"

            def back_healthy() -> bool:
                state = stack.state(service)
                return int(state["RestartCount"]) > restarts_before and state.get("Health", {}).get("Status") == "healthy"

            eventually(back_healthy, BACK_HEALTHY_TIMEOUT_SECONDS, what=f"{service} to be restarted and healthy")
            report.append(
                f"{service} crashed after {CRASH_AFTER} answers: {result.sent} sent, {len(result.errors)} failed; "
                f"restarted by its policy and healthy again {time.monotonic() - started:.0f} s after the load began"
            )
    if "triton" in FAULTS[-1][0]:
        failovers = stack.logs("orchestrator").count("trying another endpoint")
        report.append(f"the orchestrator failed over {failovers} Triton calls")
    print("\n".join(["", "deployment under faults:", *report]))
