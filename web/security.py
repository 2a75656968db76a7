"""Token checks shared by the API, the dashboard and the worker's web views."""

from __future__ import annotations

import hmac

TOKEN_COOKIE = "storemon_token"


def token_matches(given: str, token: str) -> bool:
    """Constant-time comparison; an empty configured token never matches."""
    return bool(token) and hmac.compare_digest(given.strip().encode(), token.encode())


def bearer_token_ok(header: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``Bearer <token>``."""
    if not header:
        return False
    scheme, _, given = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return token_matches(given, token)
