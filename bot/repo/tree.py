"""A repository tree on disk, seen through repository-relative POSIX paths.

Every path that PR content names goes through `resolve()`, which refuses absolute paths and
anything (a `..` or a symlink) that leaves the root. Listing skips `.git` and is bounded.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from bot.repo.git import GitError, git
from bot.yamlpos import MAX_FILE_BYTES, YamlDoc, YamlError, load_docs

MAX_FILES = 50_000
NODES_PER_BYTE = 2  # a file expanding to more nodes than this is not kept parsed (aliases)
KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
YAML_SUFFIXES = (".yaml", ".yml")


class PathEscape(ValueError):
    """A path that is absolute or leaves the repository root."""


def find_root(start: Path, explicit: Path | None = None) -> Path:
    """`--root` if given, else the git work tree enclosing `start`, else the current directory
    when it holds `start`, else `start` itself."""
    if explicit is not None:
        return explicit.resolve()
    start = start.resolve()
    probe = start if start.is_dir() else start.parent
    try:
        top = git(probe, "rev-parse", "--show-toplevel", timeout=10).decode(errors="replace").strip()
    except GitError:
        top = ""
    if top:
        return Path(top).resolve()
    cwd = Path.cwd().resolve()
    return cwd if probe.is_relative_to(cwd) else probe


def join(base: str, ref: str) -> str:
    """Join a repository-relative dir and a relative reference, normalised ('.' for the root)."""
    return posixpath.normpath(posixpath.join(base, ref)) if base not in ("", ".") else posixpath.normpath(ref)


@dataclass
class RepoTree:
    """Read access to the files below `root`, with the safety checks untrusted content needs."""

    root: Path
    _docs: dict[str, list[YamlDoc] | tuple[str, int | None]] = field(default_factory=dict, repr=False)
    memo: dict[tuple, object] = field(default_factory=dict, repr=False)  # derived facts about the tree

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()

    def resolve(self, base: str, ref: str) -> str:
        """Repository-relative path of `ref` seen from directory `base`; PathEscape if it leaves the root."""
        if ref.startswith("/") or (len(ref) > 1 and ref[1] == ":"):
            raise PathEscape(f"absolute path {ref!r} is not allowed")
        rel = join(base, ref)
        if rel == ".." or rel.startswith("../"):
            raise PathEscape(f"{ref!r} leaves the repository root")
        real = (self.root / rel).resolve()
        if real != self.root and not real.is_relative_to(self.root):
            raise PathEscape(f"{ref!r} resolves through a symlink outside the repository root")
        return rel

    def abspath(self, rel: str) -> Path:
        return self.root / rel if rel not in ("", ".") else self.root

    def is_file(self, rel: str) -> bool:
        return self.abspath(rel).is_file()

    def is_dir(self, rel: str) -> bool:
        return self.abspath(rel).is_dir()

    def kustomization_file(self, rel_dir: str) -> str | None:
        """The kustomization file of a directory, by Kustomize's recognised names and order."""
        for name in KUSTOMIZATION_NAMES:
            candidate = join(rel_dir, name)
            if self.abspath(candidate).is_file():
                return candidate
        return None

    @cached_property
    def files(self) -> tuple[str, ...]:
        """Every regular file below the root (no .git), sorted; symlinks to files inside the root count."""
        out: list[str] = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if d != ".git" and not os.path.islink(os.path.join(dirpath, d)))
            reldir = os.path.relpath(dirpath, self.root)
            for name in filenames:
                rel = name if reldir == "." else f"{reldir}/{name}".replace(os.sep, "/")
                path = Path(dirpath, name)
                if path.is_symlink():
                    try:
                        self.resolve(".", rel)
                    except PathEscape:
                        continue
                if path.is_file():
                    out.append(rel)
                if len(out) > MAX_FILES:
                    raise PathEscape(f"repository has more than {MAX_FILES} files")
        return tuple(sorted(out))

    def read_bytes(self, rel: str) -> bytes:
        path = self.abspath(rel)
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise YamlError(f"{rel} is {size} bytes, over the {MAX_FILE_BYTES} byte limit")
        return path.read_bytes()

    def read_text(self, rel: str) -> str:
        return self.read_bytes(rel).decode("utf-8", errors="replace")

    def lines(self, rel: str) -> list[str]:
        try:
            return self.read_text(rel).splitlines()
        except (OSError, YamlError):
            return []

    def docs(self, rel: str) -> list[YamlDoc]:
        """Parsed documents of a YAML file; raises YamlError for bad YAML.

        Kept for the tree's life unless aliases made them much larger than the file (then parsed
        again when asked), so what the cache holds is proportional to the files' size. A failure is
        kept as its message, not as the exception, whose traceback would hold the partial parse.
        """
        cached = self._docs.get(rel)
        if isinstance(cached, tuple):
            raise YamlError(*cached)
        if cached is not None:
            return cached
        try:
            text = self.read_text(rel)
            docs = load_docs(text, rel)
        except YamlError as exc:
            self._docs[rel] = (exc.message, exc.line)
            raise YamlError(exc.message, exc.line) from None
        except OSError as exc:
            self._docs[rel] = (f"{rel}: {exc.strerror or exc}", None)
            raise YamlError(*self._docs[rel]) from None
        if sum(d.nodes for d in docs) <= NODES_PER_BYTE * len(text) + 64:
            self._docs[rel] = docs
        return docs
