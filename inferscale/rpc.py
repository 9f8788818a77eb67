"""gRPC wiring shared by the services: servers with health and reflection, channels, graceful stop."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

LOG = logging.getLogger(__name__)

# Large enough for a batch of images or ARC grids, small enough that a hostile message is refused
# before it is buffered whole.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # Idle channels between the services stay up: a reconnect costs more than a ping.
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_permit_without_calls", 1),
]


@dataclass
class RunningServer:
    """A started gRPC server, the port it bound and its health servicer."""

    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer


async def start_server(
    address: str,
    service_names: Iterable[str],
    add_servicers: Callable[[grpc.aio.Server], None],
) -> RunningServer:
    """Starts a server on ``address`` ("host:port"; port 0 picks a free one) with health and reflection.

    ``service_names`` are the full proto names of the services ``add_servicers`` registers; each
    is reported SERVING, as is the server as a whole ("").
    """
    server = grpc.aio.server(
        options=[
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            # gRPC shares a port between servers by default; a second suite on busy ports must
            # fail to bind, not quietly split the traffic with the first.
            ("grpc.so_reuseport", 0),
        ]
    )
    add_servicers(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = list(service_names)
    reflection.enable_server_reflection(
        [*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"could not bind {address}")
    await server.start()
    for name in ["", *names]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server=server, port=port, health=health_servicer)


async def serve_until_stopped(
    running: RunningServer,
    *,
    grace_seconds: float,
    on_stop: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Serves until SIGTERM or SIGINT, then reports NOT_SERVING, drains calls in flight and stops."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    LOG.info("stopping: draining calls for up to %.1f s", grace_seconds)
    await running.health.enter_graceful_shutdown()
    await running.server.stop(grace_seconds)
    if on_stop is not None:
        await on_stop()


def open_channel(address: str) -> grpc.aio.Channel:
    """Opens a channel to a peer; the telemetry instrumentation, when set up, adds trace propagation."""
    return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)


def wait_until_serving(address: str, *, timeout_seconds: float, service: str = "") -> None:
    """Polls the standard health service at ``address`` until it answers SERVING or time runs out."""
    deadline = time.monotonic() + timeout_seconds
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{address} did not report SERVING within {timeout_seconds} s")
            time.sleep(0.1)


def configure_logging(service: str) -> None:
    """Logs one line per record to stderr, naming the service."""
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s",
    )
