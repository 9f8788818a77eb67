"""The circuit breaker and the throttled log, pure, with a clock the tests move; and how the cache client uses them.

The breaker: a failure opens it, calls are skipped at once, one probe per interval, a success closes
it. The log: one line per cause per interval, the next saying how many were held back.
"""

from __future__ import annotations

import asyncio
import logging

import grpc
import pytest

from inferscale.cache_client import CacheClient
from inferscale.circuit import CircuitBreaker, CircuitState
from inferscale.throttled_log import ThrottledLog
from inferscale.v1 import cache_service_pb2
from tests.test_cache_store import FakeClock as Clock


def test_a_closed_circuit_lets_every_call_through() -> None:
    breaker = CircuitBreaker(5.0, clock=Clock())
    assert all(breaker.allow() for _ in range(100))
    assert breaker.state is CircuitState.CLOSED and breaker.skipped_total == 0


def test_after_a_failure_calls_are_skipped_until_the_retry_interval_has_passed() -> None:
    clock = Clock()
    breaker = CircuitBreaker(5.0, clock=clock)
    assert breaker.allow()
    assert breaker.failed() is True  # this failure opened it
    assert breaker.state is CircuitState.OPEN
    clock.now += 4.999
    assert [breaker.allow() for _ in range(50)] == [False] * 50
    assert breaker.skipped_total == 50 and breaker.opened_total == 1


def test_one_probe_goes_out_per_interval_and_the_others_are_skipped_while_it_is_out() -> None:
    clock = Clock()
    breaker = CircuitBreaker(5.0, clock=clock)
    breaker.failed()
    clock.now += 5.0
    assert breaker.allow()  # the probe
    assert breaker.state is CircuitState.PROBING
    assert not any(breaker.allow() for _ in range(10))
    assert breaker.failed() is False  # a failed probe: open again, not opened anew
    assert breaker.state is CircuitState.OPEN and breaker.opened_total == 1
    clock.now += 2.5
    assert not breaker.allow()
    clock.now += 2.5
    assert breaker.allow()  # the next probe, one interval after the failed one


def test_a_probe_that_succeeds_closes_the_circuit() -> None:
    clock = Clock()
    breaker = CircuitBreaker(5.0, clock=clock)
    breaker.failed()
    clock.now += 5.0
    assert breaker.allow()
    assert breaker.succeeded() is True  # it was not closed
    assert breaker.state is CircuitState.CLOSED
    assert all(breaker.allow() for _ in range(10))
    assert breaker.succeeded() is False


def test_a_probe_that_never_reports_does_not_keep_the_circuit_open_for_good() -> None:
    clock = Clock()
    breaker = CircuitBreaker(5.0, clock=clock)
    breaker.failed()
    clock.now += 5.0
    assert breaker.allow()  # a probe whose caller is cancelled: it never reports
    clock.now += 4.0
    assert not breaker.allow()
    clock.now += 1.0
    assert breaker.allow()  # another probe


def test_while_down_the_calls_that_reach_the_dependency_are_one_per_interval() -> None:
    clock = Clock()
    breaker = CircuitBreaker(1.0, clock=clock)
    reached = 0
    # A request every 10 ms for 60 s against a dependency that is down: each call that goes out fails.
    for _ in range(6000):
        if breaker.allow():
            reached += 1
            breaker.failed()
        clock.now += 0.01
    assert reached <= 61
    assert breaker.skipped_total == 6000 - reached


def test_the_retry_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="retry_after_seconds"):
        CircuitBreaker(0.0)


# --- the throttled log ------------------------------------------------------------------------


class Lines(logging.Handler):
    """Keeps the lines a logger writes."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def throttled(interval: float, **options: object) -> tuple[ThrottledLog, Lines, Clock]:
    logger = logging.getLogger(f"tests.throttled.{id(options)}.{interval}")
    logger.propagate = False
    lines = Lines()
    logger.handlers[:] = [lines]
    clock = Clock()
    return ThrottledLog(logger, interval, clock=clock, **options), lines, clock  # type: ignore[arg-type]


def test_one_line_per_cause_per_interval_and_the_next_says_how_many_were_held_back() -> None:
    log, lines, clock = throttled(10.0)
    assert log.warning("lookup", "cache lookup failed: %s", "UNAVAILABLE")
    for _ in range(499):
        assert not log.warning("lookup", "cache lookup failed: %s", "UNAVAILABLE")
        clock.now += 0.01
    assert lines.lines == ["cache lookup failed: UNAVAILABLE"]
    clock.now += 10.0
    assert log.warning("lookup", "cache lookup failed: %s", "DEADLINE_EXCEEDED")
    assert lines.lines[1] == "cache lookup failed: DEADLINE_EXCEEDED (499 more like it held back since the last such line)"
    clock.now += 10.0
    log.warning("lookup", "cache lookup failed: %s", "UNAVAILABLE")
    assert lines.lines[2] == "cache lookup failed: UNAVAILABLE"  # nothing held back this time


def test_each_cause_has_its_own_interval() -> None:
    log, lines, _ = throttled(10.0)
    for _ in range(3):
        log.warning("lookup", "lookup failed")
        log.warning("store", "store failed")
    assert lines.lines == ["lookup failed", "store failed"]


def test_the_causes_remembered_are_bounded() -> None:
    log, lines, _ = throttled(10.0, max_causes=4)
    for cause in range(100):
        log.warning(cause, "cause %d", cause)
    assert len(log._causes) == 4 and len(lines.lines) == 100
    log.warning(0, "cause %d", 0)  # forgotten long ago: logged again
    log.warning(99, "cause %d", 99)  # remembered: held back
    assert lines.lines[-1] == "cause 0"


# --- the cache client's use of them -----------------------------------------------------------


def rpc_error(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), f"stand-in {code.name}")


class FailingStub:
    """A cache stub whose every call fails with one status, counting the calls."""

    def __init__(self, code: grpc.StatusCode) -> None:
        self.code = code
        self.calls = 0

    async def Lookup(self, request: cache_service_pb2.LookupRequest, timeout: float) -> cache_service_pb2.LookupResponse:  # noqa: N802
        self.calls += 1
        raise rpc_error(self.code)


def test_a_refusal_is_an_answer_and_keeps_the_circuit_closed_but_an_outage_opens_it() -> None:
    async def scenario() -> None:
        refusing = FailingStub(grpc.StatusCode.RESOURCE_EXHAUSTED)
        client = CacheClient(refusing, timeout_seconds=1.0, breaker=CircuitBreaker(60.0, clock=Clock()))  # type: ignore[arg-type]
        for _ in range(5):
            assert await client.lookup(cache_service_pb2.LookupRequest(key="k")) is None
        assert refusing.calls == 5 and client.breaker.state is CircuitState.CLOSED
        down = FailingStub(grpc.StatusCode.DEADLINE_EXCEEDED)
        client = CacheClient(down, timeout_seconds=1.0, breaker=CircuitBreaker(60.0, clock=Clock()))  # type: ignore[arg-type]
        for _ in range(5):
            assert await client.lookup(cache_service_pb2.LookupRequest(key="k")) is None
        assert down.calls == 1 and client.breaker.state is CircuitState.OPEN

    asyncio.run(scenario())
