"""Bearer-token checks of guarded calls."""

from __future__ import annotations

import pytest

from inferscale.auth import require_bearer_token
from inferscale.errors import PermissionDenied, Unauthenticated


def test_the_right_token_passes() -> None:
    require_bearer_token([("authorization", "Bearer s3cret")], "s3cret", what="LoadModel")


def test_a_missing_or_wrong_token_is_unauthenticated_and_never_echoed() -> None:
    with pytest.raises(Unauthenticated, match="needs the metadata"):
        require_bearer_token([], "s3cret", what="LoadModel")
    with pytest.raises(Unauthenticated) as raised:
        require_bearer_token([("authorization", "Bearer guess")], "s3cret", what="LoadModel")
    assert "guess" not in str(raised.value) and "s3cret" not in str(raised.value)


def test_without_a_configured_token_the_call_is_disabled() -> None:
    with pytest.raises(PermissionDenied, match="disabled"):
        require_bearer_token([("authorization", "Bearer anything")], "", what="UnloadModel")
