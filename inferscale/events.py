"""Sends events to the monitor in the background, in batches, so that no request waits on the monitor.

The buffer is bounded: when it is full, or when a batch cannot be delivered, events are dropped
and counted, and the count travels with the next batch that gets through.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque

import grpc

from inferscale.rpc import open_channel
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
        send_timeout_seconds: float = 2.0,
    ) -> None:
        self._address = monitor_address
        self._service = service
        self._buffer: deque[monitor_service_pb2.Event] = deque()
        self._max_buffered = max_buffered
        self._batch_size = batch_size
        self._flush_interval = flush_interval_seconds
        self._send_timeout = send_timeout_seconds
        self._wakeup = asyncio.Event()
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
        stub = monitor_service_pb2_grpc.MonitorServiceStub(self._channel)
        while not (self._closing and not self._buffer):
            if not self._buffer:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), self._flush_interval)
                self._wakeup.clear()
                continue
            batch = [self._buffer.popleft() for _ in range(min(self._batch_size, len(self._buffer)))]
            request = monitor_service_pb2.RecordEventsRequest(
                events=batch, dropped_since_last_batch=self._dropped_unreported
            )
            try:
                await stub.RecordEvents(request, timeout=self._send_timeout)
                self._dropped_unreported = 0
                self.sent_total += len(batch)
            except grpc.aio.AioRpcError as error:
                self._drop(len(batch))
                LOG.warning("monitor unreachable, %d events dropped: %s", len(batch), error.code().name)
                if not self._closing:
                    await asyncio.sleep(self._flush_interval)

    async def close(self, timeout_seconds: float = 2.0) -> None:
        """Delivers what is buffered, within ``timeout_seconds``, and closes the channel."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout_seconds)
            except TimeoutError:
                self._task.cancel()
        if self._channel is not None:
            await self._channel.close()
