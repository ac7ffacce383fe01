"""Render targets: scratch copy → (fetch remote entries) → (Flux generate) → kustomize build → strip →
(Flux post-build).

The steps and their order follow the Flux kustomize-controller (generate → build → substitute).
Results are cached by the content hash of the target's inputs (and of what was fetched for it), so an
unchanged target is never rebuilt, and targets are rendered in parallel up to the core count. The
disk cache is bounded in size and age.

A Flux target (with Flux emulation on) is built as the kustomize-controller builds it: with
Kustomize's load restrictions off (`--load-restrictor LoadRestrictionsNone`), since Flux confines a
build to the source's root, not to the kustomization's folder, so an overlay may read a patch or a
generator file from a sibling folder. That is safe here: the scratch copy holds only repository
files the dependency graph names, and the graph refuses every path leaving the repository. Any other
target (an overlay no Flux Kustomization reaches, `infra-review build` without `--flux`) keeps plain
`kustomize build` semantics. The two modes have distinct cache keys.

Remote entries (URLs, repository references) are fetched when the renderer is given FetchSettings
(bot.fetch.resources); a renderer given none refuses them as a build error, as before there was a
fetcher.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from bot.deadline import Deadline
from bot.diskcache import BoundedFolder
from bot.fetch import Fetcher, FetchSettings
from bot.fetch.resources import Placed, Plan, RemoteResources, Unfetched, forbidden, legacy_refusal
from bot.model import ResourceId, Target
from bot.objects import RenderedObject
from bot.render import flux
from bot.render.annotations import inject, own_origin, split_documents, strip_output
from bot.render.kustomize import Kustomize, clean_error, find_kustomize, run_build, setting
from bot.repo.discover import RepoModel
from bot.repo.graph import Inputs
from bot.repo.kustomization import BuildError, locate_error
from bot.repo.tree import KUSTOMIZATION_NAMES, PathEscape
from bot.yamlpos import MAX_DEPTH, YamlError, exact_json, load_data

if TYPE_CHECKING:
    from bot.render.releases import Release

CACHE_VERSION = "5"  # 5: the output kept parsed; 4: Flux targets without load restrictions, remote entries fetched
MAX_INPUT_BYTES = 64 * 1024 * 1024
# YAML nodes one build may hold, after alias expansion and counting each time a file is read (a base
# that two included folders include is built twice). Kustomize expands aliases itself, at about 1.3 KiB
# of memory per node: this keeps a build under about 400 MiB, where the 500,000 nodes our own parser
# allows per file cost it about 750 MiB. The largest target of the eight repositories of
# tests/test_check_corpus.py holds 12,400.
MAX_BUILD_NODES = 250_000
CACHE_MAX_BYTES = int(setting("INFRA_REVIEW_CACHE_MAX_BYTES", 1024**3))
CACHE_MAX_AGE = setting("INFRA_REVIEW_CACHE_MAX_AGE", 7 * 24 * 3600)


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
    # The output as text, or how to write it: Flux's post-build changes are printed only when asked
    # (`build`), not on every check.
    output: str | Callable[[], str] = ""
    objects: list[RenderedObject] = field(default_factory=list)
    error: BuildError | None = None
    cached: bool = False
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # e.g. unresolved Flux variables
    unfetched: list[Unfetched] = field(default_factory=list)  # remote entries built without (not checked)
    # When the build failed once the unfetched entries were left out: kustomize's sentence. The target
    # is then not an error (Flux fetches them) but unchecked, and `error` stays None.
    unbuilt: str | None = None
    releases: list[Release] = field(default_factory=list)  # its HelmReleases (bot.render.releases)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def text(self) -> str:
        """The exact output: what kustomize printed, or Flux's post-build result written as YAML."""
        if callable(self.output):
            self.output = self.output()
        return self.output

    @property
    def applied(self) -> list[RenderedObject]:
        """Everything Flux applies for the target: its objects and what its rendered HelmReleases install."""
        return self.objects + [ro for release in self.releases for ro in release.objects]


class DiskCache(BoundedFolder):
    """Raw build results keyed by input hash, as JSON; a corrupt or missing entry is just a miss.
    The folder is bounded by `max_bytes` and `max_age` (seconds), see bot.diskcache."""

    def __init__(self, directory: Path | None, max_bytes: int = CACHE_MAX_BYTES, max_age: float = CACHE_MAX_AGE):
        super().__init__(directory, ".json", max_bytes, max_age)
        self.memory: dict[str, dict[str, Any]] = {}
        # Source files parsed with their lines, by content (RepoTree.parsed): a check parses every file
        # of the repository, the same files as the check before.
        self.sources = BoundedFolder(directory / "sources" if directory else None, ".json", max_bytes, max_age)
        # What a whole-repository check concluded per environment (bot.review.verdicts).
        self.verdicts = BoundedFolder(directory / "verdicts" if directory else None, ".json", max_bytes, max_age)

    def get(self, key: str) -> dict[str, Any] | None:
        if key in self.memory:
            return self.memory[key]
        data = self.read(key)
        try:
            value = json.loads(data) if data is not None else None
        except ValueError:
            return None
        if isinstance(value, dict):
            self.memory[key] = value
            return value
        return None

    def put(self, key: str, value: dict[str, Any]) -> None:
        self.memory[key] = value
        self.write(key, json.dumps(value).encode())


def _remote_error(message: str, error: list[Any], plan: Plan) -> list[Any]:
    """A build error about fetched content: its scratch paths named by the entry they stand for, and
    located at that entry when the error went through it."""
    for placed in sorted(plan.placed, key=lambda p: -len(p.prefix)):
        token = "/".join(placed.prefix.rsplit("/", 2)[-2:])  # `.infra-review-remote/<key>`
        pattern = re.compile(r"[^'\s]*" + re.escape(token) + r"[^'\s]*")
        if pattern.search(message):
            return [pattern.sub(placed.value.replace("\\", "\\\\"), message), placed.file, placed.line]
    return error


def file_digest(path: Path) -> bytes:
    """The sha256 of a regular file, read in chunks whatever its size: a cache key must change with
    every byte of every input, one over YAML's bound included (else two such files of the same name
    would share a build). OSError for anything but a regular file, opened without blocking."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file")
        return hashlib.file_digest(f, "sha256").digest()


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


def _output_docs(text: str, name: str) -> list[Any]:
    """The documents of a build's output as data, parsed one at a time: YAML's per-file bound then
    applies to each object (etcd refuses objects over about 1.5 MiB anyway), while the output as a
    whole is bounded by INFRA_REVIEW_MAX_TARGET_BYTES when it is read."""
    docs: list[Any] = []
    for i, part in enumerate(split_documents(text), 1):
        docs.extend(load_data(part, f"{name} (document {i})"))
    return docs


Pairs = list[tuple[dict[str, Any], dict[str, Any] | None]]  # each output object with its origin annotation


def _read(raw: dict[str, Any], name: str) -> tuple[str, Pairs | YamlError]:
    """A build's output without our annotations, and each of its objects with the origin they gave
    it (or the one the user asked kustomize for); the YamlError instead when kustomize printed what
    YAML cannot read. From the parsed form the cache keeps, when it has one."""
    kept = _parsed(raw)
    if kept is not None:
        return kept
    text, origins = strip_output(raw["stdout"]) if raw["injected"] else (raw["stdout"], None)
    try:
        docs = [d for d in _output_docs(text, name) if isinstance(d, dict)]
    except YamlError as exc:
        return text, exc
    if origins is None:
        return text, [(doc, own_origin(doc)) for doc in docs]
    return text, [(doc, origins[i] if i < len(origins) else None) for i, doc in enumerate(docs)]


def _with_parsed(raw: dict[str, Any], text: str, pairs: Pairs) -> dict[str, Any]:
    """The cache entry with the output kept as read (JSON, where C reads it back a dozen times faster
    than YAML is parsed), when JSON holds it exactly; else as kustomize printed it."""
    parsed = exact_json([text, pairs], lambda v: [v[0], [list(p) for p in v[1]]])
    if parsed is None:
        return raw  # keys JSON cannot hold (`1:`, `true:`), a NaN: read from the text every time
    return {**raw, "parsed": parsed}  # the text kept too: an entry whose parsed form is unreadable is read again


def _parsed(raw: dict[str, Any]) -> tuple[str, Pairs] | None:
    """The output as `_with_parsed` kept it, as new objects on every call (the head and the base of
    a review read the same entry, and must not share what a later step might change)."""
    parsed = raw.get("parsed")
    if not isinstance(parsed, str):
        return None
    try:
        text, pairs = json.loads(parsed)
        out = [(doc, origin) for doc, origin in pairs]
    except (ValueError, TypeError):
        return None
    if not isinstance(text, str) or not all(isinstance(d, dict) and isinstance(o, (dict, type(None))) for d, o in out):
        return None
    return text, out


class Renderer:
    """Renders the targets of one repository model with one Kustomize binary."""

    def __init__(self, model: RepoModel, kustomize: Kustomize | None = None, cache: DiskCache | None = None,
                 jobs: int | None = None, flux_emulation: bool = True, deadline: Deadline | None = None,
                 fetch: FetchSettings | None = None, fetcher: Fetcher | None = None):
        """`fetch`: what may be fetched for remote entries (None: they are refused, as a build error);
        `fetcher` (tests) replaces the one made from it, whose cache is `<cache dir>/fetch`."""
        self.model = model
        self.deadline = deadline or Deadline()
        self.kustomize = kustomize or find_kustomize()
        self.cache = cache if cache is not None else DiskCache(default_cache_dir())
        self.jobs = jobs or os.cpu_count() or 2
        self.flux_emulation = flux_emulation
        self.fetch = fetcher.settings if fetcher is not None else fetch
        self._fetcher = fetcher
        self._remote: RemoteResources | None = None
        self._remote_lock = threading.Lock()
        self._early: dict[int, Future[Rendered]] = {}  # builds `prefetch` started, by id(target)
        self._pool: ThreadPoolExecutor | None = None

    @property
    def remote(self) -> RemoteResources:
        """The planner of remote entries, made on first use (most repositories have none)."""
        with self._remote_lock:
            if self._remote is None:
                settings = self.fetch or FetchSettings(enabled=False)
                fetcher = self._fetcher or Fetcher(settings, self.cache.directory / "fetch" if self.cache.directory
                                                   else None, self.cache.max_bytes)
                self._remote = RemoteResources(settings, fetcher)
            return self._remote

    def unrestricted(self, target: Target) -> bool:
        """Whether `target` is built with Kustomize's load restrictions off: a Flux target, with Flux
        emulation on (the kustomize-controller confines a build to the source, not to a folder)."""
        return target.flux is not None and self.flux_emulation

    # --- inputs --------------------------------------------------------------------------
    def _input_key(self, target: Target, files: list[str], remote: str = "") -> str:
        h = hashlib.sha256()
        spec = target.flux.spec if (target.flux and self.flux_emulation) else None
        h.update(json.dumps([CACHE_VERSION, self.kustomize.version, target.path, spec, self.unrestricted(target),
                             remote], sort_keys=True, default=str).encode())
        for rel in files:
            h.update(rel.encode() + b"\0" + self.digest(rel))
        return h.hexdigest()

    def digest(self, rel: str) -> bytes:
        """A file's sha256, read once per tree: a base's files are inputs of every environment's target."""
        key = ("sha256", rel)
        known = self.model.tree.memo.get(key)
        if isinstance(known, bytes):
            return known
        try:
            digest = file_digest(self.model.tree.abspath(rel))
        except OSError:
            digest = b"<missing>"
        self.model.tree.memo[key] = digest
        return digest

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

    def _prescan(self, target: Target, inputs: Inputs, remote_nodes: int = 0) -> None:
        """Our own bounded read of every file kustomize will parse, before it runs: kustomize expands
        aliases and nests without bounds (an alias bomb costs it gigabytes), so a file past a bound,
        or inputs that would make the build hold more than MAX_BUILD_NODES, never reach it. Fetched
        files were counted when they were planned (`remote_nodes`, each counted once)."""
        tree = self.model.tree
        scanned = sorted(f for f in inputs.yaml_files() if tree.is_file(f))
        counts = {rel: self._nodes(rel, inputs) for rel in scanned}
        total = remote_nodes + self.model.weight(
            target, lambda rel: counts[rel] if rel in counts else self._nodes(rel, inputs))
        if total > MAX_BUILD_NODES and inputs.remote and remote_nodes >= max(counts.values(), default=0):
            first = inputs.remote[0]
            raise BuildError(f"`{target.path}` is refused before building: its YAML inputs hold {total:,} nodes "
                             f"(aliases expanded), over the {MAX_BUILD_NODES:,} one build may hold; {remote_nodes:,} "
                             f"of them are in what its remote resources fetched", first.file, first.ref.line)
        if total > MAX_BUILD_NODES:
            heaviest = max(scanned, key=lambda rel: (counts[rel], rel))
            where = self.model.graph.entry(heaviest, inputs.dirs) or (heaviest, None)
            raise BuildError(
                f"`{target.path}` is refused before building: its YAML inputs hold {total:,} nodes (aliases expanded, "
                f"a file counted each time the build reads it), over the {MAX_BUILD_NODES:,} one build may hold; the "
                f"largest is `{heaviest}` ({counts[heaviest]:,})", *where)

    def _materialize(self, target: Target, files: list[str], scratch: Path, plan: Plan | None = None) -> bool:
        """Copy the inputs, place what was fetched (rewriting the entries that name it), apply Flux's
        kustomization edits and inject origin annotations. Returns whether annotations were injected
        (and so must be stripped)."""
        total = plan.size if plan is not None else 0
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
        if plan is not None:
            if total > MAX_INPUT_BYTES:
                first = plan.placed[0] if plan.placed else None
                raise BuildError(f"inputs exceed {MAX_INPUT_BYTES // 2**20} MiB with what was fetched",
                                 first.file if first else target.path, first.line if first else None)
            plan.apply(scratch)
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

    def _plan(self, inputs: Inputs) -> Plan | None:
        """The remote entries' plan (None when there are none); BuildError when they are refused."""
        if not inputs.remote:
            return None
        if self.fetch is None:
            raise legacy_refusal(inputs.remote)
        if self.fetch.no_remote_bases:
            raise forbidden(inputs.remote)
        return self.remote.plan(inputs.remote, yaml_nodes, self.deadline)

    def _raw_build(self, target: Target) -> tuple[dict[str, Any], bool, str | None]:
        """The build's result as the cache keeps it, whether it came from the cache, and the key it is
        kept under (None: not to be kept, it failed before building or was stopped)."""
        inputs = self.model.inputs(target)
        if inputs.errors:
            e = inputs.errors[0]
            return {"rc": 1, "stdout": "", "error": [e.message, e.file, e.line], "injected": False}, False, None
        try:
            plan = self._plan(inputs)
        except BuildError as exc:
            return {"rc": 1, "stdout": "", "error": [exc.message, exc.file, exc.line], "injected": False}, False, None
        files = sorted(inputs.files)
        key = self._input_key(target, files, plan.digest if plan is not None else "")
        hit = self.cache.get(key)
        if hit is not None:
            return hit, True, key
        remote = {"unfetched": [u.to_json() for u in plan.unfetched], "placed": [p.to_json() for p in plan.placed]} \
            if plan is not None else {}
        scratch = Path(tempfile.mkdtemp(prefix="infra-review-build-"))
        try:
            try:
                self._prescan(target, inputs, plan.nodes if plan is not None else 0)
                # Called without a plan when there is none, so subclasses overriding the three-argument
                # form (bench/bruteforce.py, tests) keep working for repositories without remote entries.
                injected = (self._materialize(target, files, scratch, plan) if plan is not None
                            else self._materialize(target, files, scratch))
            except BuildError as exc:
                return {"rc": 1, "stdout": "", "error": [exc.message, exc.file, exc.line], "injected": False,
                        **remote}, False, None
            res = run_build(self.kustomize, scratch, target.path, stop=self.deadline,
                            unrestricted=self.unrestricted(target))
            error = None
            if res.returncode != 0:
                message = clean_error(res.stderr, scratch, res.returncode)
                error = [message, *locate_error(self.model.tree, target.path, message)]
                if plan is not None:
                    error = _remote_error(message, error, plan)
            value = {"rc": res.returncode, "stdout": res.stdout, "injected": injected, "error": error, **remote,
                     "unbuilt": res.returncode != 0 and not res.stopped and plan is not None and bool(plan.unfetched)}
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return value, False, None if res.stopped else key

    # --- public --------------------------------------------------------------------------
    def render(self, target: Target) -> Rendered:
        """One target's rendering; Stopped when the renderer's deadline says the work must stop."""
        early = self._early.pop(id(target), None)
        return early.result() if early is not None else self._render(target)

    def _render(self, target: Target) -> Rendered:
        self.deadline.check()
        start = time.perf_counter()
        raw, cached, key = self._raw_build(target)
        keep = not cached and key is not None
        out = Rendered(target, cached=cached)
        out.unfetched = [Unfetched.from_json(u) for u in raw.get("unfetched") or []]
        placed = [Placed.from_json(p) for p in raw.get("placed") or []]
        if raw["rc"] != 0 and raw.get("unbuilt"):
            out.unbuilt = raw["error"][0]  # built without what Flux would fetch, it fails: unchecked, no error
        elif raw["rc"] != 0:
            msg, file, line = raw["error"]
            out.error = BuildError(msg, file, line)
        else:
            out.output, pairs = _read(raw, target.path)
            if isinstance(pairs, YamlError):
                out.error = BuildError(f"kustomize output could not be read: {pairs.message}",
                                       self.model.tree.kustomization_file(target.path) or target.path)
            else:
                out.objects = self._objects(target, pairs, placed)
                if keep:
                    raw = _with_parsed(raw, out.text, pairs)
            if out.ok and target.flux is not None and self.flux_emulation:
                out, made = flux.post_build(self.model, out, raw.get("post"))
                if made is not None and key is not None:
                    raw, keep = {**raw, "post": made}, True  # kept beside the build: substitution is not redone
        if keep and key is not None:
            self.cache.put(key, raw)
        out.seconds = time.perf_counter() - start
        return out

    def _objects(self, target: Target, pairs: Pairs, placed: list[Placed]) -> list[RenderedObject]:
        from bot.render.provenance import Provenance

        prov = Provenance(self.model, target, flux=self.flux_emulation, remote=placed or None)
        objects: list[RenderedObject] = []
        for doc, origin in pairs:
            ro = RenderedObject(doc, ResourceId.of(doc), target)
            ro.locate = prov.locator(ro, origin)
            ro.places = prov.placer(ro, origin)
            objects.append(ro)
        return objects

    def prefetch(self, targets: list[Target]) -> None:
        """Start building, in the background, the targets whose builds the cache lacks, while the caller
        works out which of them it needs (a whole check's verdicts); `render` of such a target waits for
        its build. One not asked for is built for the cache; `finish` waits for those."""
        misses = [t for t in targets if not self._cached(t)]
        if not misses:
            return
        self._pool = ThreadPoolExecutor(max_workers=self.jobs)
        self._early.update({id(t): self._pool.submit(self._render, t) for t in misses})

    def finish(self) -> None:
        """Wait for the builds `prefetch` started that nobody asked for."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._early.clear()

    def render_all(self, targets: list[Target] | tuple[Target, ...],
                   on_done: Callable[[Rendered], None] | None = None) -> list[Rendered]:
        """Render in parallel (the work is in the subprocess, so threads suffice), in the given order;
        `on_done` hears of each as it finishes."""
        done: dict[int, Rendered] = {}
        todo = {i for i, t in enumerate(targets) if not self._cached(t)}
        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            futures = {pool.submit(self.render, targets[i]): i for i in sorted(todo)}
            for i, target in enumerate(targets):  # what the cache holds, meanwhile
                if i not in todo:
                    done[i] = self._tell(self.render(target), on_done)
            for future in as_completed(futures):
                done[futures[future]] = self._tell(future.result(), on_done)
        return [done[i] for i in range(len(targets))]

    def _cached(self, target: Target) -> bool:
        """Whether the target's build is in the cache (then reading it is Python work, done on the calling
        thread: threads would only contend for the interpreter, each file read waiting its turn)."""
        key = self.input_key(target)
        return key is not None and self.cache.get(key) is not None

    def input_key(self, target: Target) -> str | None:
        """The key the target's build is cached under; None when its inputs are in error or name remote
        resources (what those bring is known only once fetched)."""
        inputs = self.model.inputs(target)
        if inputs.errors or inputs.remote:
            return None
        return self._input_key(target, sorted(inputs.files))

    @staticmethod
    def _tell(rendered: Rendered, on_done: Callable[[Rendered], None] | None) -> Rendered:
        if on_done is not None:
            on_done(rendered)
        return rendered
