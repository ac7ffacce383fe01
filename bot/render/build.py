"""Render targets: scratch copy → (Flux generate) → kustomize build → strip → (Flux post-build).

The steps and their order follow the Flux kustomize-controller (generate → build → substitute).
Results are cached by the content hash of the target's inputs, so an unchanged target is never
rebuilt, and targets are rendered in parallel up to the core count. The disk cache is bounded in
size and age.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bot.deadline import Deadline
from bot.model import ResourceId, Target
from bot.objects import RenderedObject
from bot.render import flux
from bot.render.annotations import inject, own_origin, split_documents, strip_output
from bot.render.kustomize import Kustomize, clean_error, find_kustomize, run_build, setting
from bot.repo.discover import RepoModel
from bot.repo.graph import Inputs
from bot.repo.kustomization import BuildError, locate_error
from bot.repo.tree import KUSTOMIZATION_NAMES, PathEscape
from bot.yamlpos import MAX_DEPTH, YamlDoc, YamlError, load_docs

CACHE_VERSION = "3"  # 3: errors are kustomize's own sentence at a line, inputs are pre-scanned
MAX_INPUT_BYTES = 64 * 1024 * 1024
# YAML nodes one build may hold, after alias expansion and counting each time a file is read (a base
# that two included folders include is built twice). Kustomize expands aliases itself, at about 1.3 KiB
# of memory per node: this keeps a build under about 400 MiB, where the 500,000 nodes our own parser
# allows per file cost it about 750 MiB. The largest target of the eight repositories of
# tests/test_check_corpus.py holds 12,400.
MAX_BUILD_NODES = 250_000
CACHE_MAX_BYTES = int(setting("INFRA_REVIEW_CACHE_MAX_BYTES", 1024**3))
CACHE_MAX_AGE = setting("INFRA_REVIEW_CACHE_MAX_AGE", 7 * 24 * 3600)
PRUNE_EVERY = 600.0  # seconds; shared by every process using the directory, through a stamp file
_STAMP = ".pruned"


try:
    from yaml import CSafeLoader as _EventLoader
except ImportError:  # pragma: no cover - libyaml is present on every supported platform
    from yaml import SafeLoader as _EventLoader  # type: ignore[assignment]


def default_cache_dir() -> Path:
    env = os.environ.get("INFRA_REVIEW_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "infra-review" / "render"


@dataclass
class Rendered:
    """One target's rendering: the exact output text, the objects with provenance, or the error."""

    target: Target
    text: str = ""
    objects: list[RenderedObject] = field(default_factory=list)
    error: BuildError | None = None
    cached: bool = False
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # e.g. unresolved Flux variables

    @property
    def ok(self) -> bool:
        return self.error is None


class DiskCache:
    """Raw build results keyed by input hash; a corrupt or missing entry is just a miss.

    The directory stays within `max_bytes` and `max_age` (seconds): a hit refreshes an entry's mtime,
    and a scan every PRUNE_EVERY seconds, or after a tenth of `max_bytes` was written, removes
    entries past the age, then the least recently used until the rest fits.
    """

    def __init__(self, directory: Path | None, max_bytes: int = CACHE_MAX_BYTES, max_age: float = CACHE_MAX_AGE):
        self.directory = directory
        self.max_bytes, self.max_age = max_bytes, max_age
        self.memory: dict[str, dict[str, Any]] = {}
        self._written = 0

    def path(self, key: str) -> Path:
        return Path(self.directory or ".", key[:2], f"{key}.json")

    def get(self, key: str) -> dict[str, Any] | None:
        if key in self.memory:
            return self.memory[key]
        if self.directory is None:
            return None
        path = self.path(key)
        try:
            value = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        with contextlib.suppress(OSError):
            os.utime(path)
        self.memory[key] = value
        return value

    def put(self, key: str, value: dict[str, Any]) -> None:
        self.memory[key] = value
        if self.directory is None:
            return
        try:
            self._write(self.path(key), json.dumps(value))
        except OSError:
            return
        if self._written > self.max_bytes // 10 or self._prune_due():
            self.prune()

    def _write(self, path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as out:
                out.write(text)
            os.replace(tmp, path)
        except OSError:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._written += len(text)

    def _prune_due(self) -> bool:
        if self.directory is None:
            return False
        try:
            return time.time() - (self.directory / _STAMP).stat().st_mtime > PRUNE_EVERY
        except OSError:
            return True

    def prune(self) -> None:
        """Remove entries older than `max_age`, then the least recently used beyond `max_bytes`.
        Best effort: a cache problem never fails a render."""
        if self.directory is None:
            return
        self._written = 0
        try:
            (self.directory / _STAMP).touch()
            entries = sorted((e for sub in os.scandir(self.directory) if sub.is_dir(follow_symlinks=False)
                              for e in _cache_files(sub.path)), reverse=True)
        except OSError:
            return
        now, kept = time.time(), 0
        for mtime, size, path in entries:
            if now - mtime <= self.max_age and kept + size <= self.max_bytes:
                kept += size
            else:
                path.unlink(missing_ok=True)


def _cache_files(directory: str) -> Iterator[tuple[float, int, Path]]:
    """(mtime, size, path) of the entries in one cache folder, and of temporary files a crashed write
    left behind; a file another process removes meanwhile is skipped."""
    for entry in os.scandir(directory):
        if not entry.name.endswith((".json", ".tmp")):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISREG(info.st_mode):
            yield info.st_mtime, info.st_size, Path(entry.path)


class Refused(ValueError):
    """A YAML input past a bound, with the line where it crossed it."""

    def __init__(self, reason: str, line: int | None):
        super().__init__(reason)
        self.reason, self.line = reason, line


def _line(event: yaml.Event) -> int | None:
    return event.start_mark.line + 1 if event.start_mark is not None else None


def yaml_nodes(text: bytes | str, limit: int | None = None) -> int:
    """How many YAML nodes (keys included) the documents of `text` hold once their aliases are
    expanded, as kustomize (kyaml) expands them: counted from the parser's events, so nothing is
    built and an alias costs what its anchor holds (a redefined anchor counts its latest value, as in
    YAML 1.2 and go-yaml, where our own composer refuses the file). Refused past `limit` nodes (default
    MAX_BUILD_NODES) or MAX_DEPTH levels of nesting. A syntax error ends the count: kustomize fails on
    it with its own sentence, before it expands anything (go-yaml parses a document whole first)."""
    limit = MAX_BUILD_NODES if limit is None else limit
    held = 0  # every node read so far, aliases expanded
    anchors: dict[str, int] = {}
    open_: list[list] = []  # [nodes so far, anchor] of each collection being read
    try:
        for event in yaml.parse(text, Loader=_EventLoader):
            if isinstance(event, yaml.DocumentStartEvent):
                anchors.clear()
                continue
            if isinstance(event, yaml.CollectionStartEvent):
                if len(open_) >= MAX_DEPTH:
                    raise Refused(f"it nests deeper than {MAX_DEPTH} levels", _line(event))
                open_.append([1, event.anchor])
                held += 1
            elif isinstance(event, (yaml.ScalarEvent, yaml.AliasEvent, yaml.CollectionEndEvent)):
                if isinstance(event, yaml.ScalarEvent):
                    n, anchor = 1, event.anchor
                    held += 1
                elif isinstance(event, yaml.AliasEvent):
                    n, anchor = anchors.get(event.anchor or "", 1), None
                    held += n
                else:
                    n, anchor = open_.pop()
                if anchor is not None:
                    anchors[anchor] = n
                if open_:
                    open_[-1][0] += n
            if held > limit:
                raise Refused(f"it expands to more than {limit:,} YAML nodes (aliases expanded), more than one build "
                              f"may hold", _line(event))
    except yaml.MarkedYAMLError as exc:
        if "nesting depth" in str(exc.problem):  # libyaml's own bound, met before ours in flow style
            mark = exc.problem_mark or exc.context_mark
            raise Refused(f"it nests deeper than {MAX_DEPTH} levels", mark.line + 1 if mark else None) from None
    except yaml.YAMLError:
        pass
    return held


def _output_docs(text: str, name: str) -> list[YamlDoc]:
    """The documents of a build's output, parsed one at a time: YAML's per-file bound then applies to
    each object (etcd refuses objects over about 1.5 MiB anyway), while the output as a whole is
    bounded by INFRA_REVIEW_MAX_TARGET_BYTES when it is read."""
    docs: list[YamlDoc] = []
    for i, part in enumerate(split_documents(text), 1):
        docs.extend(load_docs(part, f"{name} (document {i})"))
    return docs


class Renderer:
    """Renders the targets of one repository model with one Kustomize binary."""

    def __init__(self, model: RepoModel, kustomize: Kustomize | None = None, cache: DiskCache | None = None,
                 jobs: int | None = None, flux_emulation: bool = True, deadline: Deadline | None = None):
        self.model = model
        self.deadline = deadline or Deadline()
        self.kustomize = kustomize or find_kustomize()
        self.cache = cache if cache is not None else DiskCache(default_cache_dir())
        self.jobs = jobs or os.cpu_count() or 2
        self.flux_emulation = flux_emulation

    # --- inputs --------------------------------------------------------------------------
    def _input_key(self, target: Target, files: list[str]) -> str:
        h = hashlib.sha256()
        spec = target.flux.spec if (target.flux and self.flux_emulation) else None
        h.update(json.dumps([CACHE_VERSION, self.kustomize.version, target.path, spec], sort_keys=True,
                            default=str).encode())
        for rel in files:
            h.update(rel.encode() + b"\0")
            try:
                h.update(hashlib.sha256(self.model.tree.read_bytes(rel)).digest())
            except (OSError, YamlError):
                h.update(b"<missing>")
        return h.hexdigest()

    def _nodes(self, rel: str, inputs: Inputs) -> int:
        """YAML nodes of one input as kustomize holds them (yaml_nodes; kept per tree); a file over a
        bound is a BuildError at the line where it crosses it."""
        key = ("nodes", rel)
        known = self.model.tree.memo.get(key)
        if known is None:
            try:
                known = yaml_nodes(self.model.tree.abspath(rel).read_bytes())
            except Refused as exc:
                known = (exc.reason, exc.line)
            except OSError as exc:
                known = (exc.strerror or str(exc), None)
            self.model.tree.memo[key] = known
        if isinstance(known, tuple):
            reason, line = known
            where = (rel, line) if line else (self.model.graph.entry(rel, inputs.dirs) or (rel, None))
            raise BuildError(f"`{rel}` is refused before building: {reason}", *where)
        return known  # type: ignore[return-value]

    def _prescan(self, target: Target, inputs: Inputs) -> None:
        """Our own bounded read of every file kustomize will parse, before it runs: kustomize expands
        aliases and nests without bounds (an alias bomb costs it gigabytes), so a file past a bound,
        or inputs that would make the build hold more than MAX_BUILD_NODES, never reach it."""
        tree = self.model.tree
        scanned = sorted(f for f in inputs.yaml_files() if tree.is_file(f))
        counts = {rel: self._nodes(rel, inputs) for rel in scanned}
        total = self.model.weight(target, lambda rel: counts[rel] if rel in counts else self._nodes(rel, inputs))
        if total > MAX_BUILD_NODES:
            heaviest = max(scanned, key=lambda rel: (counts[rel], rel))
            where = self.model.graph.entry(heaviest, inputs.dirs) or (heaviest, None)
            raise BuildError(
                f"`{target.path}` is refused before building: its YAML inputs hold {total:,} nodes (aliases expanded, "
                f"a file counted each time the build reads it), over the {MAX_BUILD_NODES:,} one build may hold; the "
                f"largest is `{heaviest}` ({counts[heaviest]:,})", *where)

    def _materialize(self, target: Target, files: list[str], scratch: Path) -> bool:
        """Copy the inputs, apply Flux's kustomization edits and inject origin annotations.
        Returns whether annotations were injected (and so must be stripped)."""
        total = 0
        for rel in files:
            src = self.model.tree.abspath(rel)
            if not src.is_file():
                continue
            try:
                self.model.tree.resolve(".", rel)
            except PathEscape as exc:
                raise BuildError(str(exc), *(self._entry(target, rel) or (rel, None))) from None
            total += src.stat().st_size
            if total > MAX_INPUT_BYTES:
                raise BuildError(f"inputs exceed {MAX_INPUT_BYTES // 2**20} MiB (with `{rel}`)",
                                 *(self._entry(target, rel) or (target.path, None)))
            dst = scratch / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
        top = scratch / target.path
        top.mkdir(parents=True, exist_ok=True)
        if target.flux is not None and self.flux_emulation:
            flux.generate(self.model, target, top)
        kfile = next((top / n for n in KUSTOMIZATION_NAMES if (top / n).is_file()), None)
        if kfile is None:
            raise BuildError(f"no kustomization file in '{target.path}'", target.path)
        text, injected = inject(kfile.read_text(encoding="utf-8", errors="replace"))
        kfile.write_text(text, encoding="utf-8")
        return injected

    def _entry(self, target: Target, rel: str) -> tuple[str, int] | None:
        return self.model.graph.entry(rel, self.model.inputs(target).dirs)

    def _raw_build(self, target: Target) -> tuple[dict[str, Any], bool]:
        inputs = self.model.inputs(target)
        if inputs.errors:
            e = inputs.errors[0]
            return {"rc": 1, "stdout": "", "error": [e.message, e.file, e.line], "injected": False}, False
        files = sorted(inputs.files)
        key = self._input_key(target, files)
        hit = self.cache.get(key)
        if hit is not None:
            return hit, True
        scratch = Path(tempfile.mkdtemp(prefix="infra-review-build-"))
        try:
            try:
                self._prescan(target, inputs)
                injected = self._materialize(target, files, scratch)
            except BuildError as exc:
                return {"rc": 1, "stdout": "", "error": [exc.message, exc.file, exc.line], "injected": False}, False
            res = run_build(self.kustomize, scratch, target.path, stop=self.deadline)
            error = None
            if res.returncode != 0:
                message = clean_error(res.stderr, scratch, res.returncode)
                error = [message, *locate_error(self.model.tree, target.path, message)]
            value = {"rc": res.returncode, "stdout": res.stdout, "injected": injected, "error": error}
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        if not res.stopped:
            self.cache.put(key, value)
        return value, False

    # --- public --------------------------------------------------------------------------
    def render(self, target: Target) -> Rendered:
        """One target's rendering; Stopped when the renderer's deadline says the work must stop."""
        self.deadline.check()
        start = time.perf_counter()
        raw, cached = self._raw_build(target)
        out = Rendered(target, cached=cached)
        if raw["rc"] != 0:
            msg, file, line = raw["error"]
            out.error = BuildError(msg, file, line)
        else:
            text, origins = strip_output(raw["stdout"]) if raw["injected"] else (raw["stdout"], None)
            out.text = text
            try:
                out.objects = self._objects(target, text, origins)
            except YamlError as exc:
                out.error = BuildError(f"kustomize output could not be read: {exc.message}", target.path)
            if out.ok and target.flux is not None and self.flux_emulation:
                out = flux.post_build(self.model, out)
        out.seconds = time.perf_counter() - start
        return out

    def _objects(self, target: Target, text: str, origins: list | None) -> list[RenderedObject]:
        from bot.render.provenance import Provenance

        prov = Provenance(self.model, target, flux=self.flux_emulation)
        objects: list[RenderedObject] = []
        docs = [d for d in _output_docs(text, target.path) if isinstance(d.data, dict)]
        for i, doc in enumerate(docs):
            origin = origins[i] if origins and i < len(origins) else None
            if origins is None:
                origin = own_origin(doc.data)
            ro = RenderedObject(doc.data, ResourceId.of(doc.data), target)
            ro.locate = prov.locator(ro, origin)
            ro.places = prov.placer(ro, origin)
            objects.append(ro)
        return objects

    def render_all(self, targets: list[Target] | tuple[Target, ...]) -> list[Rendered]:
        """Render in parallel (the work is in the subprocess, so threads suffice)."""
        if len(targets) <= 1:
            return [self.render(t) for t in targets]
        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            return list(pool.map(self.render, targets))
