"""gRPC wiring shared by the services: servers with health and reflection, channels, graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from inferscale.auth import (
    SERVICE_TOKEN_VARIABLE,
    AccessInterceptor,
    BlockingTokenInterceptor,
    Credentials,
    aio_token_interceptors,
    bearer_metadata,
)
from inferscale.settings import env_int
from inferscale.tls import TlsSettings, process_tls

LOG = logging.getLogger(__name__)

# INFERSCALE_MAX_MESSAGE_BYTES: the largest message a server or channel takes or sends. The
# default is large enough for a batch of images or ARC grids, small enough that a hostile message
# is refused (RESOURCE_EXHAUSTED) before it is buffered whole.
MAX_MESSAGE_BYTES = env_int("INFERSCALE_MAX_MESSAGE_BYTES", 64 * 1024 * 1024, minimum=1024)

CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # Idle channels between the services stay up: a reconnect costs more than a ping.
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_permit_without_calls", 1),
    # A peer back from a restart is reached within two seconds, not after gRPC's default
    # reconnect backoff, which grows to two minutes.
    ("grpc.max_reconnect_backoff_ms", 2_000),
    # Every address the target resolves to takes calls in turn (gRPC's default, pick_first, sends
    # them all to one): a dns:/// target naming a headless Service spreads calls over its pods.
    ("grpc.service_config", '{"loadBalancingConfig": [{"round_robin": {}}]}'),
]

# INFERSCALE_MAX_CONNECTION_AGE_SECONDS: how long a server keeps a client's connection before it
# asks the client (GOAWAY) to open a new one. gRPC resolves a dns:/// target again only when a
# connection closes, so this is how running clients find replicas added since they connected.
# Calls in flight on the old connection finish there (no grace limit).
MAX_CONNECTION_AGE_SECONDS = env_int("INFERSCALE_MAX_CONNECTION_AGE_SECONDS", 300, minimum=1)


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
    *,
    credentials: Credentials,
    max_concurrent_rpcs: int | None = None,
) -> RunningServer:
    """Starts a server on ``address`` ("host:port"; port 0 picks a free one) with health and reflection.

    ``service_names`` are the full proto names of the services ``add_servicers`` registers; each
    is reported SERVING, as is the server as a whole (""). Past ``max_concurrent_rpcs`` calls in
    flight, gRPC refuses new ones at once with RESOURCE_EXHAUSTED (load shedding, no queue).
    Over TLS when the settings say so (inferscale.tls). Every call is checked against
    ``credentials`` (inferscale.auth.RPC_ACCESS) before its request is parsed.
    """
    server = grpc.aio.server(
        interceptors=[AccessInterceptor(credentials)],
        maximum_concurrent_rpcs=max_concurrent_rpcs,
        options=[
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            # gRPC shares a port between servers by default; a second suite on busy ports must
            # fail to bind, not quietly split the traffic with the first.
            ("grpc.so_reuseport", 0),
            # Our channels ping every 30 s, idle or not (CHANNEL_OPTIONS). A server that expects
            # pings at most every 5 minutes (gRPC's default) counts those as strikes and closes
            # long-lived streams, such as the event stream to the monitor, with too_many_pings.
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 20_000),
            ("grpc.max_connection_age_ms", MAX_CONNECTION_AGE_SECONDS * 1000),
        ]
    )
    add_servicers(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = list(service_names)
    reflection.enable_server_reflection(
        [*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    tls = process_tls()
    port = server.add_secure_port(address, tls.server_credentials()) if tls else server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"could not bind {address}")
    await server.start()
    for name in ["", *names]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    report_port(port)
    return RunningServer(server=server, port=port, health=health_servicer)


# INFERSCALE_PORT_FILE: a file where a service writes the port its gRPC server bound, once it
# serves. A launcher (inferscale.suite) that starts a service on port 0 learns the port from it,
# so that no port is picked by one process and bound by another, which a third may take between.
PORT_FILE_VARIABLE = "INFERSCALE_PORT_FILE"


def report_port(port: int) -> None:
    """Writes ``port`` to the file INFERSCALE_PORT_FILE names, if set, whole or not at all."""
    path = os.environ.get(PORT_FILE_VARIABLE, "").strip()
    if not path:
        return
    partial = f"{path}.partial"
    with open(partial, "w") as file:
        file.write(f"{port}\n")
    # A rename is atomic: a launcher that sees the file reads the whole port.
    os.replace(partial, path)


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


async def stop_background(task: asyncio.Task[None] | None) -> None:
    """Cancels a service's background task and waits until it has stopped."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def open_channel(address: str, *, service_tls: bool = True) -> grpc.aio.Channel:
    """Opens a channel to a peer; the telemetry instrumentation, when set up, adds trace propagation.

    A channel to one of the suite's services (``service_tls``) is over TLS when the settings say
    so; its stubs, made with ``service_stub``, present the service token. ``service_tls`` is False
    for Triton, which has TLS settings of its own and never sees the suite's token.
    """
    if not service_tls:
        return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
    return open_service_channel(address, process_tls(), token="")


class _PresentingToken:
    """A stub's method that sends ``metadata`` with each call that carries none of its own."""

    def __init__(self, method: Callable[..., object], metadata: tuple[tuple[str, str], ...]) -> None:
        self._method = method
        self._metadata = metadata

    def __call__(self, *args: object, metadata: object = None, **kwargs: object) -> object:
        return self._method(*args, metadata=self._metadata if metadata is None else metadata, **kwargs)


Stub = TypeVar("Stub")


def service_stub(stub_class: Callable[[grpc.aio.Channel], Stub], channel: grpc.aio.Channel) -> Stub:
    """A stub of one of the suite's services whose calls present this process's service token
    (INFERSCALE_SERVICE_TOKEN), unless a call carries authorization of its own (an admin call).

    Metadata passed with each call rather than a grpc.aio client interceptor, which cost about
    30 µs of CPU a call on the request's way (a loopback micro-benchmark: 221 against 191 µs).
    """
    stub = stub_class(channel)
    token = os.environ.get(SERVICE_TOKEN_VARIABLE, "").strip()
    if token:
        metadata = tuple(bearer_metadata(token))
        for name, method in list(vars(stub).items()):
            setattr(stub, name, _PresentingToken(method, metadata))
    return stub


def open_service_channel(address: str, tls: TlsSettings | None, *, token: str) -> grpc.aio.Channel:
    """A grpc.aio channel over TLS when ``tls`` is given, presenting ``token`` (unless "") on every
    call that carries no authorization of its own."""
    interceptors = aio_token_interceptors(token) if token else None
    if tls is not None:
        return grpc.aio.secure_channel(address, tls.channel_credentials(), options=CHANNEL_OPTIONS, interceptors=interceptors)
    return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS, interceptors=interceptors)


def open_blocking_channel(address: str, tls: TlsSettings | None, *, token: str = "") -> grpc.Channel:
    """A synchronous channel for tools and tests, over TLS when ``tls`` is given, presenting
    ``token`` on every call that carries no authorization of its own."""
    if tls is not None:
        channel = grpc.secure_channel(address, tls.channel_credentials(), options=CHANNEL_OPTIONS)
    else:
        channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
    return grpc.intercept_channel(channel, BlockingTokenInterceptor(token)) if token else channel


def wait_until_serving(address: str, *, timeout_seconds: float, service: str = "", tls: TlsSettings | None = None) -> None:
    """Polls the standard health service at ``address`` until it answers SERVING or time runs out."""
    deadline = time.monotonic() + timeout_seconds
    with open_blocking_channel(address, tls) as channel:
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
