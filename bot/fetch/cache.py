"""Downloads kept on disk, keyed by the URL fetched (which for an archive names the git ref).

Entries live in `<render cache>/fetch/<aa>/<key>.bin`, so the render cache's own pruning (which
looks at `.json` files one folder deep) never sees them. The folder is bounded like the render
cache: an entry unused for `max_age` seconds is removed, then the least recently used beyond
`max_bytes`; a hit refreshes the entry. A moving ref (a branch, `HEAD`) is therefore fetched again
at most once per `max_age` (INFRA_REVIEW_FETCH_CACHE_MAX_AGE, one day by default). Failures are never
cached. Best effort: a cache that cannot be read or written is a miss, never an error.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from bot.diskcache import BoundedFolder


def cache_key(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


class FetchCache(BoundedFolder):
    """Bytes by URL; `directory` None keeps them in memory only, for the process's life."""

    def __init__(self, directory: Path | None, max_bytes: int, max_age: float):
        super().__init__(directory, ".bin", max_bytes, max_age)
        self.memory: dict[str, bytes] = {}

    def get(self, url: str) -> bytes | None:
        key = cache_key(url)
        return self.memory[key] if key in self.memory else self.read(key, fresh_only=True)

    def put(self, url: str, data: bytes) -> None:
        if self.directory is None:
            self.memory[cache_key(url)] = data
        else:
            self.write(cache_key(url), data)
