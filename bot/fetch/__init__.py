"""One policed fetcher for everything infra-review downloads (remote Kustomize resources, Helm charts).

    policy.py    which URLs and addresses may be fetched (pure)
    http.py      the bounded client: every hop checked, DNS resolved once and connected to, caps
    cache.py     downloads on disk by URL, bounded in size and age
    remote.py    Kustomize remote references → what to download
    resources.py remote entries of a build: fetched, checked, placed in the scratch copy
    charts.py    Helm charts from chart repositories and OCI registries (oci.py: the registry API)

`FetchSettings` is what a run decides (from `.github/infra-review.yml` `fetch:`/`flux:` and the
command line's `--offline`); `Fetcher` applies it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bot.fetch.cache import FetchCache
from bot.fetch.http import FetchFailed, Limits, Resolver, get, resolve
from bot.fetch.policy import FetchPolicy, Refused
from bot.fetch.remote import CODELOAD, GITLAB
from bot.render.kustomize import setting

if TYPE_CHECKING:
    from bot.config import Config


FETCH_MAX_BYTES = int(setting("INFRA_REVIEW_FETCH_MAX_BYTES", 64 * 1024 * 1024))
FETCH_TIMEOUT = setting("INFRA_REVIEW_FETCH_TIMEOUT", 60)
FETCH_CACHE_MAX_AGE = setting("INFRA_REVIEW_FETCH_CACHE_MAX_AGE", 24 * 3600)
FETCH_MAX_INDEX_BYTES = int(setting("INFRA_REVIEW_FETCH_MAX_INDEX_BYTES", 32 * 1024 * 1024))  # index.yaml, a tag page
FETCH_MAX_CHART_BYTES = int(setting("INFRA_REVIEW_FETCH_MAX_CHART_BYTES", 16 * 1024 * 1024))  # one chart archive
FETCH_INDEX_MAX_AGE = setting("INFRA_REVIEW_FETCH_INDEX_MAX_AGE", 300)  # seconds an index or tag list is reused
MAX_REMOTE_DEPTH = 3  # remote resources named by fetched content, and so on: levels followed

__all__ = ["FetchFailed", "FetchSettings", "Fetcher", "Refused"]


@dataclass(frozen=True)
class FetchSettings:
    """What may be fetched in one run.

    `enabled` False (`--offline`, `fetch: {enabled: false}`): nothing is fetched, and a remote entry is
    a notice that it was not checked. `no_remote_bases` (`flux: {no_remote_bases: true}`): the
    cluster's kustomize-controller forbids remote resources, so one is a build error. `codeload` and
    `gitlab` are where repository archives come from (tests point them at a local server). Helm charts
    (bot.fetch.charts) are capped by `max_index_bytes` (an index.yaml, a page of OCI tags) and
    `max_chart_bytes` (an archive); an index or tag list is reused for `index_max_age` seconds."""

    enabled: bool = True
    allow: tuple[str, ...] = ()
    no_remote_bases: bool = False
    max_bytes: int = FETCH_MAX_BYTES
    timeout: float = FETCH_TIMEOUT
    cache_max_age: float = FETCH_CACHE_MAX_AGE
    max_depth: int = MAX_REMOTE_DEPTH
    max_index_bytes: int = FETCH_MAX_INDEX_BYTES
    max_chart_bytes: int = FETCH_MAX_CHART_BYTES
    index_max_age: float = FETCH_INDEX_MAX_AGE
    codeload: str = CODELOAD
    gitlab: str = GITLAB

    @classmethod
    def from_config(cls, config: Config, offline: bool = False) -> FetchSettings:
        """A repository's settings (`fetch:`, `flux.no_remote_bases`); archives from bot.fetch.remote's
        CODELOAD and GITLAB as they are when called (tests point them at a local server)."""
        from bot.fetch import remote

        return cls(enabled=config.fetch_enabled and not offline, allow=tuple(config.fetch_allow),
                   no_remote_bases=config.no_remote_bases, codeload=remote.CODELOAD, gitlab=remote.GITLAB)

    @property
    def policy(self) -> FetchPolicy:
        return FetchPolicy(self.allow)


class Fetcher:
    """Downloads through the policy, the cache first. Thread-safe: one download per URL at a time,
    and a URL that failed is not tried again by the same fetcher."""

    def __init__(self, settings: FetchSettings, cache_dir: Path | None = None, cache_max_bytes: int = 1024**3,
                 resolver: Resolver = resolve):
        self.settings = settings
        self.cache = FetchCache(cache_dir, cache_max_bytes, settings.cache_max_age)
        self.resolver = resolver
        self.requests = 0  # downloads attempted (not cache hits): for tests and reports
        self._lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._failed: dict[str, Exception] = {}

    def get(self, url: str) -> bytes:
        """The bytes at `url`; Refused by the policy, FetchFailed otherwise."""
        with self._lock:
            lock = self._locks.setdefault(url, threading.Lock())
        with lock:
            if url in self._failed:
                raise self._failed[url]
            cached = self.cache.get(url)
            if cached is not None:
                return cached
            try:
                body = self.download(url, self.settings.max_bytes)
            except (Refused, FetchFailed) as exc:
                self._failed[url] = exc
                raise
            self.cache.put(url, body)
            return body

    def download(self, url: str, max_bytes: int) -> bytes:
        """The bytes at `url` within `max_bytes`, neither cached nor remembered: for callers that cache on
        their own terms (Helm chart indexes and archives). Refused or FetchFailed."""
        self.settings.policy.check_url(url)  # refused before anything is resolved
        self.counted()
        return get(url, self.settings.policy, Limits(max_bytes, self.settings.timeout), self.resolver)[0]

    def counted(self) -> None:
        """One more request about to be sent (bot.fetch.oci sends its own)."""
        with self._lock:
            self.requests += 1
