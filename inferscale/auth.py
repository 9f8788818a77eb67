"""Bearer-token checks for guarded calls, read from gRPC metadata; the token never reaches a log line."""

from __future__ import annotations

import hashlib
import hmac
import pathlib
from collections.abc import Iterable
from dataclasses import dataclass

from inferscale.errors import PermissionDenied, Unauthenticated
from inferscale.settings import SettingError

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

    def authenticate(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
        """Returns the calling client's id; raises Unauthenticated without a valid token."""
        token = bearer_token(metadata)
        if not token:
            raise Unauthenticated("this router needs the metadata 'authorization: Bearer <client token>'")
        client = self._clients_by_digest.get(hashlib.sha256(token.encode()).digest())
        if client is None:
            raise Unauthenticated("the client token is not valid")
        return client


def require_bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None, expected: str, *, what: str) -> None:
    """Raises unless ``metadata`` carries ``authorization: Bearer <expected>``.

    With no ``expected`` token configured the guarded calls are off altogether (PERMISSION_DENIED),
    so that a deployment never exposes them by forgetting a setting.
    """
    if not expected:
        raise PermissionDenied(f"{what} is disabled: no admin token is configured")
    presented = bearer_token(metadata)
    if not presented:
        raise Unauthenticated(f"{what} needs the metadata 'authorization: Bearer <admin token>'")
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        raise Unauthenticated(f"{what}: the admin token is not valid")
