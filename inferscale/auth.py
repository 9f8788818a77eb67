"""Bearer-token checks for guarded calls, read from gRPC metadata; the token never reaches a log line."""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from inferscale.errors import PermissionDenied, Unauthenticated


def require_bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None, expected: str, *, what: str) -> None:
    """Raises unless ``metadata`` carries ``authorization: Bearer <expected>``.

    With no ``expected`` token configured the guarded calls are off altogether (PERMISSION_DENIED),
    so that a deployment never exposes them by forgetting a setting.
    """
    if not expected:
        raise PermissionDenied(f"{what} is disabled: no admin token is configured")
    presented = ""
    for key, value in metadata or ():
        if key.lower() == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            if text.startswith("Bearer "):
                presented = text[len("Bearer ") :]
    if not presented:
        raise Unauthenticated(f"{what} needs the metadata 'authorization: Bearer <admin token>'")
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        raise Unauthenticated(f"{what}: the admin token is not valid")
