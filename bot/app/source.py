"""Reading a pull request from GitHub: changed files, trees by tarball, the repo's config file.

Tarballs are PR content, so their limits are enforced here: only regular files are written, paths
are stripped of GitHub's `owner-repo-sha/` folder and must stay inside the destination, and the
total size and file count are bounded.
"""

from __future__ import annotations

import base64
import io
import logging
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from gidgethub import BadRequest

log = logging.getLogger(__name__)

# pulls/list-files returns at most 3000 files; a PR that reaches it must be treated as touching everything.
LIST_FILES_CAP = 3000
CONFIG_PATH = ".github/infra-review.yml"


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
    max_total_bytes: int = 256 * 1024 * 1024
    max_file_bytes: int = 16 * 1024 * 1024
    max_archive_bytes: int = 128 * 1024 * 1024


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


async def list_changed_files(gh: Any, repo: str, number: int) -> ChangedFiles:
    """All files of a PR (paginated); `everything` when GitHub's 3000-file cap is reached."""
    files = []
    async for item in gh.getiter("/repos/{owner}/{repo}/pulls/{pull_number}/files{?per_page}",
                                 {**_split(repo), "pull_number": number, "per_page": 100}):
        files.append(ChangedFile(item["filename"], item["status"], item.get("patch"),
                                 item.get("previous_filename")))
    return ChangedFiles(tuple(files), everything=len(files) >= LIST_FILES_CAP)


async def merge_base(gh: Any, repo: str, base: str, head: str) -> str:
    """The merge base of base...head (what the PR's diff is computed against, not the base tip)."""
    data = await gh.getitem("/repos/{owner}/{repo}/compare/{basehead}{?per_page}",
                            {**_split(repo), "basehead": f"{base}...{head}", "per_page": 1})
    return data["merge_base_commit"]["sha"]


async def fetch_tree(gh: Any, repo: str, ref: str, dest: Path, limits: ExtractLimits = ExtractLimits()) -> ExtractStats:
    """Download the tarball of `ref` (redirect followed by the session) and extract it into `dest`."""
    data = await gh.download("/repos/{owner}/{repo}/tarball/{ref}", {**_split(repo), "ref": ref},
                             max_bytes=limits.max_archive_bytes)
    return extract_tarball(data, dest, limits)


def _member_path(name: str) -> PurePosixPath | None:
    """The member's path below GitHub's top folder, or None if it is the folder or escapes."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or "\\" in name:
        return None
    parts = path.parts[1:]
    return PurePosixPath(*parts) if parts else None


def extract_tarball(data: bytes, dest: Path, limits: ExtractLimits = ExtractLimits()) -> ExtractStats:
    """Write the regular files of a GitHub tarball under `dest`; links and special files are skipped."""
    dest = dest.resolve()
    dest.mkdir(parents=True, exist_ok=True)
    files = total = 0
    skipped: list[str] = []
    try:
        archive = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")
    except tarfile.TarError as exc:
        raise ArchiveRejected(f"not a tar archive: {exc}") from None
    with archive:
        for member in archive:
            if member.isdir() or member.type == tarfile.XGLTYPE:
                continue
            rel = _member_path(member.name)
            if not member.isreg() or rel is None:
                skipped.append(member.name)
                continue
            target = (dest / rel).resolve()
            if not target.is_relative_to(dest):
                skipped.append(member.name)
                continue
            if member.size > limits.max_file_bytes:
                raise ArchiveRejected(f"{rel} is {member.size} bytes (limit {limits.max_file_bytes})")
            files += 1
            total += member.size
            if files > limits.max_files:
                raise ArchiveRejected(f"more than {limits.max_files} files")
            if total > limits.max_total_bytes:
                raise ArchiveRejected(f"more than {limits.max_total_bytes} bytes unpacked")
            source = archive.extractfile(member)
            if source is None:
                skipped.append(member.name)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read(limits.max_file_bytes + 1))
    if skipped:
        log.info("tarball: skipped %d link/special/unsafe member(s)", len(skipped))
    return ExtractStats(files=files, bytes=total, skipped=tuple(skipped))


async def read_repo_config(gh: Any, repo: str, ref: str | None = None) -> str | None:
    """Text of `.github/infra-review.yml` on `ref` (default: the default branch), None if absent."""
    if ref is None:
        ref = (await gh.getitem("/repos/{owner}/{repo}", _split(repo)))["default_branch"]
    try:
        data = await gh.getitem("/repos/{owner}/{repo}/contents/{+path}{?ref}",
                                {**_split(repo), "path": CONFIG_PATH, "ref": ref})
    except BadRequest as exc:
        if exc.status_code == 404:
            return None
        raise
    if not isinstance(data, dict) or data.get("type") != "file":
        return None
    return base64.b64decode(data.get("content") or "").decode("utf-8")
