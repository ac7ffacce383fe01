"""A repository tree on disk, seen through repository-relative POSIX paths.

Every path that PR content names goes through `resolve()`, which refuses absolute paths and
anything (a `..` or a symlink) that leaves the root. Listing skips `.git` and is bounded.
"""

from __future__ import annotations

import filecmp
import hashlib
import os
import posixpath
import stat
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from bot.diskcache import BoundedFolder
from bot.repo.git import GitError, git
from bot.yamlpos import (
    MAX_FILE_BYTES,
    PARSED_FORMAT,
    YamlDoc,
    YamlError,
    dump_docs,
    dump_error,
    load_docs,
    undump_docs,
)

MAX_FILES = 50_000
NODES_PER_BYTE = 2  # a file expanding to more nodes than this is not kept parsed (aliases)
KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
YAML_SUFFIXES = (".yaml", ".yml")


class PathEscape(ValueError):
    """A path that is absolute or leaves the repository root."""


def _read_all(fd: int, size: int, limit: int) -> bytes:
    """Up to `limit` bytes of an open file whose size was `size`, asked for at once while it still is."""
    chunks: list[bytes] = []
    total, want = 0, size + 1
    while total < limit:
        chunk = os.read(fd, min(want, limit - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        want = 1 << 16
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


@dataclass(frozen=True)
class RootChoice:
    """Where a repository's paths are resolved from, and why.

    `kind`: "given" (`--root`), "git" (the git work tree enclosing the start), "path" (the start
    itself: it is the work tree's top, there is no work tree, or it was chosen over the work tree),
    "cwd" (no git work tree; the current directory holds the start). `note` says the choice in a
    sentence when it is not the obvious one."""

    root: Path
    kind: str
    work_tree: Path | None = None
    note: str | None = None


def find_root(start: Path, explicit: Path | None = None) -> Path:
    """`--root` if given, else the root `choose_root` finds."""
    return choose_root(start, explicit).root


def choose_root(start: Path, explicit: Path | None = None) -> RootChoice:
    """The root that Flux's `spec.path`s are relative to: `--root` if given; else the git work tree
    enclosing `start`, unless `start` explains more of the paths of the Flux Kustomizations below it
    (a GitOps repository kept inside an unrelated work tree: a folder it ignores, a checkout in a
    monorepo's `vendor/`). On a tie, which is when no path tells them apart (none, or all resolving
    from both, or `./`), the work tree is kept, as a folder of a repository refers to its other
    folders through it (`../../base`), unless the work tree's .gitignore leaves `start` out. Without
    a work tree: the current directory when it holds `start`, else `start` itself."""
    if explicit is not None:
        root = explicit.resolve()
        return RootChoice(root, "given", note=f"Paths were resolved from the root `{root}`, as given with --root.")
    start = start.resolve()
    probe = start if start.is_dir() else start.parent
    try:
        top = Path(git(probe, "rev-parse", "--show-toplevel", timeout=10).decode(errors="replace").strip()).resolve()
    except GitError:
        top = None
    if top is None or not str(top):
        cwd = Path.cwd().resolve()
        return RootChoice(cwd, "cwd") if probe.is_relative_to(cwd) and probe != cwd else RootChoice(probe, "path")
    if top == probe or not probe.is_relative_to(top):
        return RootChoice(top, "git", top)
    inner, outer, total = _explained(probe, top)
    ignored = inner == outer and _git_ignored(top, probe)
    if inner > outer or ignored:
        why = (f"{inner} of the {total} Flux Kustomization paths in it resolve from it, {outer} from the work tree"
               if not ignored else "the work tree's .gitignore leaves it out")
        return RootChoice(probe, "path", top, f"`{probe}` sits inside the git work tree `{top}` but was checked as a "
                                              f"repository of its own ({why}); give --root to choose another root.")
    return RootChoice(top, "git", top)


def _explained(inner: Path, outer: Path) -> tuple[int, int, int]:
    """How many of the Flux Kustomization paths declared below `inner` (sources that are this
    repository) are folders from `inner`, from `outer`, and how many there are."""
    from bot.repo.discover import RepoModel  # discovery reads trees through this module

    try:
        paths = RepoModel(RepoTree(inner)).declared_paths()
    except (PathEscape, OSError):  # more files than a repository may hold
        return 0, 0, 0

    def resolving(root: Path) -> int:
        tree, n = RepoTree(root), 0
        for path in paths:
            try:
                n += tree.is_dir(tree.resolve(".", path))
            except PathEscape:
                continue
        return n

    return resolving(inner), resolving(outer), len(paths)


def _git_ignored(top: Path, folder: Path) -> bool:
    try:
        git(top, "check-ignore", "-q", paths=[folder.relative_to(top).as_posix()], timeout=10)
    except GitError:
        return False
    return True


def join(base: str, ref: str) -> str:
    """Join a repository-relative dir and a relative reference, normalised ('.' for the root)."""
    return posixpath.normpath(posixpath.join(base, ref)) if base not in ("", ".") else posixpath.normpath(ref)


@dataclass
class RepoTree:
    """Read access to the files below `root`, with the safety checks untrusted content needs."""

    root: Path
    _docs: dict[str, list[YamlDoc] | tuple[str, int | None]] = field(default_factory=dict, repr=False)
    _lines: dict[str, list[str]] = field(default_factory=dict, repr=False)
    _texts: dict[str, str] = field(default_factory=dict, repr=False)
    _no_links: bool = field(default=False, repr=False)  # known once `files` has walked the tree
    _text_bytes: int = field(default=0, repr=False)
    _base: str = field(default="", repr=False)  # the root as text, for os.path.join
    memo: dict[tuple, object] = field(default_factory=dict, repr=False)  # derived facts about the tree
    # Where parsed files are kept between checks, by content (bot.render.build.DiskCache.sources);
    # None: parsed in every process.
    parsed: BoundedFolder | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        self._base = str(self.root)

    def resolve(self, base: str, ref: str) -> str:
        """Repository-relative path of `ref` seen from directory `base`; PathEscape if it leaves the root."""
        if ref.startswith("/") or (len(ref) > 1 and ref[1] == ":"):
            raise PathEscape(f"absolute path {ref!r} is not allowed")
        rel = join(base, ref)
        if rel == ".." or rel.startswith("../"):
            raise PathEscape(f"{ref!r} leaves the repository root")
        if self._escapes(rel):
            raise PathEscape(f"{ref!r} resolves through a symlink outside the repository root")
        return rel

    def _escapes(self, rel: str) -> bool:
        """Whether `rel` resolves (through symlinks) outside the root; asked once per path and tree, as
        provenance and the build graph ask about the same paths for every target."""
        if self._no_links and ".git" not in rel.split("/"):
            return False  # no symlink anywhere in the tree (.git, not walked, aside): nothing to follow out
        key = ("escapes", rel)
        known = self.memo.get(key)
        if not isinstance(known, bool):
            real = (self.root / rel).resolve()
            known = real != self.root and not real.is_relative_to(self.root)
            self.memo[key] = known
        return known

    def confine(self, raw: str) -> str:
        """`raw` as Flux's kustomize-controller confines a `spec.path` to the source (securejoin): a
        `..` stops at the root, and a symlink is followed from the root, an absolute target too, so
        the result is a repository-relative path through no symlink, never leaving the root (and it
        need not exist). PathEscape past 255 symlinks, as securejoin gives up."""
        todo, parts, links = raw.split("/"), list[str](), 0
        while todo:
            part = todo.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                parts = parts[:-1]
                continue
            path = self.root.joinpath(*parts, part)
            if path.is_symlink():
                links += 1
                if links > 255:
                    raise PathEscape(f"{raw!r} goes through more than 255 symlinks")
                target = os.readlink(path)
                parts = [] if target.startswith("/") else parts
                todo = target.split("/") + todo
                continue
            parts.append(part)
        return "/".join(parts) or "."

    def abspath(self, rel: str) -> Path:
        return self.root / rel if rel not in ("", ".") else self.root

    def is_file(self, rel: str) -> bool:
        return os.path.isfile(os.path.join(self._base, rel))

    def is_dir(self, rel: str) -> bool:
        return os.path.isdir(os.path.join(self._base, rel))

    def kustomization_file(self, rel_dir: str) -> str | None:
        """The kustomization file of a directory, by Kustomize's recognised names and order."""
        for name in KUSTOMIZATION_NAMES:
            candidate = join(rel_dir, name)
            if candidate in self._listed or self.is_file(candidate):  # asked for every target
                return candidate
        return None

    @cached_property
    def _listed(self) -> frozenset[str]:
        return frozenset(self.files)

    @cached_property
    def files(self) -> tuple[str, ...]:
        """Every regular file below the root (no .git), sorted; symlinks to files inside the root count."""
        out: list[str] = []
        links = False
        for dirpath, dirnames, filenames in os.walk(self.root):
            linked = {d for d in dirnames if os.path.islink(os.path.join(dirpath, d))}
            links = links or bool(linked)
            dirnames[:] = sorted(d for d in dirnames if d != ".git" and d not in linked)
            reldir = os.path.relpath(dirpath, self.root)
            for name in filenames:
                rel = name if reldir == "." else f"{reldir}/{name}".replace(os.sep, "/")
                path = Path(dirpath, name)
                if path.is_symlink():
                    links = True
                    try:
                        self.resolve(".", rel)
                    except PathEscape:
                        continue
                if path.is_file():
                    out.append(rel)
                if len(out) > MAX_FILES:
                    raise PathEscape(f"repository has more than {MAX_FILES} files")
        self._no_links = not links
        return tuple(sorted(out))

    def read_bytes(self, rel: str) -> bytes:
        """The file's bytes; YamlError for one over MAX_FILE_BYTES or that is no regular file (a FIFO,
        a socket, a device: opened without blocking, so a FIFO nobody writes cannot hang the read).
        Read with the system calls alone: a file object and a Path cost four times the read itself,
        and discovery reads every file."""
        fd = os.open(os.path.join(self._base, rel), os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise YamlError(f"{rel} is not a regular file")
            if info.st_size > MAX_FILE_BYTES:
                raise YamlError(f"{rel} is {info.st_size} bytes, over the {MAX_FILE_BYTES} byte limit")
            data = _read_all(fd, info.st_size, MAX_FILE_BYTES + 1)
        finally:
            os.close(fd)
        if len(data) == info.st_size:  # the whole file: its digest (bot.render.build) need not read it again
            self.memo[("sha256", rel)] = hashlib.sha256(data).digest()
        return data

    def read_text(self, rel: str) -> str:
        """The file's text, kept while the texts kept stay under TEXT_CACHE_BYTES: discovery, the
        render cache's keys and provenance read the same files."""
        text = self._texts.get(rel)
        if text is None:
            text = self.read_bytes(rel).decode("utf-8", errors="replace")
            if self._text_bytes + len(text) <= TEXT_CACHE_BYTES:
                self._texts[rel] = text
                self._text_bytes += len(text)
        return text

    def lines(self, rel: str) -> list[str]:
        """The file's lines (none when it cannot be read), kept for the tree's life: provenance and the
        rules ask for the same files once per finding. Callers must not change the list."""
        cached = self._lines.get(rel)
        if cached is None:
            try:
                cached = self.read_text(rel).splitlines()
            except (OSError, YamlError):
                cached = []
            self._lines[rel] = cached
        return cached

    def _load(self, rel: str, text: str) -> list[YamlDoc]:
        """The file's documents (or its YamlError), from the folder of parsed files when it holds
        this text."""
        if self.parsed is None:
            return load_docs(text, rel)
        key = _parsed_key(rel, text)
        data = self.parsed.read(key)
        docs = undump_docs(data) if data is not None else None
        if docs is None:
            try:
                docs = load_docs(text, rel)
            except YamlError as exc:
                self.parsed.write(key, dump_error(exc))
                raise
            if sum(d.nodes for d in docs) <= NODES_PER_BYTE * len(text) + 64:
                dumped = dump_docs(docs)
                if dumped is not None:
                    self.parsed.write(key, dumped)
        return docs

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
            docs = self._load(rel, text)
        except YamlError as exc:
            self._docs[rel] = (exc.message, exc.line)
            raise YamlError(exc.message, exc.line) from None
        except OSError as exc:
            self._docs[rel] = (f"{rel}: {exc.strerror or exc}", None)
            raise YamlError(*self._docs[rel]) from None
        if sum(d.nodes for d in docs) <= NODES_PER_BYTE * len(text) + 64:
            self._docs[rel] = docs
        return docs


TEXT_CACHE_BYTES = 64 * 1024 * 1024


def _parsed_key(rel: str, text: str) -> str:
    return hashlib.sha256(f"{PARSED_FORMAT}\0{rel}\0{text}".encode()).hexdigest()


def changed_files(a: RepoTree, b: RepoTree) -> frozenset[str]:
    """Paths that differ between two trees (on one side only, or with other bytes): what a change
    touched, when there is no git history to ask."""
    fa, fb = set(a.files), set(b.files)
    same = {rel for rel in fa & fb if filecmp.cmp(a.abspath(rel), b.abspath(rel), shallow=False)}
    return frozenset((fa | fb) - same)
