"""Where a pull-request comment may sit: the RIGHT-side lines of the PR's diff hunks.

GitHub rejects a whole review when one comment points outside the diff, so every anchor is
checked here, against the same hunks GitHub uses (`pulls/list-files` patches or `git diff`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from unidiff import PatchedFile, PatchSet
from unidiff.errors import UnidiffParseError

from bot.model import Finding

MODES = ("added", "diff")


@dataclass(frozen=True)
class FileDiff:
    """One changed file as seen from the new (RIGHT) side.

    `near_deletions` are RIGHT lines bordering purely removed lines: where a deletion shows in
    the new file, hence where a comment about something removed (a probe, a `limits:` block) belongs.
    """

    path: str
    old_path: str | None
    status: str  # added | removed | modified | renamed
    added: frozenset[int] = frozenset()
    context: frozenset[int] = frozenset()
    near_deletions: frozenset[int] = frozenset()
    hunks: tuple[tuple[int, int], ...] = ()
    patch_missing: bool = False

    @property
    def commentable(self) -> frozenset[int]:
        return self.added | self.context

    def changed(self) -> frozenset[int]:
        return self.added | self.near_deletions

    def in_one_hunk(self, start: int, end: int) -> bool:
        """GitHub requires both ends of a multi-line comment inside the same hunk."""
        return any(a <= start and end <= b for a, b in self.hunks)


@dataclass(frozen=True)
class DiffIndex:
    files: Mapping[str, FileDiff]

    def get(self, path: str | None) -> FileDiff | None:
        return self.files.get(path) if path else None

    def commentable(self, path: str, mode: str = "added") -> frozenset[int]:
        fd = self.files.get(path)
        if fd is None:
            return frozenset()
        return fd.added if mode == "added" else fd.commentable


def _strip_prefix(name: str | None) -> str | None:
    if not name or name == "/dev/null":
        return None
    return name[2:] if name[:2] in ("a/", "b/") else name


def _file_diff(pf: PatchedFile) -> FileDiff:
    added: set[int] = set()
    context: set[int] = set()
    near: set[int] = set()
    hunks: list[tuple[int, int]] = []
    for hunk in pf:
        if hunk.target_length:
            hunks.append((hunk.target_start, hunk.target_start + hunk.target_length - 1))
        # Only a pure deletion (removed lines not replaced by added ones) marks its borders: a
        # replacement already shows as added lines.
        prev_right: int | None = None
        pending = False
        for line in hunk:
            if line.is_removed:
                pending = True
                continue
            if line.target_line_no is None:
                continue
            (added if line.is_added else context).add(line.target_line_no)
            if pending and not line.is_added:
                near.update(n for n in (prev_right, line.target_line_no) if n is not None)
            pending = False
            prev_right = line.target_line_no
        if pending and prev_right is not None:
            near.add(prev_right)
    old = _strip_prefix(pf.source_file)
    new = _strip_prefix(pf.target_file)
    if pf.is_added_file or old is None:
        status = "added"
    elif pf.is_removed_file or new is None:
        status = "removed"
    elif old != new:
        status = "renamed"
    else:
        status = "modified"
    return FileDiff(
        path=new or old or pf.path,
        old_path=old if status == "renamed" else None,
        status=status,
        added=frozenset(added),
        context=frozenset(context),
        near_deletions=frozenset(near),
        hunks=tuple(hunks),
    )


def parse_diff(text: str) -> DiffIndex:
    """A full unified diff (`git diff` output). Raises ValueError on text that is not one."""
    try:
        patch = PatchSet(text)
    except UnidiffParseError as exc:
        raise ValueError(f"not a unified diff: {exc}") from exc
    files = {fd.path: fd for fd in map(_file_diff, patch)}
    return DiffIndex(files)


def from_pr_files(files: Iterable[Mapping[str, Any]]) -> DiffIndex:
    """The `pulls/list-files` entries. A file whose `patch` is absent (binary, too large) or
    unreadable is known as changed but offers no commentable line."""
    out: dict[str, FileDiff] = {}
    for entry in files:
        path = str(entry["filename"])
        status = str(entry.get("status") or "modified")
        old = entry.get("previous_filename")
        patch = entry.get("patch")
        missing = FileDiff(path, old, status, patch_missing=True)
        if not patch:
            out[path] = missing
            continue
        src = "/dev/null" if status == "added" else f"a/{old or path}"
        dst = "/dev/null" if status == "removed" else f"b/{path}"
        body = patch if patch.endswith("\n") else patch + "\n"
        try:
            parsed = list(PatchSet(f"--- {src}\n+++ {dst}\n{body}"))
        except UnidiffParseError:
            out[path] = missing
            continue
        fd = _file_diff(parsed[0]) if parsed else missing
        out[path] = FileDiff(path, old, status, fd.added, fd.context, fd.near_deletions, fd.hunks,
                             fd.patch_missing)
    return DiffIndex(out)


def anchor(
    finding: Finding,
    diff: DiffIndex,
    object_span: tuple[int, int] | None = None,
    mode: str = "added",
) -> int | None:
    """The RIGHT-side line to comment on, or None when the finding is outside what the PR changed.

    The finding's own line when it is commentable in `mode` (`added`: added lines only, the
    default; `diff`: any line of a hunk). Otherwise, if the PR changed the finding's object (its
    line span in the new file), the changed line of that span nearest to the finding: an added
    line or the line bordering a deletion. A finding about an absent field (origin `via` =
    `enclosing`) prefers the lines bordering a deletion, so a comment about a removed probe sits
    where the probe was removed rather than on an unrelated edit nearby.
    """
    if mode not in MODES:
        raise ValueError(f"unknown comment mode {mode!r}; expected one of {MODES}")
    fd = diff.get(finding.origin.file)
    if fd is None or fd.status == "removed":
        return None
    line = finding.origin.line
    if line is not None and line in diff.commentable(fd.path, mode):
        return line
    if object_span is None:
        return None
    start, end = object_span
    ref = line if line is not None else start
    pools = [fd.changed()]
    if finding.origin.via == "enclosing":
        pools.insert(0, fd.near_deletions)
    for pool in pools:
        candidates = [n for n in pool if start <= n <= end]
        if candidates:
            return min(candidates, key=lambda n: (abs(n - ref), n))
    return None


def place_anchor(
    finding: Finding,
    diff: DiffIndex,
    places: list[tuple[str, int, int]] | tuple[tuple[str, int, int], ...] = (),
    mode: str = "added",
) -> tuple[str, int] | None:
    """(path, line) to comment on: the finding's own line when commentable; else the changed line
    nearest to it among the documents that define or patch its object (`places`: its own file
    first, then the base manifest and the other patches), so a comment about a probe deleted in a
    base sits where it was deleted even when the finding's own line is in an overlay."""
    own = finding.origin.file
    line = anchor(finding, diff, None, mode)
    if line is not None and own:
        return own, line
    ordered = sorted(places, key=lambda p: p[0] != own)
    absent = finding.origin.via == "enclosing"
    # An absent field was most likely deleted: look for a deletion in every place first.
    passes = [("deletions", ordered), ("changed", ordered)] if absent else [("changed", ordered)]
    for kind, candidates_in in passes:
        for path, start, end in candidates_in:
            fd = diff.get(path)
            if fd is None or fd.status == "removed":
                continue
            ref = finding.origin.line if (path == own and finding.origin.line) else start
            pool = fd.near_deletions if kind == "deletions" else fd.changed()
            hits = [n for n in pool if start <= n <= end and (mode == "diff" or n in fd.near_deletions
                                                             or n in diff.commentable(path, mode))]
            if hits:
                return path, min(hits, key=lambda n: (abs(n - ref), n))
    return None
