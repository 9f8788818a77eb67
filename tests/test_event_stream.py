"""Events reach a real monitor on one stream; what a broken stream loses is counted and reported."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import grpc
import pytest

from inferscale.events import EventSender
from inferscale.rpc import open_channel, service_stub
from inferscale.v1 import common_pb2, monitor_service_pb2, monitor_service_pb2_grpc
from services.monitor.config import MonitorConfig
from services.monitor.server import Monitor, create_server

pytestmark = pytest.mark.integration


def request_event() -> monitor_service_pb2.Event:
    return monitor_service_pb2.Event(
        request=monitor_service_pb2.RequestEvent(strategy=common_pb2.STRATEGY_CASCADE, latency_ms=2, total_cost=1)
    )


async def start_monitor(port: int = 0) -> Monitor:
    config = MonitorConfig(
        listen=f"127.0.0.1:{port}",
        metrics_port=0,
        metrics_host="127.0.0.1",
        shutdown_grace_seconds=0.5,
        database=":memory:",
        min_shadow_requests=10,
        triton_urls=(),
        triton_stats_seconds=1.0,
    )
    return await create_server(config)


async def stop_monitor(monitor: Monitor) -> None:
    await monitor.running.server.stop(0)
    await monitor.close()


async def stats(port: int) -> monitor_service_pb2.GetStatsResponse:
    async with open_channel(f"127.0.0.1:{port}") as channel:
        # Waits for the connection rather than fail at once: a monitor started again on the same
        # port is reached once gRPC's reconnect backoff from the old one's loss has passed.
        return await service_stub(monitor_service_pb2_grpc.MonitorServiceStub, channel).GetStats(
            monitor_service_pb2.GetStatsRequest(), timeout=30, wait_for_ready=True
        )


async def until(condition: Callable[[], object], what: str, timeout_seconds: float = 60.0) -> None:
    """Waits, without blocking the event loop, for ``condition`` (plain or async) to hold; the
    timeout is a guard against a hang, far above what any wait here takes."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        held = condition()
        if asyncio.iscoroutine(held):
            held = await held
        if held:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def test_events_stream_to_the_monitor_and_a_broken_stream_is_counted_not_silently_lost(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        monitor = await start_monitor()
        port = monitor.running.port
        sender = EventSender(f"127.0.0.1:{port}", "router", max_buffered=500, batch_size=100, acknowledgement_timeout_seconds=1.0)
        sender.start()
        for _ in range(400):
            sender.emit(request_event())

        async def all_recorded() -> bool:
            return (await stats(port)).events_recorded == 400

        await until(all_recorded, "400 events to be recorded")
        await until(lambda: sender.sent_total == 400, "every batch to be acknowledged")
        assert sender.dropped_total == 0

        # The monitor goes away: events wait in the bounded buffer, and what does not fit is
        # dropped and counted at once, never waited on.
        await stop_monitor(monitor)
        # Once the sender has given up the broken stream, no event goes into it.
        await until(lambda: "event stream to the monitor broke" in caplog.text, "the sender to notice the broken stream")
        for _ in range(600):  # emit is synchronous: nothing here can wait on the monitor
            sender.emit(request_event())
        assert sender.dropped_total == 100  # counted at once, not when a send fails
        channel = sender._channel
        assert channel is not None
        await until(
            lambda: channel.get_state() is grpc.ChannelConnectivity.TRANSIENT_FAILURE, "the sender to try the monitor and find it gone"
        )
        assert sender.dropped_total == 100 and sender.sent_total == 400  # the rest still wait

        # A monitor on the same port again: the buffered events arrive, and so does the count of
        # the dropped ones.
        monitor = await start_monitor(port)

        async def recovered() -> bool:
            now = await stats(port)
            return (now.events_recorded, now.events_dropped) == (500, 100)

        await until(recovered, "the buffered events and the dropped count to reach the new monitor")
        assert sender.sent_total == 900
        await sender.close()
        await stop_monitor(monitor)

    asyncio.run(scenario())


def test_a_bounded_buffer_drops_and_counts_what_does_not_fit() -> None:
    async def scenario() -> None:
        monitor = await start_monitor()
        sender = EventSender(f"127.0.0.1:{monitor.running.port}", "router", max_buffered=10, batch_size=1_000)
        sender.start()
        for _ in range(50):  # all at once, before the background task runs
            sender.emit(request_event())
        assert sender.dropped_total == 40
        await sender.close()
        now = await stats(monitor.running.port)
        assert (now.events_recorded, now.events_dropped) == (10, 40)
        await stop_monitor(monitor)

    asyncio.run(scenario())


def test_a_malformed_batch_ends_the_stream_with_invalid_argument_and_the_monitor_goes_on() -> None:
    async def scenario() -> None:
        monitor = await start_monitor()
        port = monitor.running.port
        async with open_channel(f"127.0.0.1:{port}") as channel:
            stub = service_stub(monitor_service_pb2_grpc.MonitorServiceStub, channel)
            call = stub.StreamEvents(timeout=5)
            await call.write(monitor_service_pb2.StreamEventsRequest(events=[request_event()]))
            assert (await call.read()).recorded == 1
            await call.write(monitor_service_pb2.StreamEventsRequest(events=[request_event()], dropped_since_last_batch=-1))
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await call.read()
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "dropped_since_last_batch -1 must not be negative" in raised.value.details()
        now = await stats(port)
        assert (now.events_recorded, now.events_dropped) == (1, 0)
        await stop_monitor(monitor)

    asyncio.run(scenario())
