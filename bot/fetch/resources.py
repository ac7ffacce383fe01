"""The remote entries of a build: fetched, checked like repository files, placed in the scratch copy.

Kustomize itself never touches the network here (its sandbox has no route out and no git). Each
remote entry of the target's kustomizations (bot.repo.graph.Inputs.remote) is instead:

- fetched through the policed fetcher (bot.fetch): a file URL as it is, a repository reference as an
  archive of its ref (bot.fetch.remote);
- checked as repository files are: an archive is read through our own repository model, so what
  the fetched kustomization reads is what is copied, with the same refusals (Helm, plugins, paths
  leaving the archive) and the same YAML bounds (the renderer's pre-scan counts the fetched files);
  remote entries of fetched kustomizations are followed up to `FetchSettings.max_depth` levels;
- placed in the scratch copy at `<folder of the kustomization naming it>/.infra-review-remote/<key>/`
  (inside that kustomization's root, so Kustomize's default load restrictions accept a fetched
  file), and the entry rewritten, in the scratch copy only, to the relative path of what was placed.

An entry that is not fetched (fetching off, refused by the policy, the download failed, a host or
form we do not fetch, nested too deep) is dropped from the scratch copy and reported as `Unfetched`:
the build goes on without it and the review says that its objects were not checked. A fetched
archive whose folder cannot be built is a BuildError at the entry, as Flux would fail on it too.
Every location reported is the repository's own entry, the line that names the remote resource.
"""

from __future__ import annotations

import hashlib
import posixpath
import shutil
import tempfile
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bot.deadline import Deadline
from bot.fetch import Fetcher, FetchFailed, FetchSettings, Refused
from bot.fetch.remote import RemoteRef, parse
from bot.repo.graph import Graph, RemoteEntry
from bot.repo.kustomization import REPOSITORY_FIELDS, BuildError, Ref, _check_plugin_config
from bot.repo.tree import RepoTree
from bot.yamlpos import YamlError, load_data

PLACE = ".infra-review-remote"
PLUGIN_FIELDS = ("generators", "transformers", "validators")
GENERATOR_FIELDS = ("configMapGenerator.", "secretGenerator.")

OFF = "fetching is off (`--offline`, or `fetch: {enabled: false}` in .github/infra-review.yml)"


@dataclass(frozen=True)
class Unfetched:
    """A remote entry that was not fetched, at the repository line that names it (for an entry of
    fetched content: the repository entry it came through, `via` naming the fetched one). `kind`:
    "off", "refused", "failed", "unsupported" or "depth"."""

    value: str
    file: str
    line: int
    field: str
    kind: str
    reason: str
    via: str = ""

    def to_json(self) -> list[Any]:
        return [self.value, self.file, self.line, self.field, self.kind, self.reason, self.via]

    @classmethod
    def from_json(cls, raw: list[Any]) -> Unfetched:
        return cls(*raw)


@dataclass(frozen=True)
class Placed:
    """Fetched content in the scratch copy: the folder (`prefix`, repository-relative as the origin
    annotations name it) and the repository entry it stands for."""

    prefix: str
    file: str
    line: int
    value: str

    def to_json(self) -> list[Any]:
        return [self.prefix, self.file, self.line, self.value]

    @classmethod
    def from_json(cls, raw: list[Any]) -> Placed:
        return cls(*raw)


@dataclass
class Plan:
    """What the scratch copy gets: files to write, entries to rewrite or drop, and what to report."""

    writes: list[tuple[str, bytes | Path]] = field(default_factory=list)  # (scratch path, content or file)
    edits: dict[str, list[tuple[tuple, str | None]]] = field(default_factory=dict)  # kustomization -> (segs, new)
    unfetched: list[Unfetched] = field(default_factory=list)
    placed: list[Placed] = field(default_factory=list)
    nodes: int = 0  # YAML nodes of the fetched files the build parses
    size: int = 0  # bytes written
    _digest: Any = field(default_factory=hashlib.sha256, repr=False)

    @property
    def digest(self) -> str:
        """The identity of every outcome (what was fetched, by content; what was not, and why): part of
        the build's cache key."""
        return self._digest.hexdigest()

    def note(self, *parts: Any) -> None:
        self._digest.update(repr(parts).encode() + b"\0")

    def apply(self, scratch: Path) -> None:
        """Write the fetched files, then edit the kustomizations naming them (copies: the repository is
        never written)."""
        for rel, content in self.writes:
            dest = scratch / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, Path):
                shutil.copyfile(content, dest)
            else:
                dest.write_bytes(content)
        for rel, edits in self.edits.items():
            path = scratch / rel
            try:
                data = (load_data(path.read_text(encoding="utf-8", errors="replace"), rel) or [None])[0]
            except (OSError, YamlError):
                continue
            if isinstance(data, dict):
                _edit(data, edits)
                path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def _edit(data: dict[str, Any], edits: list[tuple[tuple, str | None]]) -> None:
    """Point entries at what was placed, then drop the entries that were not fetched (the element
    holding a `path:`; the deepest indices first, so the others keep theirs)."""
    drops: list[tuple] = []
    for segs, new in edits:
        if new is None:
            drops.append(segs[:-1] if segs[-1] == "path" else segs)
            continue
        parent = _get(data, segs[:-1])
        key = segs[-1]
        old = parent[key] if isinstance(parent, dict | list) else None
        if isinstance(old, str) and len(segs) == 4 and "=" in old and not old.strip().lower().startswith("http"):
            new = old.split("=", 1)[0] + "=" + new  # a generator's `key=URL` keeps its key
        if isinstance(parent, list) and isinstance(key, int) and key < len(parent) or isinstance(parent, dict):
            parent[key] = new
    for segs in sorted(drops, key=lambda s: [(0, x) if isinstance(x, str) else (1, x) for x in s], reverse=True):
        parent = _get(data, segs[:-1])
        key = segs[-1]
        if isinstance(parent, list) and isinstance(key, int) and key < len(parent):
            del parent[key]
        elif isinstance(parent, dict):
            parent.pop(key, None)


def _get(data: Any, segs: tuple) -> Any:
    for seg in segs:
        if isinstance(data, dict):
            data = data.get(seg)
        elif isinstance(data, list) and isinstance(seg, int) and seg < len(data):
            data = data[seg]
        else:
            return None
    return data


@dataclass
class _Archive:
    tree: RepoTree
    graph: Graph
    digest: str


@dataclass(frozen=True)
class _Top:
    """The repository entry an entry of fetched content came through."""

    file: str
    line: int
    value: str
    field: str


class RemoteResources:
    """Plans the remote entries of builds for one renderer: archives are fetched and unpacked once
    (into a temporary folder removed with this object), whatever the number of targets naming them."""

    def __init__(self, settings: FetchSettings, fetcher: Fetcher):
        self.settings = settings
        self.fetcher = fetcher
        self._lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._archives: dict[str, _Archive | Exception] = {}
        self._tmp: Path | None = None

    def _workdir(self) -> Path:
        with self._lock:
            if self._tmp is None:
                self._tmp = Path(tempfile.mkdtemp(prefix="infra-review-fetch-"))
                weakref.finalize(self, shutil.rmtree, str(self._tmp), True)
            return self._tmp

    def plan(self, entries: list[RemoteEntry], scan: Callable[[bytes], int], stop: Deadline | None = None) -> Plan:
        """The plan for a build whose kustomizations name these remote entries. `scan` counts a fetched
        YAML file's nodes (raising ValueError past a bound). BuildError at the repository entry when
        fetched content cannot be built."""
        plan = Plan()
        for entry in entries:
            top = _Top(entry.file, entry.ref.line, entry.ref.value, entry.ref.field)
            self._place(plan, entry.ref, entry.file, entry.dir, top, 1, "", scan, stop or Deadline())
        return plan

    def _skip(self, plan: Plan, ref: Ref, kfile: str, top: _Top, kind: str, reason: str, via: str) -> None:
        plan.edits.setdefault(kfile, []).append((ref.segs, None))
        plan.unfetched.append(Unfetched(top.value, top.file, top.line, top.field, kind, reason, via))
        plan.note("skip", kfile, ref.segs, kind, ref.value)

    def _place(self, plan: Plan, ref: Ref, kfile: str, kdir: str, top: _Top, depth: int, via: str,
               scan: Callable[[bytes], int], stop: Deadline) -> None:
        stop.check()
        s = self.settings
        remote = parse(ref.value, ref.field.split(".", 1)[0] in REPOSITORY_FIELDS, s.codeload, s.gitlab)
        if not s.enabled:
            return self._skip(plan, ref, kfile, top, "off", OFF, via)
        if remote.kind == "unsupported":
            return self._skip(plan, ref, kfile, top, "unsupported", f"it is not fetched: {remote.reason}", via)
        if depth > s.max_depth:
            return self._skip(plan, ref, kfile, top, "depth", f"it is named by fetched content {depth - 1} levels "
                              f"down, and infra-review follows {s.max_depth}", via)
        prefix = posixpath.join(kdir, PLACE, remote.key) if kdir not in ("", ".") else posixpath.join(PLACE, remote.key)
        try:
            if remote.kind == "file":
                data = self.fetcher.get(remote.url)
            else:
                archive = self._archive(remote)
        except Refused as exc:
            return self._skip(plan, ref, kfile, top, "refused", f"the fetch policy refused it: {exc}", via)
        except FetchFailed as exc:
            return self._skip(plan, ref, kfile, top, "failed", f"it could not be downloaded: {exc}", via)
        where = f"remote `{top.value}`" + (f" (through `{via}`)" if via else "")
        if remote.kind == "file":
            dest = posixpath.join(prefix, remote.name)
            if not ref.field.startswith(GENERATOR_FIELDS):
                try:
                    plan.nodes += scan(data)
                except ValueError as exc:
                    raise BuildError(f"{where} is refused before building: {exc}", top.file, top.line) from None
            if ref.field in PLUGIN_FIELDS:
                try:
                    _check_plugin_config(data.decode("utf-8", "replace"), top.file, top.line)
                except BuildError as exc:
                    raise BuildError(f"{where}: {exc.message}", top.file, top.line) from None
            plan.writes.append((dest, data))
            plan.size += len(data)
            plan.note("file", kfile, ref.segs, remote.url, hashlib.sha256(data).hexdigest())
            plan.edits.setdefault(kfile, []).append((ref.segs, posixpath.relpath(dest, kdir or ".")))
        else:
            self._place_archive(plan, ref, remote, archive, kfile, kdir, prefix, top, depth, where, scan, stop)
        plan.placed.append(Placed(prefix, top.file, top.line, top.value))
        return None

    def _place_archive(self, plan: Plan, ref: Ref, remote: RemoteRef, archive: _Archive, kfile: str, kdir: str,
                       prefix: str, top: _Top, depth: int, where: str, scan: Callable[[bytes], int],
                       stop: Deadline) -> None:
        sub = remote.subpath or "."
        tree, graph = archive.tree, archive.graph
        if not tree.kustomization_file(sub):
            raise BuildError(f"{where}: `{sub}` in the archive of {remote.ref} is not a folder with a kustomization "
                             f"file", top.file, top.line)
        inputs = graph.kustomization_inputs(sub)
        if inputs.errors:
            err = inputs.errors[0]
            at = f" ({err.file}{':' + str(err.line) if err.line else ''} in the archive)" if err.file else ""
            raise BuildError(f"{where}: {err.message}{at}", top.file, top.line)
        parsed = inputs.yaml_files()
        for rel in sorted(inputs.files):
            if not tree.is_file(rel):
                continue
            if rel in parsed:
                try:
                    plan.nodes += scan(tree.abspath(rel).read_bytes())
                except ValueError as exc:
                    raise BuildError(f"{where}: `{rel}` in the archive is refused before building: {exc}",
                                     top.file, top.line) from None
            plan.writes.append((posixpath.join(prefix, rel), tree.abspath(rel)))
            plan.size += tree.abspath(rel).stat().st_size
        plan.note("archive", kfile, ref.segs, remote.url, remote.subpath, archive.digest)
        target = posixpath.join(prefix, sub) if sub != "." else prefix
        plan.edits.setdefault(kfile, []).append((ref.segs, posixpath.relpath(target, kdir or ".")))
        for inner in inputs.remote:
            self._place(plan, inner.ref, posixpath.join(prefix, inner.file), posixpath.join(prefix, inner.dir),
                        top, depth + 1, inner.ref.value, scan, stop)

    def _archive(self, remote: RemoteRef) -> _Archive:
        """The archive of `remote`, fetched and unpacked once per renderer."""
        with self._lock:
            lock = self._locks.setdefault(remote.url, threading.Lock())
        with lock:
            known = self._archives.get(remote.url)
            if isinstance(known, Exception):
                raise known
            if known is not None:
                return known
            try:
                data = self.fetcher.get(remote.url)
                archive = self._unpack(remote, data)
            except (Refused, FetchFailed) as exc:
                self._archives[remote.url] = exc
                raise
            self._archives[remote.url] = archive
            return archive

    def _unpack(self, remote: RemoteRef, data: bytes) -> _Archive:
        from bot.app.source import ArchiveRejected, ExtractLimits, extract_tarball

        dest = self._workdir() / hashlib.sha256(remote.url.encode()).hexdigest()[:24]
        try:
            extract_tarball(data, dest, ExtractLimits(max_archive_bytes=self.settings.max_bytes))
        except ArchiveRejected as exc:
            shutil.rmtree(dest, ignore_errors=True)
            raise FetchFailed(f"{remote.url}: {exc}") from None
        tree = RepoTree(dest)
        return _Archive(tree, Graph(tree), hashlib.sha256(data).hexdigest())


def legacy_refusal(entries: list[RemoteEntry]) -> BuildError:
    """What a renderer given no fetch settings says of a remote entry (as before there was a fetcher)."""
    first = entries[0]
    return BuildError(f"remote reference {first.ref.value!r} is not fetched: vendor it into the repository",
                      first.file, first.ref.line)


def forbidden(entries: list[RemoteEntry]) -> BuildError:
    """`flux: {no_remote_bases: true}`: the cluster's kustomize-controller refuses remote entries."""
    first = entries[0]
    return BuildError(f"remote `{first.ref.field}` entry {first.ref.value!r}: the cluster's kustomize-controller runs "
                      f"with --no-remote-bases (`flux: {{no_remote_bases: true}}` in .github/infra-review.yml), so "
                      f"it refuses remote resources; vendor it into the repository", first.file, first.ref.line)
