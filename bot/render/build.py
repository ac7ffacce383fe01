"""Render targets: scratch copy → (Flux generate) → kustomize build → strip → (Flux post-build).

The steps and their order follow the Flux kustomize-controller (generate → build → substitute).
Results are cached by the content hash of the target's inputs, so an unchanged target is never
rebuilt, and targets are rendered in parallel up to the core count.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.model import ResourceId, Target
from bot.objects import RenderedObject
from bot.render import flux
from bot.render.annotations import inject, own_origin, strip_output
from bot.render.kustomize import Kustomize, clean_error, find_kustomize, run_build
from bot.repo.discover import RepoModel
from bot.repo.kustomization import BuildError
from bot.repo.tree import KUSTOMIZATION_NAMES, PathEscape
from bot.yamlpos import YamlError, load_docs

CACHE_VERSION = "1"
MAX_INPUT_BYTES = 64 * 1024 * 1024


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
    """Raw build results keyed by input hash; a corrupt or missing entry is just a miss."""

    def __init__(self, directory: Path | None):
        self.directory = directory
        self.memory: dict[str, dict[str, Any]] = {}

    def get(self, key: str) -> dict[str, Any] | None:
        if key in self.memory:
            return self.memory[key]
        if self.directory is None:
            return None
        try:
            value = json.loads((self.directory / key[:2] / f"{key}.json").read_text())
        except (OSError, ValueError):
            return None
        self.memory[key] = value
        return value

    def put(self, key: str, value: dict[str, Any]) -> None:
        self.memory[key] = value
        if self.directory is None:
            return
        try:
            path = self.directory / key[:2] / f"{key}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(value))
            os.replace(tmp, path)
        except OSError:
            pass


class Renderer:
    """Renders the targets of one repository model with one Kustomize binary."""

    def __init__(self, model: RepoModel, kustomize: Kustomize | None = None, cache: DiskCache | None = None,
                 jobs: int | None = None, flux_emulation: bool = True):
        self.model = model
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

    def _materialize(self, target: Target, files: list[str], scratch: Path) -> tuple[bool, str]:
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
                raise BuildError(str(exc), rel) from None
            total += src.stat().st_size
            if total > MAX_INPUT_BYTES:
                raise BuildError(f"inputs exceed {MAX_INPUT_BYTES // 2**20} MiB", target.path)
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
                injected = self._materialize(target, files, scratch)
            except BuildError as exc:
                return {"rc": 1, "stdout": "", "error": [exc.message, exc.file, exc.line], "injected": False}, False
            res = run_build(self.kustomize, scratch, target.path if target.path != "." else ".")
            kfile = self.model.tree.kustomization_file(target.path) or target.path
            value = {"rc": res.returncode, "stdout": res.stdout, "injected": injected,
                     "error": None if res.returncode == 0 else [clean_error(res.stderr, scratch), kfile, None]}
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        if value["rc"] != 124:
            self.cache.put(key, value)
        return value, False

    # --- public --------------------------------------------------------------------------
    def render(self, target: Target) -> Rendered:
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

        prov = Provenance(self.model, target)
        objects: list[RenderedObject] = []
        docs = [d for d in load_docs(text, target.path) if isinstance(d.data, dict)]
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
