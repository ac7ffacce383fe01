"""App JWTs and the per-installation token cache (no I/O here; client.py fetches tokens)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import jwt

# GitHub rejects JWTs whose iat is in the future or whose exp is over 10 minutes away;
# backdating iat absorbs clock drift and 9 minutes keeps exp safely inside the limit.
CLOCK_SKEW = 60
JWT_LIFETIME = 9 * 60
# Refresh installation tokens (1 hour lifetime) this long before they expire.
TOKEN_MARGIN = 5 * 60


def app_jwt(app_id: int | str, private_key: str, *, now: float | None = None) -> str:
    """An RS256 App JWT: iat 60 s in the past, exp 9 minutes from now, iss the app id as a string."""
    now = int(time.time() if now is None else now)
    claims = {"iat": now - CLOCK_SKEW, "exp": now + JWT_LIFETIME, "iss": str(app_id)}
    return jwt.encode(claims, private_key, algorithm="RS256")


def parse_expires_at(value: str) -> float:
    """GitHub's `expires_at` (ISO 8601, `Z` suffix) as a Unix timestamp."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class CachedToken:
    token: str
    expires_at: float


class TokenCache:
    """Installation tokens by installation id, valid until `margin` seconds before expiry."""

    def __init__(self, *, clock: Callable[[], float] = time.time, margin: float = TOKEN_MARGIN) -> None:
        self._clock = clock
        self._margin = margin
        self._tokens: dict[int, CachedToken] = {}

    def get(self, installation_id: int) -> str | None:
        cached = self._tokens.get(installation_id)
        if cached is None:
            return None
        if self._clock() >= cached.expires_at - self._margin:
            del self._tokens[installation_id]
            return None
        return cached.token

    def put(self, installation_id: int, token: str, expires_at: float) -> None:
        self._tokens[installation_id] = CachedToken(token, expires_at)

    def invalidate(self, installation_id: int) -> None:
        self._tokens.pop(installation_id, None)

    def clear(self) -> None:
        self._tokens.clear()

    def __contains__(self, installation_id: int) -> bool:
        return self.get(installation_id) is not None

    def __len__(self) -> int:
        return len(self._tokens)
