"""The cheapest hop Python's gRPC can add in front of Triton: the floor under any Python router.

It serves Triton's own ``ModelInfer`` and forwards each request's bytes to Triton unparsed,
then the response's bytes back: one call served and one made, as the embedded router does,
with none of the router's work (no parsing, routing, cache key, events). A load generator calls
it with tritonclient exactly as it calls Triton, so the difference between the two is what a
Python gRPC hop costs on the machine, whatever the router does on top.

Tracing follows the same standard variables as the services (inferscale.telemetry), so the
floor can be measured traced and untraced.
"""

from __future__ import annotations

import asyncio
import os

import grpc

from inferscale.telemetry import setup_telemetry

MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"


async def _serve(port: int, triton_url: str) -> None:
    # Without serializers gRPC hands the bytes through as they came.
    channel = grpc.aio.insecure_channel(triton_url)
    model_infer = channel.unary_unary(MODEL_INFER)

    async def forward(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        try:
            return await model_infer(request, timeout=context.time_remaining())
        except grpc.aio.AioRpcError as refused:
            # Left to propagate, it would reach the caller as UNKNOWN.
            await context.abort(refused.code(), refused.details() or "")

    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("inference.GRPCInferenceService", {"ModelInfer": grpc.unary_unary_rpc_method_handler(forward)})]
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def serve(port: int, triton_url: str, env: dict[str, str]) -> None:
    """Runs the proxy on ``port`` until the process is stopped; ``env`` holds the OTEL_* variables.

    The entry point of a process of its own (multiprocessing, spawn), so that its CPU time is
    its own.
    """
    os.environ.update(env)
    setup_telemetry("bare-proxy")
    asyncio.run(_serve(port, triton_url))
