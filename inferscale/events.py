"""Sends events to the monitor in the background, in batches on one long-lived stream, so that no
request waits on the monitor.

While the monitor is unreachable, events wait in the buffer, which is bounded: when it is full,
events are dropped and counted. The monitor acknowledges
each batch in order; when the stream breaks, the batches written but not acknowledged are counted
as dropped too (they may or may not have been recorded: the count errs towards loss), and the
stream is opened again. The count travels with the next batch that gets through.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque

import grpc

from inferscale.rpc import open_channel, service_stub
from inferscale.telemetry import current_trace_id
from inferscale.v1 import monitor_service_pb2, monitor_service_pb2_grpc

LOG = logging.getLogger(__name__)


class EventSender:
    """Buffers events and delivers them to the monitor from one background task."""

    def __init__(
        self,
        monitor_address: str,
        service: str,
        *,
        max_buffered: int = 10_000,
        batch_size: int = 500,
        flush_interval_seconds: float = 0.1,
        max_unacknowledged_batches: int = 8,
        acknowledgement_timeout_seconds: float = 2.0,
    ) -> None:
        self._address = monitor_address
        self._service = service
        self._buffer: deque[monitor_service_pb2.Event] = deque()
        self._max_buffered = max_buffered
        self._batch_size = batch_size
        self._flush_interval = flush_interval_seconds
        self._window = max_unacknowledged_batches
        self._acknowledgement_timeout = acknowledgement_timeout_seconds
        self._wakeup = asyncio.Event()
        self._acknowledged = asyncio.Event()
        self._dropped_unreported = 0
        self.dropped_total = 0
        self.sent_total = 0
        self._channel: grpc.aio.Channel | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        """Starts the background task; without a monitor address events are only counted as dropped."""
        if self._address:
            self._channel = open_channel(self._address)
            self._task = asyncio.create_task(self._run(), name=f"{self._service}-events")

    def emit(self, event: monitor_service_pb2.Event) -> None:
        """Queues an event without waiting; stamps the service, the time and the current trace."""
        if self._task is None or len(self._buffer) >= self._max_buffered:
            self._drop(1)
            return
        event.service = self._service
        event.unix_time_ms = int(time.time() * 1000)
        if not event.trace_id:
            event.trace_id = current_trace_id()
        self._buffer.append(event)
        if len(self._buffer) >= self._batch_size:
            self._wakeup.set()

    def _drop(self, count: int) -> None:
        self._dropped_unreported += count
        self.dropped_total += count

    async def _run(self) -> None:
        assert self._channel is not None
        stub = service_stub(monitor_service_pb2_grpc.MonitorServiceStub, self._channel)
        while not (self._closing and not self._buffer):
            if not self._buffer:
                await self._wait_for_events()
                continue
            if not await self._monitor_reachable():
                continue
            # Per batch written and not yet acknowledged: its events, the drops it reported, when sent.
            unacknowledged: deque[tuple[int, int, float]] = deque()
            call = stub.StreamEvents()
            reader = asyncio.create_task(self._read_acknowledgements(call, unacknowledged))
            try:
                await self._write_batches(call, reader, unacknowledged)
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError, TimeoutError) as error:
                lost = sum(events for events, _, _ in unacknowledged)
                self._dropped_unreported += sum(reported for _, reported, _ in unacknowledged)
                self._drop(lost)
                code = error.code().name if isinstance(error, grpc.aio.AioRpcError) else "stream closed"
                LOG.warning("event stream to the monitor broke, %d events dropped: %s", lost, code)
                if not self._closing:
                    await asyncio.sleep(self._flush_interval)
            finally:
                reader.cancel()
                call.cancel()

    async def _monitor_reachable(self) -> bool:
        """Whether the channel is connected, after waiting up to a flush interval for it to be."""
        assert self._channel is not None
        state = self._channel.get_state(try_to_connect=True)
        if state is not grpc.ChannelConnectivity.READY:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._channel.wait_for_state_change(state), self._flush_interval)
            state = self._channel.get_state()
        return state is grpc.ChannelConnectivity.READY

    async def _wait_for_events(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), self._flush_interval)
        self._wakeup.clear()

    async def _write_batches(
        self, call: grpc.aio.StreamStreamCall, reader: asyncio.Task[None], unacknowledged: deque[tuple[int, int, float]]
    ) -> None:
        """Writes batches until closing has emptied the buffer, then waits for the last acknowledgement."""
        while not (self._closing and not self._buffer):
            if reader.done():
                reader.result()  # the stream broke: raises its error
                raise asyncio.InvalidStateError("the monitor ended the event stream")
            if unacknowledged and time.monotonic() - unacknowledged[0][2] > self._acknowledgement_timeout:
                # A monitor that vanished without closing the connection: give up on the stream.
                raise asyncio.InvalidStateError(f"no acknowledgement within {self._acknowledgement_timeout} s")
            if not self._buffer:
                await self._wait_for_events()
                continue
            if len(unacknowledged) >= self._window:
                # The monitor is behind: wait for it rather than pile batches into the stream; the
                # bounded buffer absorbs (and counts) what does not fit meanwhile.
                self._acknowledged.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._acknowledged.wait(), self._flush_interval)
                continue
            batch = [self._buffer.popleft() for _ in range(min(self._batch_size, len(self._buffer)))]
            reported, self._dropped_unreported = self._dropped_unreported, 0
            unacknowledged.append((len(batch), reported, time.monotonic()))
            await call.write(monitor_service_pb2.StreamEventsRequest(events=batch, dropped_since_last_batch=reported))
        await call.done_writing()
        await asyncio.wait_for(reader, self._acknowledgement_timeout)

    async def _read_acknowledgements(
        self, call: grpc.aio.StreamStreamCall, unacknowledged: deque[tuple[int, int, float]]
    ) -> None:
        async for _ in call:
            events, _reported, _sent = unacknowledged.popleft()
            self.sent_total += events
            self._acknowledged.set()
        if unacknowledged:
            raise asyncio.InvalidStateError("the monitor ended the event stream before acknowledging every batch")

    async def close(self, timeout_seconds: float = 2.0) -> None:
        """Delivers what is buffered, within ``timeout_seconds``, and closes the channel."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout_seconds)
            except TimeoutError:
                self._task.cancel()
        self._drop(len(self._buffer))  # what the monitor could not take in time
        self._buffer.clear()
        if self._channel is not None:
            await self._channel.close()
