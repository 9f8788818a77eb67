"""Who may call what: bearer tokens read from gRPC metadata, checked by one server interceptor; a token never reaches a log line."""

from __future__ import annotations

import collections
import contextvars
import enum
import functools
import hashlib
import hmac
import os
import pathlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field

import grpc
from opentelemetry import trace

from inferscale.errors import PermissionDenied, Unauthenticated, refuse
from inferscale.settings import SettingError
from inferscale.telemetry import ATTR_CLIENT_ID
from inferscale.tls import TlsSettings

# Where a client's token travels, for the client side.
CLIENT_TOKEN_VARIABLE = "INFERSCALE_CLIENT_TOKEN"


def bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    """The token of an ``authorization: Bearer <token>`` entry, or "" without one."""
    for key, value in metadata or ():
        if key.lower() == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            if text.startswith("Bearer "):
                return text[len("Bearer ") :]
    return ""


def bearer_metadata(token: str) -> list[tuple[str, str]]:
    """The metadata a client sends ``token`` in; none without a token."""
    return [("authorization", f"Bearer {token}")] if token else []


@dataclass(frozen=True)
class ClientTokens:
    """The router's clients and their keys, read from a file of "<client id> <token>" lines.

    Only SHA-256 digests of the tokens are kept; a token is looked up by its digest, so the
    comparison's time does not depend on how much of a wrong token matches.
    """

    _clients_by_digest: dict[bytes, str]

    @classmethod
    def from_file(cls, path: str) -> ClientTokens:
        """Reads the file; raises SettingError naming the line at fault (never the token)."""
        try:
            lines = pathlib.Path(path).read_text().splitlines()
        except OSError as error:
            raise SettingError(f"INFERSCALE_CLIENT_TOKENS_FILE={path!r} cannot be read: {error.strerror}") from None
        clients: dict[bytes, str] = {}
        for number, line in enumerate(lines, start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            parts = text.split()
            if len(parts) != 2 or len(parts[1]) < 16:
                raise SettingError(f"{path} line {number}: expected '<client id> <token of at least 16 characters>'")
            digest = hashlib.sha256(parts[1].encode()).digest()
            if digest in clients:
                raise SettingError(f"{path} line {number}: this token is already given to client {clients[digest]!r}")
            clients[digest] = parts[0]
        if not clients:
            raise SettingError(f"{path} names no client")
        return cls(clients)

    def knows(self, token: str) -> bool:
        """Whether ``token`` is one of the clients' tokens."""
        return hashlib.sha256(token.encode()).digest() in self._clients_by_digest

    def authenticate(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
        """Returns the calling client's id; raises Unauthenticated without a valid token."""
        token = bearer_token(metadata)
        if not token:
            raise Unauthenticated("this router needs the metadata 'authorization: Bearer <client token>'")
        client = self._clients_by_digest.get(hashlib.sha256(token.encode()).digest())
        if client is None:
            raise Unauthenticated("the client token is not valid")
        return client


# ---------------------------------------------------------------------------------------------
# Who may call what: one table for the whole suite, enforced by one server interceptor.


class Access(enum.Enum):
    """Who may make a call."""

    # Anyone who reaches the port: the health check, which changes nothing, runs no model and ends
    # at once (orchestrators' probes and load balancers call it without credentials).
    OPEN = "open"
    # Any caller this server knows (a client on the router, a service, an operator): the calls that
    # can stay open for long, health watches and reflection, which would otherwise let anyone take
    # up the calls a server serves at once.
    CALLER = "caller"
    # The router's clients: a client token (INFERSCALE_CLIENT_TOKENS_FILE), unless client
    # authentication is switched off explicitly (INFERSCALE_CLIENT_AUTH=off).
    CLIENT = "client"
    # The suite's own services: the service token, or a client certificate under mutual TLS. The
    # admin token is accepted too, so that an operator's tools need one credential.
    SERVICE = "service"
    # Operators: the admin token, for what changes what every caller is served.
    ADMIN = "admin"


# Every RPC the suite serves and who may call it. A method missing here is refused (fail closed),
# and a test checks that every RPC of every service is listed.
RPC_ACCESS: dict[str, Access] = {
    "/inferscale.v1.RouterService/Infer": Access.CLIENT,
    "/inferscale.v1.RouterService/InferStream": Access.CLIENT,
    "/inferscale.v1.OrchestratorService/Execute": Access.SERVICE,
    "/inferscale.v1.OrchestratorService/ExecuteStream": Access.SERVICE,
    "/inferscale.v1.OrchestratorService/Embed": Access.SERVICE,
    "/inferscale.v1.OrchestratorService/ListModels": Access.SERVICE,
    "/inferscale.v1.OrchestratorService/LoadModel": Access.ADMIN,
    "/inferscale.v1.OrchestratorService/UnloadModel": Access.ADMIN,
    "/inferscale.v1.CacheService/Lookup": Access.SERVICE,
    "/inferscale.v1.CacheService/Store": Access.SERVICE,
    "/inferscale.v1.CacheService/Invalidate": Access.ADMIN,
    "/inferscale.v1.CacheService/SemanticLookup": Access.SERVICE,
    "/inferscale.v1.CacheService/SemanticStore": Access.SERVICE,
    "/inferscale.v1.CacheService/GetCacheStats": Access.SERVICE,
    "/inferscale.v1.MonitorService/RecordEvents": Access.SERVICE,
    "/inferscale.v1.MonitorService/StreamEvents": Access.SERVICE,
    "/inferscale.v1.MonitorService/GetStats": Access.SERVICE,
    "/inferscale.v1.MonitorService/RecordFeedback": Access.SERVICE,
    "/inferscale.v1.MonitorService/GetRoutingPolicy": Access.SERVICE,
    "/inferscale.v1.MonitorService/ProposeRoutingPolicy": Access.ADMIN,
    "/inferscale.v1.MonitorService/GetPublishedRoutingPolicy": Access.SERVICE,
}
OPEN_METHODS = frozenset({"/grpc.health.v1.Health/Check"})
CALLER_METHODS = frozenset(
    {
        "/grpc.health.v1.Health/Watch",
        "/grpc.health.v1.Health/List",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    }
)

SERVICE_TOKEN_VARIABLE = "INFERSCALE_SERVICE_TOKEN"
ADMIN_TOKEN_VARIABLE = "INFERSCALE_ADMIN_TOKEN"
CLIENT_TOKENS_FILE_VARIABLE = "INFERSCALE_CLIENT_TOKENS_FILE"
CLIENT_AUTH_VARIABLE = "INFERSCALE_CLIENT_AUTH"
# Shorter tokens can be guessed; the same bound as client tokens.
MIN_TOKEN_LENGTH = 16


def access_of(method: str) -> Access | None:
    """Who may call ``method`` ("/package.Service/Method"); None for a method the suite does not know."""
    if method in OPEN_METHODS:
        return Access.OPEN
    if method in CALLER_METHODS:
        return Access.CALLER
    return RPC_ACCESS.get(method)


def _token_setting(environ: Mapping[str, str], name: str) -> str:
    token = environ.get(name, "").strip()
    if token and len(token) < MIN_TOKEN_LENGTH:
        raise SettingError(f"{name} must be at least {MIN_TOKEN_LENGTH} characters")
    return token


def _matches(presented: str, expected: str) -> bool:
    return bool(expected) and hmac.compare_digest(presented.encode(), expected.encode())


@dataclass(frozen=True)
class Credentials:
    """What a server checks callers against, and what its own channels present to its peers."""

    # INFERSCALE_SERVICE_TOKEN: the suite's services present it to each other; "" when mutual TLS
    # alone names them.
    service_token: str = field(repr=False)
    # INFERSCALE_ADMIN_TOKEN: policy publication, model load and unload, invalidation; "" turns those off.
    admin_token: str = field(repr=False)
    # Mutual TLS is on: a connection that got through the handshake carries a certificate the
    # suite's CA signed, which names a service.
    mutual_tls: bool
    # The router's clients; None while client authentication is off.
    clients: ClientTokens | None = None
    # This server is the router, whose callers are clients.
    serves_clients: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, *, serves_clients: bool = False) -> Credentials:
        """Reads the settings; raises SettingError when a server would be left open by a missing one.

        A service refuses to start without a service identity (a service token or mutual TLS); the
        router (``serves_clients``) also without client tokens, unless INFERSCALE_CLIENT_AUTH=off
        says that leaving Infer open is meant.
        """
        service_token = _token_setting(environ, SERVICE_TOKEN_VARIABLE)
        admin_token = _token_setting(environ, ADMIN_TOKEN_VARIABLE)
        tls = TlsSettings.from_env(environ)
        mutual_tls = tls is not None and tls.require_client_auth
        if not service_token and not mutual_tls:
            raise SettingError(
                f"{SERVICE_TOKEN_VARIABLE} is unset and mutual TLS is off: the services could not tell each other "
                "from anyone else. Set a token of at least 16 characters (the same for every service), or "
                "INFERSCALE_TLS_CLIENT_AUTH=on with certificates"
            )
        clients = None
        if serves_clients:
            client_auth = environ.get(CLIENT_AUTH_VARIABLE, "on").strip().lower() or "on"
            if client_auth not in ("on", "off"):
                raise SettingError(f"{CLIENT_AUTH_VARIABLE}={client_auth!r} is neither 'on' nor 'off'")
            tokens_file = environ.get(CLIENT_TOKENS_FILE_VARIABLE, "").strip()
            if client_auth == "on":
                if not tokens_file:
                    raise SettingError(
                        f"{CLIENT_TOKENS_FILE_VARIABLE} is unset: the router would serve anyone. Give it a file of "
                        f"'<client id> <token>' lines, or set {CLIENT_AUTH_VARIABLE}=off to serve without client tokens"
                    )
                clients = ClientTokens.from_file(tokens_file)
        shared = [token for token in (service_token, admin_token) if token]
        if len(shared) == 2 and service_token == admin_token:
            raise SettingError(f"{ADMIN_TOKEN_VARIABLE} equals {SERVICE_TOKEN_VARIABLE}: every service would be an operator")
        if clients is not None and any(clients.knows(token) for token in shared):
            raise SettingError(
                f"a client token of {CLIENT_TOKENS_FILE_VARIABLE} equals the service or the admin token: "
                "that client could call the suite's internal services"
            )
        return cls(
            service_token=service_token,
            admin_token=admin_token,
            mutual_tls=mutual_tls,
            clients=clients,
            serves_clients=serves_clients,
        )

    def check(self, access: Access, metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
        """Returns who calls (a client id, "service", "admin" or ""); raises unless they may make a call of ``access``."""
        if access is Access.OPEN:
            return ""
        if access is Access.CLIENT:
            return "" if self.clients is None else self.clients.authenticate(metadata)
        if access is Access.CALLER and self.serves_clients:
            if self.clients is None:
                return ""  # client authentication is off: the router serves anyone
            try:
                return self.clients.authenticate(metadata)
            except Unauthenticated:
                pass  # a service's or an operator's token opens it too
        presented = bearer_token(metadata)
        if _matches(presented, self.admin_token):
            return "admin"
        if access is Access.ADMIN:
            if not self.admin_token:
                raise PermissionDenied(f"this call is disabled: no admin token is configured ({ADMIN_TOKEN_VARIABLE})")
            if _matches(presented, self.service_token) or (self.mutual_tls and not presented):
                # A service, known for what it is, asking for what only an operator may do.
                raise PermissionDenied("this call needs the admin token; a service's credentials do not open it")
            if not presented:
                raise Unauthenticated("this call needs the metadata 'authorization: Bearer <admin token>'")
            raise Unauthenticated("the admin token is not valid")
        if self.mutual_tls or _matches(presented, self.service_token):
            return "service"
        if not presented:
            raise Unauthenticated("this service serves the suite's own services: it needs 'authorization: Bearer <service token>'")
        raise Unauthenticated("the token is not valid for this service")


@functools.cache
def process_credentials(*, serves_clients: bool = False) -> Credentials:
    """This process's credentials, read once."""
    return Credentials.from_env(serves_clients=serves_clients)


def _refusal(code: grpc.StatusCode, details: str) -> grpc.RpcMethodHandler:
    """A handler that refuses the call without reading its request."""

    async def refused(requests: object, context: grpc.aio.ServicerContext) -> None:
        refuse(context, code, details)

    # Served as a request stream whatever the method: gRPC reads a unary request whole before its
    # handler runs, a stream's messages only when asked, so a refused caller's bytes are never
    # read in (a 64 MiB Infer without a token costs no memory). The wire format is the same.
    return grpc.stream_unary_rpc_method_handler(refused)


# The client the call being served was authenticated as; "" without client authentication.
_CALLER: contextvars.ContextVar[str] = contextvars.ContextVar("inferscale_caller", default="")


def current_caller() -> str:
    """The authenticated client of the call this code serves, or "" when clients are not authenticated."""
    return _CALLER.get()


class _Unparsable(Exception):
    """A message of a request stream is not the message its method takes."""


def _parsed_in_the_handler(handler: grpc.RpcMethodHandler, client: str) -> grpc.RpcMethodHandler:
    """Wraps a unary-unary or stream-stream handler so that it parses its own requests.

    gRPC answers a request its deserializer cannot parse with UNKNOWN; parsed here, bytes that are
    no message of the method's type get INVALID_ARGUMENT, as any other malformed request does.
    With ``client``, the handler and its span also know the authenticated client.
    """
    parse = handler.request_deserializer
    if parse is None:
        return handler
    message = getattr(getattr(parse, "__self__", None), "DESCRIPTOR", None)
    unparsable = f"the request is not a valid {message.full_name if message else 'message of this method'}"

    if handler.unary_unary is not None:
        behaviour = handler.unary_unary

        async def unary(raw: bytes, context: grpc.aio.ServicerContext) -> object:
            try:
                request = parse(raw)
            except Exception:  # noqa: BLE001 - protobuf's DecodeError, or any other failure to parse
                refuse(context, grpc.StatusCode.INVALID_ARGUMENT, unparsable)
                return None
            if client:
                trace.get_current_span().set_attribute(ATTR_CLIENT_ID, client)
                _CALLER.set(client)
            return await behaviour(request, context)

        return grpc.unary_unary_rpc_method_handler(unary, response_serializer=handler.response_serializer)
    if handler.unary_stream is not None:
        streaming_behaviour = handler.unary_stream

        async def unary_stream(raw: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[object]:
            try:
                request = parse(raw)
            except Exception:  # noqa: BLE001 - as above
                refuse(context, grpc.StatusCode.INVALID_ARGUMENT, unparsable)
                return
            if client:
                trace.get_current_span().set_attribute(ATTR_CLIENT_ID, client)
                _CALLER.set(client)
            async for reply in streaming_behaviour(request, context):
                yield reply

        return grpc.unary_stream_rpc_method_handler(unary_stream, response_serializer=handler.response_serializer)
    if handler.stream_stream is not None:
        stream_behaviour = handler.stream_stream

        async def requests(raw_requests: AsyncIterator[bytes]) -> AsyncIterator[object]:
            async for raw in raw_requests:
                try:
                    yield parse(raw)
                except Exception as error:  # noqa: BLE001 - as above
                    raise _Unparsable from error

        async def stream(raw_requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[object]:
            try:
                async for reply in stream_behaviour(requests(raw_requests), context):
                    yield reply
            except _Unparsable:
                refuse(context, grpc.StatusCode.INVALID_ARGUMENT, unparsable)

        return grpc.stream_stream_rpc_method_handler(stream, response_serializer=handler.response_serializer)
    return handler


class AccessInterceptor(grpc.aio.ServerInterceptor):
    """Checks every call against RPC_ACCESS before its request is even parsed: a refused call costs no work."""

    def __init__(self, credentials: Credentials) -> None:
        self._credentials = credentials

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler  # gRPC answers UNIMPLEMENTED itself
        method = handler_call_details.method
        method = method.decode() if isinstance(method, bytes) else method
        access = access_of(method)
        if access is None:
            return _refusal(grpc.StatusCode.PERMISSION_DENIED, f"{method} is not open to any caller")
        try:
            caller = self._credentials.check(access, handler_call_details.invocation_metadata)
        except (Unauthenticated, PermissionDenied) as error:
            return _refusal(error.code, str(error))
        return _parsed_in_the_handler(handler, caller if access is Access.CLIENT else "")


class _TokenMetadata:
    """Adds ``authorization: Bearer <token>`` to calls that carry no authorization of their own."""

    def __init__(self, token: str) -> None:
        self._entry = ("authorization", f"Bearer {token}")

    def _with_token(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> list[tuple[str, str | bytes]]:
        entries = list(metadata or ())
        if not any(key.lower() == "authorization" for key, _ in entries):
            entries.append(self._entry)
        return entries


class _AioTokenMetadata(_TokenMetadata):
    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        return grpc.aio.ClientCallDetails(
            details.method, details.timeout, grpc.aio.Metadata(*self._with_token(details.metadata)),
            details.credentials, details.wait_for_ready,
        )


class _AioUnaryUnaryToken(_AioTokenMetadata, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        return await continuation(self._details(client_call_details), request)


class _AioUnaryStreamToken(_AioTokenMetadata, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        return await continuation(self._details(client_call_details), request)


class _AioStreamUnaryToken(_AioTokenMetadata, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation, client_call_details, request_iterator):  # type: ignore[no-untyped-def]
        return await continuation(self._details(client_call_details), request_iterator)


class _AioStreamStreamToken(_AioTokenMetadata, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation, client_call_details, request_iterator):  # type: ignore[no-untyped-def]
        return await continuation(self._details(client_call_details), request_iterator)


def aio_token_interceptors(token: str) -> list[grpc.aio.ClientInterceptor]:
    """Interceptors that present ``token`` on every kind of grpc.aio call: a channel files each
    interceptor under the first kind it is an instance of, so each kind needs its own."""
    return [kind(token) for kind in (_AioUnaryUnaryToken, _AioUnaryStreamToken, _AioStreamUnaryToken, _AioStreamStreamToken)]


class _BlockingCallDetails(
    collections.namedtuple("_BlockingCallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")),
    grpc.ClientCallDetails,
):
    pass


class BlockingTokenInterceptor(
    _TokenMetadata,
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """The token interceptor for blocking channels (tools and tests)."""

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        return _BlockingCallDetails(
            details.method, details.timeout, self._with_token(details.metadata), details.credentials,
            getattr(details, "wait_for_ready", None), getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        return continuation(self._details(client_call_details), request)

    def intercept_stream_unary(self, continuation, client_call_details, request_iterator):  # type: ignore[no-untyped-def]
        return continuation(self._details(client_call_details), request_iterator)

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):  # type: ignore[no-untyped-def]
        return continuation(self._details(client_call_details), request_iterator)
