"""Domain errors of InferScale and the one place where they become gRPC statuses.

    InferScaleError                  base; never raised itself
    ├── InvalidArgument              the caller sent something malformed   -> INVALID_ARGUMENT
    ├── NotFound                     an unknown task or model              -> NOT_FOUND
    ├── ResourceExhausted            over a size bound or shedding load    -> RESOURCE_EXHAUSTED
    ├── FailedPrecondition           the system is not in a state to do it -> FAILED_PRECONDITION
    ├── Unauthenticated              no valid credentials                  -> UNAUTHENTICATED
    ├── PermissionDenied             the call is not allowed at all        -> PERMISSION_DENIED
    ├── ModelFailed                  a model failed on a valid request     -> INTERNAL
    ├── DeadlineExceeded             the caller's deadline ran out         -> DEADLINE_EXCEEDED
    └── Unavailable                  Triton or a peer service is down      -> UNAVAILABLE
"""

from __future__ import annotations

import functools
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from typing import Any, TypeVar

import grpc


class InferScaleError(Exception):
    """Base of the errors that carry a gRPC status code and a message a person can act on."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidArgument(InferScaleError):
    """The request is malformed; the message names the field and why."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(InferScaleError):
    """A task, model or entry the request names does not exist."""

    code = grpc.StatusCode.NOT_FOUND


class ResourceExhausted(InferScaleError):
    """A size bound is exceeded, or the service sheds load."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(InferScaleError):
    """The request is well formed but the system is not in a state to carry it out."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class Unauthenticated(InferScaleError):
    """The call carries no valid credentials."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(InferScaleError):
    """The caller may not make this call."""

    code = grpc.StatusCode.PERMISSION_DENIED


class ModelFailed(InferScaleError):
    """A model failed on a request it should have answered, or answered in a shape its config does not declare."""

    code = grpc.StatusCode.INTERNAL


class DeadlineExceeded(InferScaleError):
    """The caller's deadline ran out before the answer came: the server is not at fault."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Unavailable(InferScaleError):
    """Triton or a peer service cannot be reached right now; retrying later may succeed."""

    code = grpc.StatusCode.UNAVAILABLE


Handler = TypeVar("Handler", bound=Callable[..., Awaitable[Any]])


def status_details(details: str | None, code: grpc.StatusCode) -> str:
    """``details`` as a status message every client receives: without whitespace at either end, and
    never empty (the code's name stands in).

    The message travels as the HTTP/2 trailer grpc-message, which gRPC percent-encodes except for
    printable ASCII, space included. HTTP/2 forbids a field value that starts or ends with a space
    (RFC 9113, 8.2.1): Python's gRPC passes one on, but Node's HTTP/2, and so grpc-js, drops the
    whole trailer, and its caller sees the code with an empty message. Triton ends its shape
    refusals with ". ", so without this a Node client lost every one of them.
    """
    return (details or "").strip() or code.name


def refuse(context: grpc.aio.ServicerContext, code: grpc.StatusCode, details: str | None) -> None:
    """Ends the call being served with ``code`` once its handler returns (it must return None).

    Rather than ``context.abort``: the exception abort raises keeps the request, through the
    handler's frame, in a reference cycle until a full garbage collection, so that each refused
    request of a few MB stayed in memory (100 refused 2 MB requests grew a router by 136 MiB).
    """
    context.set_code(code)
    context.set_details(status_details(details, code))


def grpc_errors(handler: Handler) -> Handler:
    """Decorates an async servicer method so that domain errors abort the RPC with their status.

    A peer's own gRPC error is passed on with its code, so that a client of the router sees the
    orchestrator's NOT_FOUND as NOT_FOUND rather than as an opaque INTERNAL.
    """

    @functools.wraps(handler)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await handler(self, request, context)
        except InferScaleError as error:
            refuse(context, error.code, str(error))
        except grpc.aio.AioRpcError as error:
            refuse(context, error.code(), error.details())
        return None

    return wrapper  # type: ignore[return-value]


def grpc_stream_errors(
    handler: Callable[[Any, Any, grpc.aio.ServicerContext], AsyncGenerator[Any, None]],
) -> Callable[[Any, Any, grpc.aio.ServicerContext], AsyncGenerator[Any, None]]:
    """``inferscale.errors.grpc_errors`` for a handler that streams its replies: a domain error, or a
    peer's gRPC error, ends the stream with its status after the replies already sent."""

    @functools.wraps(handler)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> AsyncGenerator[Any, None]:
        try:
            async with aclosing(handler(self, request, context)) as replies:
                async for reply in replies:
                    yield reply
        except InferScaleError as error:
            refuse(context, error.code, str(error))
        except grpc.aio.AioRpcError as error:
            refuse(context, error.code(), error.details())

    return wrapper
