"""A folder of cache entries kept within a size and an age, shared by every process that uses it.

Entries live in `<directory>/<aa>/<key><suffix>`. A hit refreshes an entry's mtime; a scan every
PRUNE_EVERY seconds (through a stamp file, so all processes share it), or after a tenth of
`max_bytes` was written, removes entries past `max_age`, then the least recently used until the rest
fits, and temporary files a crashed write left behind. Writes are atomic (a temporary file renamed).
Best effort: a folder that cannot be read or written is a miss, never an error.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

PRUNE_EVERY = 600.0
_STAMP = ".pruned"


class BoundedFolder:
    """Bytes by key in `directory` (None: nothing is kept on disk)."""

    def __init__(self, directory: Path | None, suffix: str, max_bytes: int, max_age: float):
        self.directory = directory
        self.suffix = suffix
        self.max_bytes, self.max_age = max_bytes, max_age
        self._written = 0

    def path(self, key: str) -> Path:
        return Path(self.directory or ".", key[:2], f"{key}{self.suffix}")

    def read(self, key: str, fresh_only: bool = False) -> bytes | None:
        """The entry's bytes; `fresh_only`: None for an entry older than `max_age` too."""
        if self.directory is None:
            return None
        path = self.path(key)
        try:
            if fresh_only and time.time() - path.stat().st_mtime > self.max_age:
                return None
            data = path.read_bytes()
        except OSError:
            return None
        with contextlib.suppress(OSError):
            os.utime(path)
        return data

    def write(self, key: str, data: bytes) -> None:
        if self.directory is None:
            return
        path = self.path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                os.replace(tmp, path)
            except OSError:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError:
            return
        self._written += len(data)
        if self._written > self.max_bytes // 10 or self._prune_due():
            self.prune()

    def _prune_due(self) -> bool:
        if self.directory is None:
            return False
        try:
            return time.time() - (self.directory / _STAMP).stat().st_mtime > PRUNE_EVERY
        except OSError:
            return True

    def prune(self) -> None:
        """Remove entries older than `max_age`, then the least recently used beyond `max_bytes`."""
        if self.directory is None:
            return
        self._written = 0
        try:
            (self.directory / _STAMP).touch()
            entries = sorted((e for sub in os.scandir(self.directory) if sub.is_dir(follow_symlinks=False)
                              for e in self._files(sub.path)), reverse=True)
        except OSError:
            return
        now, kept = time.time(), 0
        for mtime, size, path in entries:
            if now - mtime <= self.max_age and kept + size <= self.max_bytes:
                kept += size
            else:
                path.unlink(missing_ok=True)

    def _files(self, directory: str) -> Iterator[tuple[float, int, Path]]:
        """(mtime, size, path) of the entries in one folder and of leftover temporary files; a file
        another process removes meanwhile is skipped."""
        for entry in os.scandir(directory):
            if not entry.name.endswith((self.suffix, ".tmp")):
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                yield info.st_mtime, info.st_size, Path(entry.path)
