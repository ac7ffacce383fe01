"""Reading a pull request from GitHub: changed files, trees by tarball, the repo's config file.

Tarballs are PR content, so their limits are enforced here: only regular files are written, paths
are stripped of GitHub's `owner-repo-sha/` folder and must stay inside the destination, and the
number of entries, the declared sizes and the decompressed stream are all bounded. Extraction
streams (no member list is kept) and runs in a thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import gzip
import io
import logging
import shutil
import tarfile
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any, cast

from gidgethub import BadRequest

log = logging.getLogger(__name__)

# pulls/list-files returns at most 3000 files; a PR that reaches it must be treated as touching everything.
LIST_FILES_CAP = 3000
# A compare lists at most 300 files; past that, pulls/list-files is asked for the PR's whole list.
COMPARE_FILES_CAP = 300
CONFIG_PATH = ".github/infra-review.yml"
# A header block, a pax or long-name block and padding: what an entry may add to its data in the stream.
HEADER_ALLOWANCE = 1536
_CHUNK = 1024 * 1024
_SHOWN = 120


@dataclass(frozen=True)
class ChangedFile:
    filename: str
    status: str
    patch: str | None
    previous_filename: str | None = None


@dataclass(frozen=True)
class ChangedFiles:
    files: tuple[ChangedFile, ...]
    everything: bool

    @property
    def paths(self) -> frozenset[str]:
        names = {f.filename for f in self.files} | {f.previous_filename for f in self.files if f.previous_filename}
        return frozenset(names)


@dataclass(frozen=True)
class ExtractLimits:
    max_files: int = 20_000
    max_entries: int = 40_000  # every member counts: files, folders, links, special files
    max_total_bytes: int = 256 * 1024 * 1024  # the sizes all members declare, skipped ones included
    max_file_bytes: int = 16 * 1024 * 1024
    max_archive_bytes: int = 128 * 1024 * 1024

    @property
    def max_stream_bytes(self) -> int:
        """Decompressed bytes read in all: the members' data plus a header allowance per entry."""
        return self.max_total_bytes + self.max_entries * HEADER_ALLOWANCE


@dataclass(frozen=True)
class ExtractStats:
    files: int
    bytes: int
    skipped: tuple[str, ...]


class ArchiveRejected(Exception):
    """The tarball breaks a limit; the review reports it instead of rendering a partial tree."""


def _split(full_name: str) -> dict[str, str]:
    owner, repo = full_name.split("/", 1)
    return {"owner": owner, "repo": repo}


def _changed_file(item: dict[str, Any]) -> ChangedFile:
    return ChangedFile(item["filename"], item["status"], item.get("patch"), item.get("previous_filename"))


async def list_changed_files(gh: Any, repo: str, number: int) -> ChangedFiles:
    """All files of a PR (paginated); `everything` when GitHub's 3000-file cap is reached."""
    files = [_changed_file(item) async for item in
             gh.getiter("/repos/{owner}/{repo}/pulls/{pull_number}/files{?per_page}",
                        {**_split(repo), "pull_number": number, "per_page": 100})]
    return ChangedFiles(tuple(files), everything=len(files) >= LIST_FILES_CAP)


async def compare_pull(gh: Any, repo: str, number: int, base: str, head: str) -> tuple[str, ChangedFiles]:
    """The merge base of base...head (what the PR's diff is computed against, not the base tip) and the
    PR's changed files, from one compare: three dots diff from the merge base, as the PR does. With a
    page size the files come on page 1 only, all of them up to GitHub's 300; only a compare at that
    cap needs pulls/list-files."""
    data = await gh.getitem("/repos/{owner}/{repo}/compare/{basehead}{?per_page}",
                            {**_split(repo), "basehead": f"{base}...{head}", "per_page": 1})
    items = data.get("files") or []
    if len(items) >= COMPARE_FILES_CAP:
        changed = await list_changed_files(gh, repo, number)
    else:
        changed = ChangedFiles(tuple(_changed_file(i) for i in items), everything=False)
    return data["merge_base_commit"]["sha"], changed


async def fetch_tree(gh: Any, repo: str, ref: str, dest: Path, limits: ExtractLimits = ExtractLimits()) -> ExtractStats:
    """Download the tarball of `ref` (redirect followed by the session) and extract it into `dest`."""
    data = await gh.download("/repos/{owner}/{repo}/tarball/{ref}", {**_split(repo), "ref": ref},
                             max_bytes=limits.max_archive_bytes)
    return await _extract_off_loop(data, dest, limits)


async def _extract_off_loop(data: bytes, dest: Path, limits: ExtractLimits) -> ExtractStats:
    """Extraction is CPU and disk work, so it runs in a thread. A cancelled review stops it at the
    next member and waits for that, so the caller's temporary directory is not removed under it."""
    stop = threading.Event()
    task = asyncio.ensure_future(asyncio.to_thread(extract_tarball, data, dest, limits, stop))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        stop.set()
        await asyncio.wait([task])
        if not task.cancelled():
            task.exception()  # the ArchiveRejected we asked for by stopping it
        raise


def _member_path(name: str) -> PurePosixPath | None:
    """The member's path below GitHub's top folder, or None if it is the folder or escapes."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or "\\" in name:
        return None
    parts = path.parts[1:]
    return PurePosixPath(*parts) if parts else None


def _shown(name: object) -> str:
    text = str(name)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "…"


class _Budget:
    """The decompressed stream, refused past `limit` bytes: skipped members' data is read too (a
    stream can only be read past), so this bounds the work a small archive can cause."""

    def __init__(self, source: IO[bytes], limit: int) -> None:
        self.source, self.limit, self.used = source, limit, 0

    def read(self, size: int = -1) -> bytes:
        room = self.limit - self.used + 1
        chunk = self.source.read(room if size < 0 else min(size, room))
        self.used += len(chunk)
        if self.used > self.limit:
            raise ArchiveRejected(f"the archive unpacks to more than {self.limit} bytes, headers included")
        return chunk


def _decompressed(data: bytes) -> IO[bytes]:
    """GitHub sends gzip; a plain tar is read as is."""
    raw = io.BytesIO(data)
    return cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb")) if data[:2] == b"\x1f\x8b" else raw


def _members(archive: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """Each member once, as it streams by (tarfile would otherwise keep every TarInfo it has read)."""
    while (member := archive.next()) is not None:
        archive.members.clear()  # type: ignore[attr-defined]  # the list getmembers() returns, undocumented
        yield member


def _check_end(archive: tarfile.TarFile) -> None:
    """Only zero blocks may follow the last member: tarfile also stops at a corrupt header, which
    would otherwise leave a partial tree. Reading to the end checks gzip's length and CRC too."""
    while chunk := archive.fileobj.read(_CHUNK):
        if chunk.strip(b"\0"):
            raise ArchiveRejected("the archive is corrupt: unreadable data after its last readable entry")


def _unwritable(rel: PurePosixPath, exc: OSError) -> ArchiveRejected:
    if exc.errno == errno.ENAMETOOLONG:
        reason = "its path is longer than the file system allows"
    elif exc.errno in (errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
        reason = "the archive has it as both a file and a folder"
    else:
        reason = exc.strerror or str(exc)
    return ArchiveRejected(f"{_shown(rel)} cannot be extracted: {reason}")


@dataclass
class _Extraction:
    """One pass over the members: every entry is counted and its declared size checked before any of
    its data is read; only regular files are written."""

    dest: Path
    limits: ExtractLimits
    stop: threading.Event | None = None
    files: int = 0
    entries: int = 0
    declared: int = 0
    written: int = 0
    skipped: list[str] = field(default_factory=list)

    def run(self, archive: tarfile.TarFile) -> ExtractStats:
        for member in _members(archive):
            self._count(member)
            rel = _member_path(member.name) if member.isreg() else None
            if rel is not None:
                self._write(archive, member, rel)
            elif not member.isdir():
                self.skipped.append(member.name)
        _check_end(archive)
        return ExtractStats(files=self.files, bytes=self.written, skipped=tuple(self.skipped))

    def _count(self, member: tarfile.TarInfo) -> None:
        if self.stop is not None and self.stop.is_set():
            raise ArchiveRejected("extraction stopped: the review was cancelled")
        limits = self.limits
        self.entries += 1
        if self.entries > limits.max_entries:
            raise ArchiveRejected(f"the archive has more than {limits.max_entries} entries "
                                  "(files, folders, links and special files all count)")
        if member.size > limits.max_file_bytes:
            raise ArchiveRejected(f"{_shown(member.name)} is {member.size} bytes "
                                  f"(limit {limits.max_file_bytes})")
        self.declared += member.size
        if self.declared > limits.max_total_bytes:
            raise ArchiveRejected(f"the archive has more than {limits.max_total_bytes} bytes unpacked")

    def _write(self, archive: tarfile.TarFile, member: tarfile.TarInfo, rel: PurePosixPath) -> None:
        self.files += 1
        if self.files > self.limits.max_files:
            raise ArchiveRejected(f"the archive has more than {self.limits.max_files} files")
        source = archive.extractfile(member)
        if source is None:
            self.skipped.append(member.name)
            return
        try:
            target = (self.dest / rel).resolve()
            if not target.is_relative_to(self.dest):
                self.skipped.append(member.name)
                return
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as out:
                shutil.copyfileobj(source, out, _CHUNK)
        except OSError as exc:
            raise _unwritable(rel, exc) from None
        self.written += member.size


def extract_tarball(data: bytes, dest: Path, limits: ExtractLimits = ExtractLimits(),
                    stop: threading.Event | None = None) -> ExtractStats:
    """Write the regular files of a GitHub tarball under `dest`; links and special files are skipped.

    The archive is read as a stream, so memory does not grow with the number of members; any way it
    can fail (a limit, corrupt or truncated data, a path the file system cannot hold) is ArchiveRejected.
    """
    dest = dest.resolve()
    dest.mkdir(parents=True, exist_ok=True)
    stream = _Budget(_decompressed(data), limits.max_stream_bytes)
    try:
        with tarfile.open(fileobj=cast(IO[bytes], stream), mode="r|") as archive:
            stats = _Extraction(dest, limits, stop).run(archive)
    except (tarfile.TarError, EOFError, zlib.error, OSError, ValueError) as exc:
        raise ArchiveRejected(f"the archive cannot be read: {_shown(exc) or type(exc).__name__}") from None
    if stats.skipped:
        log.info("tarball: skipped %d link/special/unsafe member(s)", len(stats.skipped))
    return stats


async def read_repo_config(gh: Any, repo: str, ref: str | None = None) -> str | None:
    """Text of `.github/infra-review.yml` on `ref`, None if absent. Without a ref GitHub reads the
    default branch, so the review needs no request to learn its name."""
    template = "/repos/{owner}/{repo}/contents/{+path}" + ("{?ref}" if ref else "")
    try:
        data = await gh.getitem(template, {**_split(repo), "path": CONFIG_PATH, "ref": ref})
    except BadRequest as exc:
        if exc.status_code == 404:
            return None
        raise
    if not isinstance(data, dict) or data.get("type") != "file":
        return None
    return base64.b64decode(data.get("content") or "").decode("utf-8")
