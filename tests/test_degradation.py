"""Degradation that costs no request: a cache that is down or slow, and a client that cancels; and
processes that find a port taken at start.

The router runs as a real gRPC server in the test's process, with stand-ins for its peers that
count what reaches them and hold calls for as long as a test says, so that each test waits on what
it checks (a call held, a call counted, an event recorded) and never on the clock. The last test
runs the suite's real processes with a cache that is killed.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import pathlib
import socket
import subprocess
import threading
import urllib.request
from collections.abc import AsyncIterator, Callable
from concurrent import futures
from contextlib import asynccontextmanager

import grpc
import numpy as np
import pytest

from inferscale import suite as suite_module
from inferscale.suite import Suite, SuitePorts
from inferscale.tensors import from_numpy
from inferscale.triton.launcher import EmbeddedTriton, TritonSettings, TritonStartError
from inferscale.v1 import (
    cache_service_pb2,
    cache_service_pb2_grpc,
    common_pb2,
    monitor_service_pb2,
    orchestrator_service_pb2,
    router_service_pb2,
    router_service_pb2_grpc,
)
from services.router.service import ModelCatalog, PolicyWatcher, RouterService
from tests.test_end_to_end import holdout

# A guard on every wait, far above what any of them takes: a test that hangs fails, it does not
# measure time.
GUARD_SECONDS = 60.0
MODEL = common_pb2.ModelInfo(
    model=common_pb2.ModelRef(name="digits_linear", version=1), task="digits", tier=1, cost=1.0, ready=True
)


def request(index: int) -> router_service_pb2.InferRequest:
    image = np.full((1, 64), index % 17, dtype=np.float32)
    return router_service_pb2.InferRequest(
        task="digits", inputs=[from_numpy("IMAGE", image)], strategy=common_pb2.STRATEGY_SINGLE, model_name=MODEL.model.name
    )


class Orchestrator:
    """Answers every plan with its one model's answer; with ``hold``, holds Execute until released."""

    def __init__(self, hold: bool = False) -> None:
        self.hold = hold
        self.executing = asyncio.Event()
        self.release = asyncio.Event()

    async def ListModels(self, request, timeout=None):  # type: ignore[no-untyped-def]  # noqa: N802
        return orchestrator_service_pb2.ListModelsResponse(models=[MODEL])

    async def Embed(self, request, timeout=None):  # type: ignore[no-untyped-def]  # noqa: N802
        raise AssertionError("no model of these tests has a semantic cache")

    async def Execute(self, request, timeout=None):  # type: ignore[no-untyped-def]  # noqa: N802
        self.executing.set()
        if self.hold:
            await self.release.wait()
        step = common_pb2.EscalationStep(model=MODEL.model, tier=1, decision=common_pb2.DECISION_ACCEPT)
        return orchestrator_service_pb2.ExecuteResponse(
            answer=common_pb2.Answer(label="3", confidence=0.9), steps=[step], total_cost=1.0
        )


def rpc_error(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), "the stand-in cache is down")


class Cache:
    """A cache stub: misses every lookup; with ``down``, fails every call; with ``hold_stores``,
    holds each store until released. Counts the calls that reach it."""

    def __init__(self, *, down: bool = False, hold_stores: bool = False) -> None:
        self.down = down
        self.hold_stores = hold_stores
        self.calls: collections.Counter[str] = collections.Counter()
        self.stores_held = 0
        self.stores_done = 0
        self.store_arrived = asyncio.Event()
        self.release = asyncio.Event()

    async def Lookup(self, request, timeout):  # type: ignore[no-untyped-def]  # noqa: N802
        self.calls["Lookup"] += 1
        if self.down:
            raise rpc_error(grpc.StatusCode.UNAVAILABLE)
        return cache_service_pb2.LookupResponse(hit=False)

    async def Store(self, request, timeout):  # type: ignore[no-untyped-def]  # noqa: N802
        self.calls["Store"] += 1
        if self.down:
            raise rpc_error(grpc.StatusCode.UNAVAILABLE)
        if self.hold_stores:
            self.stores_held += 1
            self.store_arrived.set()
            await self.release.wait()
            self.stores_held -= 1
        self.stores_done += 1
        return cache_service_pb2.StoreResponse()


class Events:
    """Keeps the events the router emits."""

    def __init__(self) -> None:
        self.events: list[monitor_service_pb2.Event] = []
        self.recorded_request = asyncio.Event()

    def emit(self, event: monitor_service_pb2.Event) -> None:
        self.events.append(event)
        if event.HasField("request"):
            self.recorded_request.set()


@asynccontextmanager
async def serving_router(orchestrator: Orchestrator, cache: Cache, events: Events, **options: float) -> AsyncIterator[tuple[RouterService, router_service_pb2_grpc.RouterServiceStub]]:
    """A RouterService on a real gRPC server on a free port, and a stub that calls it."""
    catalog = ModelCatalog(orchestrator, 60.0)  # type: ignore[arg-type]
    servicer = RouterService(
        orchestrator,  # type: ignore[arg-type]
        cache,  # type: ignore[arg-type]
        events,  # type: ignore[arg-type]
        catalog,
        PolicyWatcher(None, catalog, 60.0),
        default_threshold=0.9,
        default_escalate_threshold=0.5,
        cache_timeout_seconds=options.get("cache_timeout_seconds", GUARD_SECONDS),
        request_timeout_seconds=GUARD_SECONDS,
    )
    server = grpc.aio.server()
    router_service_pb2_grpc.add_RouterServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield servicer, router_service_pb2_grpc.RouterServiceStub(channel)
    finally:
        await server.stop(0)


async def until(condition: Callable[[], bool], what: str) -> None:
    """Waits, without blocking the event loop, until ``condition`` holds (within the guard)."""
    async with asyncio.timeout(GUARD_SECONDS):
        while not condition():
            await asyncio.sleep(0.01)


class WarningLines(logging.Handler):
    """Counts the warnings the router and its cache calls write."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(("services.router", "inferscale.cache_client")):
            self.lines.append(record.getMessage())


def test_a_cache_that_is_down_costs_one_call_and_one_log_line_not_two_of_each_per_request(monkeypatch) -> None:
    # No probe within the test: every call that reaches the cache after the first is one too many.
    monkeypatch.setenv("INFERSCALE_CACHE_RETRY_SECONDS", "3600")
    warnings = WarningLines()
    logging.getLogger().addHandler(warnings)

    async def scenario() -> None:
        cache = Cache(down=True)
        async with serving_router(Orchestrator(), cache, Events()) as (_, router):
            replies = [await router.Infer(request(index), timeout=GUARD_SECONDS) for index in range(40)]
        assert all(reply.answer.label == "3" and reply.cache_level == common_pb2.CACHE_LEVEL_UNSPECIFIED for reply in replies)
        assert sum(cache.calls.values()) == 1, cache.calls

    try:
        asyncio.run(scenario())
    finally:
        logging.getLogger().removeHandler(warnings)
    assert len(warnings.lines) == 1, warnings.lines


def test_the_reply_does_not_wait_for_the_cache_store_and_closing_waits_for_it() -> None:
    async def scenario() -> None:
        cache = Cache(hold_stores=True)
        async with serving_router(Orchestrator(), cache, Events()) as (servicer, router):
            reply = await router.Infer(request(1), timeout=GUARD_SECONDS)
            assert reply.answer.label == "3"
            await until(lambda: cache.stores_held == 1, "the store to reach the cache")
            # The reply is out and the cache still holds its store.
            assert cache.stores_done == 0
            closing = asyncio.create_task(servicer.close())
            cache.release.set()
            await asyncio.wait_for(closing, GUARD_SECONDS)
            # Done as closing returns: closing waited for it rather than cancel it or leave it behind.
            assert cache.stores_done == 1

    asyncio.run(scenario())


def test_stores_past_the_bound_are_dropped_not_piled_up_on_a_slow_cache(monkeypatch) -> None:
    monkeypatch.setenv("INFERSCALE_CACHE_MAX_PENDING_STORES", "3")

    async def scenario() -> None:
        cache = Cache(hold_stores=True)
        async with serving_router(Orchestrator(), cache, Events()) as (servicer, router):
            replies = [await router.Infer(request(index), timeout=GUARD_SECONDS) for index in range(10)]
            assert [reply.answer.label for reply in replies] == ["3"] * 10
            await until(lambda: cache.stores_held == 3, "three stores to reach the cache")
            assert cache.calls["Store"] == 3  # the other seven were dropped, never sent
            cache.release.set()
            await servicer.close()
            assert cache.stores_done == 3

    asyncio.run(scenario())


def test_a_client_that_cancels_is_recorded_as_cancelled() -> None:
    async def scenario() -> None:
        orchestrator = Orchestrator(hold=True)
        events = Events()
        async with serving_router(orchestrator, Cache(), events) as (_, router):
            call = router.Infer(request(2), timeout=GUARD_SECONDS)
            await asyncio.wait_for(orchestrator.executing.wait(), GUARD_SECONDS)
            call.cancel()
            await asyncio.wait_for(events.recorded_request.wait(), GUARD_SECONDS)
        [recorded] = [event.request for event in events.events if event.HasField("request")]
        assert recorded.status_code == grpc.StatusCode.CANCELLED.value[0], recorded

    asyncio.run(scenario())


# --- the suite's processes ---------------------------------------------------------------------


class HangingCache(cache_service_pb2_grpc.CacheServiceServicer):
    """Takes the killed cache's port and answers nothing: each call waits until its caller gives up. Counts them."""

    def __init__(self) -> None:
        self.calls: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def _hang(self, what: str, context: grpc.ServicerContext) -> None:
        with self._lock:
            self.calls[what] += 1
        ended = threading.Event()
        context.add_callback(ended.set)
        ended.wait(GUARD_SECONDS)
        context.abort(grpc.StatusCode.UNAVAILABLE, "the stand-in cache answers nothing")

    def Lookup(self, request, context):  # type: ignore[no-untyped-def]  # noqa: N802
        # L4 is the router's level; L2 and L3 are the orchestrator's.
        self._hang(f"router Lookup L{request.level}" if request.level == common_pb2.CACHE_LEVEL_L4_FINAL_RESULT else f"orchestrator Lookup L{request.level}", context)

    def Store(self, request, context):  # type: ignore[no-untyped-def]  # noqa: N802
        self._hang("router Store" if request.level == common_pb2.CACHE_LEVEL_L4_FINAL_RESULT else "orchestrator Store", context)

    def SemanticLookup(self, request, context):  # type: ignore[no-untyped-def]  # noqa: N802
        self._hang("router SemanticLookup", context)

    def SemanticStore(self, request, context):  # type: ignore[no-untyped-def]  # noqa: N802
        self._hang("router SemanticStore", context)


@pytest.mark.integration
def test_a_suite_whose_cache_is_killed_keeps_answering_and_waits_on_it_once_per_service(suite: Suite, tmp_path: pathlib.Path) -> None:
    images = holdout()[0]
    degraded = Suite(
        ports=SuitePorts.free(),
        triton_url=suite.triton_url,
        log_dir=tmp_path,
        env={
            "OTEL_TRACES_EXPORTER": "none",
            "INFERSCALE_CACHE_TIMEOUT_SECONDS": "1",
            # No probe within the test: a call that reaches the cache after the first of each
            # service is one that should have been skipped.
            "INFERSCALE_CACHE_RETRY_SECONDS": "3600",
            "INFERSCALE_MODEL_CACHE_MIN_COST": "0",
        },
    )
    with degraded:
        with degraded.channel("router") as channel:
            router = router_service_pb2_grpc.RouterServiceStub(channel)

            def infer(index: int) -> router_service_pb2.InferResponse:
                cascade = router_service_pb2.InferRequest(
                    task="digits", inputs=[from_numpy("IMAGE", images[index][None, :])], strategy=common_pb2.STRATEGY_CASCADE
                )
                return router.Infer(cascade, timeout=GUARD_SECONDS)

            infer(0)
            assert infer(0).cache_level == common_pb2.CACHE_LEVEL_L4_FINAL_RESULT
            degraded.kill_service("cache")
            hanging = HangingCache()
            server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
            cache_service_pb2_grpc.add_CacheServiceServicer_to_server(hanging, server)
            server.add_insecure_port(degraded.address("cache"))
            server.start()
            try:
                replies = [infer(index) for index in range(1, 11)]
            finally:
                server.stop(0)
    assert all(r.answer.label and r.cache_level == common_pb2.CACHE_LEVEL_UNSPECIFIED for r in replies)
    router_calls = sum(n for what, n in hanging.calls.items() if what.startswith("router"))
    orchestrator_calls = sum(n for what, n in hanging.calls.items() if what.startswith("orchestrator"))
    assert router_calls <= 1 and orchestrator_calls <= 1, hanging.calls
    router_log = (tmp_path / "router.log").read_text()
    cache_warnings = [line for line in router_log.splitlines() if "WARNING" in line and "cache" in line]
    assert len(cache_warnings) <= 1, cache_warnings


# --- ports bound by the processes themselves ---------------------------------------------------


def test_a_monitor_whose_metrics_port_is_taken_before_it_binds_it_starts_on_another(tmp_path: pathlib.Path, monkeypatch) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        # The suite's first pick is a port another process takes before the monitor binds it.
        picks = iter([busy])
        pick = suite_module.free_port
        monkeypatch.setattr(suite_module, "free_port", lambda: next(picks, None) or pick())
        alone = Suite(
            ports=dataclasses.replace(SuitePorts.free(), monitor_metrics=0),
            triton_url="off",
            log_dir=tmp_path,
            env={"OTEL_TRACES_EXPORTER": "none"},
        )
        try:
            alone.start_service("monitor")
            assert alone.ports.monitor_metrics not in (0, busy)
            with urllib.request.urlopen(alone.metrics_url, timeout=GUARD_SECONDS) as page:
                assert page.status == 200
        finally:
            alone.stop()
    assert "Address already in use" in (tmp_path / "monitor.log").read_text()


def test_a_triton_start_that_finds_a_picked_port_taken_is_retried_on_other_ports(tmp_path: pathlib.Path, monkeypatch) -> None:
    server = EmbeddedTriton(TritonSettings(model_repository=tmp_path, grpc_port=0, http_port=0, metrics_port=0, log_path=tmp_path / "triton.log"))
    scripts = [
        "echo \"failed to start GRPC service: Unavailable - Socket '0.0.0.0:8001' already in use\"; exit 1",
        "sleep 30",  # up: the stand-in for a server that started
    ]
    ports_tried: list[tuple[int, int, int]] = []

    def launch() -> None:
        ports_tried.append((server.settings.grpc_port, server.settings.http_port, server.settings.metrics_port))
        server._log_path = tmp_path / "triton.log"
        with open(server._log_path, "ab") as log:
            server._process = subprocess.Popen(
                ["sh", "-c", scripts[len(ports_tried) - 1]], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def ready(timeout_seconds: float) -> None:
        assert server._process is not None
        try:
            server._process.wait(timeout=GUARD_SECONDS if len(ports_tried) == 1 else 0.5)
        except subprocess.TimeoutExpired:
            return  # still up: ready
        raise TritonStartError(f"tritonserver exited with {server._process.returncode}:\n{server.log_tail()}")

    monkeypatch.setattr(server, "_launch", launch)
    monkeypatch.setattr(server, "_wait_ready", ready)
    try:
        server.start()
        assert len(ports_tried) == 2 and ports_tried[0] != ports_tried[1] and 0 not in ports_tried[1]
        # Started: it keeps those ports, so that a restart comes back where its clients look.
        assert (server.settings.grpc_port, server.settings.http_port, server.settings.metrics_port) == ports_tried[1]
    finally:
        server.kill()
