"""The GitHub client: gidgethub's API surface over one aiohttp session, with the transport made robust.

Everything GitHub asks of a well-behaved integration lives in `_send`: retries of 5xx and timeouts
with backoff, secondary rate limits (Retry-After, else >= 60 s), the primary limit
(`x-ratelimit-remaining: 0` waits for `x-ratelimit-reset`), ~1 s pacing of mutating requests per
installation, and one token refresh on a 401. gidgethub itself never retries.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import gidgethub.aiohttp
from gidgethub import sansio

from .auth import TokenCache, app_jwt, parse_expires_at
from .metrics import Metrics, endpoint

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
# The Authorization header to send; given the one GitHub just refused with a 401, a fresh one.
Credentials = Callable[[str | None], Awaitable[str]]
MUTATING = frozenset({"POST", "PATCH", "PUT", "DELETE"})
USER_AGENT = "infra-review"
SECONDARY_LIMIT_TEXT = "secondary rate limit"


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    backoff: float = 1.0
    max_backoff: float = 30.0
    secondary_wait: float = 60.0
    rate_limit_retries: int = 3
    timeout: float = 30.0

    def delay(self, attempt: int) -> float:
        return min(self.backoff * 2 ** (attempt - 1), self.max_backoff)


DEFAULT_POLICY = RetryPolicy()


class ResponseTooLarge(Exception):
    pass


class Throttle:
    """Per-installation pacing of mutations and memory of an exhausted primary rate limit."""

    def __init__(self, *, interval: float, clock: Callable[[], float], sleep: Sleep) -> None:
        self.interval = interval
        self._clock = clock
        self._sleep = sleep
        self._lock = asyncio.Lock()
        self._last_mutation: float | None = None
        self.reset_at: float | None = None

    async def before(self, method: str) -> None:
        if self.reset_at is not None:
            wait = self.reset_at - self._clock()
            self.reset_at = None
            if wait > 0:
                log.warning("primary rate limit exhausted; waiting %.0f s for reset", wait)
                await self._sleep(wait + 1)
        if method in MUTATING and self.interval > 0:
            async with self._lock:
                if self._last_mutation is not None:
                    wait = self._last_mutation + self.interval - self._clock()
                    if wait > 0:
                        await self._sleep(wait)
                self._last_mutation = self._clock()

    def after(self, headers: Mapping[str, str]) -> None:
        if headers.get("x-ratelimit-remaining") == "0" and headers.get("x-ratelimit-reset", "").isdigit():
            self.reset_at = float(headers["x-ratelimit-reset"])


def rate_limit_wait(status: int, headers: Mapping[str, str], body: bytes, *, now: float,
                    secondary_wait: float) -> float | None:
    """Seconds to wait before retrying a rate-limited response, or None if it is not one."""
    if status not in (403, 429):
        return None
    retry_after = headers.get("retry-after", "")
    if retry_after.strip().isdigit():
        return float(retry_after)
    reset = headers.get("x-ratelimit-reset", "")
    if headers.get("x-ratelimit-remaining") == "0" and reset.isdigit():
        return max(float(reset) - now, 0.0) + 1
    if SECONDARY_LIMIT_TEXT in body[:2000].decode("utf-8", "replace").lower():
        return secondary_wait
    if status == 429:
        return secondary_wait
    return None


class GitHubClient(gidgethub.aiohttp.GitHubAPI):
    """gidgethub's GitHubAPI (getitem/getiter/post/patch/put/delete) with a robust transport."""

    def __init__(self, session: aiohttp.ClientSession, *, base_url: str, credentials: Credentials,
                 throttle: Throttle, sleep: Sleep = asyncio.sleep, clock: Callable[[], float] = time.time,
                 policy: RetryPolicy = DEFAULT_POLICY, metrics: Metrics | None = None,
                 installation_id: int | None = None) -> None:
        super().__init__(session, USER_AGENT, base_url=base_url)
        self._credentials = credentials
        self._throttle = throttle
        self._sleep_fn = sleep
        self._clock = clock
        self.policy = policy
        self.metrics = metrics or Metrics()
        self.installation_id = installation_id

    async def sleep(self, seconds: float) -> None:
        await self._sleep_fn(seconds)

    async def _request(self, method: str, url: str, headers: Mapping[str, str],
                       body: bytes = b"") -> tuple[int, Mapping[str, str], bytes]:
        return await self._send(method, url, headers, body)

    async def download(self, url: str, url_vars: Mapping[str, Any] | None = None, *,
                       max_bytes: int) -> bytes:
        """GET a binary resource (e.g. a tarball), following redirects with the session."""
        full_url = sansio.format_url(url, url_vars or {}, base_url=self.base_url)
        headers = sansio.create_headers(USER_AGENT, accept="application/vnd.github+json")
        status, resp_headers, data = await self._send("GET", full_url, headers, b"", max_bytes=max_bytes)
        if status >= 300:
            sansio.decipher_response(status, resp_headers, data)
        return data

    async def _send(self, method: str, url: str, headers: Mapping[str, str], body: bytes, *,
                    max_bytes: int | None = None) -> tuple[int, Mapping[str, str], bytes]:
        headers = dict(headers)
        caller_auth = any(k.lower() == "authorization" for k in headers)
        refused: str | None = None
        failures = 0
        limited = 0
        while True:
            await self._throttle.before(method)
            if not caller_auth:
                headers["authorization"] = await self._credentials(refused)
            try:
                status, resp_headers, data = await self._once(method, url, headers, body, max_bytes)
            except (TimeoutError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
                failures += 1
                self.metrics.inc("infra_review_github_requests_total", method=method, endpoint=endpoint(method, url),
                                 status="error")
                if failures >= self.policy.attempts:
                    raise
                log.warning("%s %s failed (%s); retry %d", method, _path(url), type(exc).__name__, failures)
                await self.sleep(self.policy.delay(failures))
                continue
            self.metrics.inc("infra_review_github_requests_total", method=method, endpoint=endpoint(method, url),
                             status=str(status))
            self.metrics.saw_rate_limit(self.installation_id, resp_headers)
            self._throttle.after(resp_headers)
            if status == 401 and refused is None and not caller_auth:
                log.info("401 from %s; refreshing the token once", _path(url))
                refused = headers["authorization"]
                continue
            wait = rate_limit_wait(status, resp_headers, data, now=self._clock(),
                                   secondary_wait=self.policy.secondary_wait)
            if wait is not None and limited < self.policy.rate_limit_retries:
                limited += 1
                self._throttle.reset_at = None
                log.warning("rate limited on %s %s; waiting %.0f s", method, _path(url), wait)
                await self.sleep(wait)
                continue
            if status >= 500 and failures + 1 < self.policy.attempts:
                failures += 1
                log.warning("%s %s answered %d; retry %d", method, _path(url), status, failures)
                await self.sleep(self.policy.delay(failures))
                continue
            return status, resp_headers, data

    async def _once(self, method: str, url: str, headers: Mapping[str, str], body: bytes,
                    max_bytes: int | None) -> tuple[int, Mapping[str, str], bytes]:
        timeout = aiohttp.ClientTimeout(total=self.policy.timeout)
        async with self._session.request(method, url, headers=headers, data=body, timeout=timeout) as resp:
            if max_bytes is None:
                return resp.status, resp.headers, await resp.read()
            chunks, size = [], 0
            async for chunk in resp.content.iter_chunked(1 << 16):
                size += len(chunk)
                if size > max_bytes:
                    raise ResponseTooLarge(f"{_path(url)} is over {max_bytes} bytes")
                chunks.append(chunk)
            return resp.status, resp.headers, b"".join(chunks)


def _path(url: str) -> str:
    """A URL without its query string, which may carry signed tokens."""
    return url.split("?", 1)[0]


class GitHubApp:
    """Process-wide GitHub access: one session, the token cache, per-installation throttles."""

    def __init__(self, *, app_id: int, private_key: str, base_url: str,
                 session: aiohttp.ClientSession | None = None, sleep: Sleep = asyncio.sleep,
                 clock: Callable[[], float] = time.time, mutation_interval: float = 1.0,
                 policy: RetryPolicy = DEFAULT_POLICY, metrics: Metrics | None = None,
                 tokens: TokenCache | None = None) -> None:
        self.app_id = app_id
        self._private_key = private_key
        self.base_url = base_url
        self._session = session
        self._own_session = session is None
        self._sleep = sleep
        self._clock = clock
        self.mutation_interval = mutation_interval
        self.policy = policy
        self.metrics = metrics or Metrics()
        self.tokens = tokens or TokenCache(clock=clock)
        self._throttles: dict[int | None, Throttle] = {}
        self._token_locks: dict[int, asyncio.Lock] = {}

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _throttle(self, installation_id: int | None) -> Throttle:
        if installation_id not in self._throttles:
            self._throttles[installation_id] = Throttle(
                interval=self.mutation_interval, clock=self._clock, sleep=self._sleep)
        return self._throttles[installation_id]

    def jwt(self) -> str:
        return app_jwt(self.app_id, self._private_key, now=self._clock())

    def use_credentials(self, app_id: int, private_key: str) -> None:
        """The App's credentials from now on (the setup page registered it while the service ran)."""
        self.app_id, self._private_key = app_id, private_key
        self.tokens.clear()

    def app_client(self) -> GitHubClient:
        """A client authenticated as the App itself (JWT), for /app endpoints."""
        async def credentials(_refused: str | None) -> str:
            return f"Bearer {self.jwt()}"
        return self._client(None, credentials)

    def __call__(self, installation_id: int) -> GitHubClient:
        """A client authenticated as `installation_id` (token fetched and cached on demand)."""
        async def credentials(refused: str | None) -> str:
            stale = refused.removeprefix("token ") if refused else None
            return f"token {await self.installation_token(installation_id, stale=stale)}"
        return self._client(installation_id, credentials)

    def _client(self, installation_id: int | None, credentials: Credentials) -> GitHubClient:
        return GitHubClient(self.session, base_url=self.base_url, credentials=credentials,
                            throttle=self._throttle(installation_id), sleep=self._sleep, clock=self._clock,
                            policy=self.policy, metrics=self.metrics, installation_id=installation_id)

    async def installation_token(self, installation_id: int, *, stale: str | None = None) -> str:
        """The cached token, or a new one. A `stale` token (GitHub refused it) is replaced only if it is
        still the cached one: requests refused together share the one token the first of them fetched."""
        lock = self._token_locks.setdefault(installation_id, asyncio.Lock())
        async with lock:
            if stale is not None and self.tokens.get(installation_id) == stale:
                self.tokens.invalidate(installation_id)
            token = self.tokens.get(installation_id)
            if token is None:
                data = await self.app_client().post(
                    "/app/installations/{installation_id}/access_tokens",
                    url_vars={"installation_id": installation_id}, data={})
                token = data["token"]
                self.tokens.put(installation_id, token, parse_expires_at(data["expires_at"]))
                log.info("installation %s: new token (%s…, %d chars)", installation_id, token[:4], len(token))
            return token

    async def ping(self) -> None:
        """Prove the key signs a JWT (used by /ready; no network)."""
        self.jwt()
