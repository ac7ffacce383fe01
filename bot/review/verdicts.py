"""What checking one environment concluded, kept by everything it could have read: a whole-repository
check after a change renders and judges again only the environments the change can reach.

An environment's verdict depends on its targets' builds (their render keys hash every input), on
Flux's post-build and on what its rules read across the repository: the Flux objects, the build
graph, which files define a Service, a CustomResourceDefinition, a ConfigMap or a Secret, and the list
of files. Its key is therefore its targets' render keys plus the content of every file of the
repository except the files that only other environments' targets read and that hold none of those
facts. A production patch leaves the key of staging alone; a kustomization file, a Flux object, a
Service or a new file changes every key.

Kept only for environments whose output is the repository's alone: no remote resources, and
HelmReleases only of the repository's own charts (their files are in every key), rendered by the same
Helm engine. The code and the configuration are part of every key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from bot.config import Config
from bot.diskcache import BoundedFolder
from bot.model import Finding, Origin, ResourceId, Suggestion, Target
from bot.publish.report import TargetStatus
from bot.render.build import Rendered, Renderer
from bot.repo.discover import RepoModel
from bot.repo.tree import KUSTOMIZATION_NAMES, YAML_SUFFIXES
from bot.yamlpos import YamlError

VERDICT_FORMAT = "1"
# Kinds some rule or Flux's post-build looks up across the whole repository (route-backend's Services,
# invalid-manifest's CRDs, substituteFrom's ConfigMaps and Secrets): a file holding one concerns every
# environment.
REPOSITORY_KINDS = frozenset({"Service", "CustomResourceDefinition", "ConfigMap", "Secret"})
FLUX_GROUP = "fluxcd.io"
_WORDS = (*REPOSITORY_KINDS, "fluxcd")
_CODE = Path(__file__).resolve().parents[2]


@cache
def code_digest() -> str:
    """The engine's own version: every file of `bot/` and `rules/` (by name, size and modification
    time) and the packages whose data the rules read."""
    h = hashlib.sha256()
    for package in ("bot", "rules"):
        for path in sorted((_CODE / package).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                info = path.stat()
                h.update(f"{path.relative_to(_CODE)}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    for dist in ("kubernetes-validate", "jsonschema-rs", "PyYAML"):
        try:
            h.update(f"{dist}={metadata.version(dist)}\n".encode())
        except metadata.PackageNotFoundError:
            h.update(f"{dist}=-\n".encode())
    return h.hexdigest()


def config_digest(config: Config) -> str:
    """The configuration, in a form that does not depend on set order or hash seeds."""
    def plain(value: Any) -> Any:
        if isinstance(value, (set, frozenset)):
            return sorted(plain(v) for v in value)
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return hashlib.sha256(json.dumps(plain(dataclasses.asdict(config)), sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class Verdict:
    """One environment's part of a check, enough to report it without rendering it."""

    statuses: list[TargetStatus]
    target_findings: list[list[Finding]]  # per target, in the order of the key's targets
    env_findings: list[Finding]  # its environment rules' findings
    third_party: int = 0
    kinds: list[tuple[str, str]] = field(default_factory=list)  # (apiVersion, kind) of each object it applies
    crds: list[dict[str, Any]] = field(default_factory=list)  # the CustomResourceDefinitions among them
    releases: list[tuple[str, int]] = field(default_factory=list)  # each HelmRelease's status and objects
    helm: str = ""  # the Helm engine that rendered them: another one is another verdict

    def to_json(self) -> dict[str, Any]:
        return {"statuses": [dataclasses.asdict(s) for s in self.statuses],
                "target_findings": [[finding_data(f) for f in fs] for fs in self.target_findings],
                "env_findings": [finding_data(f) for f in self.env_findings], "third_party": self.third_party,
                "kinds": [list(k) for k in self.kinds], "crds": self.crds,
                "releases": [list(r) for r in self.releases], "helm": self.helm}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Verdict:
        return cls([TargetStatus(**s) for s in data["statuses"]],
                   [[finding_of(f) for f in fs] for fs in data["target_findings"]],
                   [finding_of(f) for f in data["env_findings"]], int(data["third_party"]),
                   [(str(a), str(k)) for a, k in data["kinds"]], list(data["crds"]),
                   [(str(s), int(n)) for s, n in data["releases"]], str(data["helm"]))


_FINDING = tuple(f.name for f in dataclasses.fields(Finding))
_PARTS: dict[str, tuple[type, tuple[str, ...]]] = {
    name: (kind, tuple(f.name for f in dataclasses.fields(kind)))
    for name, kind in (("resource", ResourceId), ("origin", Origin), ("suggestion", Suggestion))}


def finding_data(f: Finding) -> dict[str, Any]:
    """Every field of a finding, as JSON holds it (Finding.to_json is the report's view of it); by
    field name rather than dataclasses.asdict, which copies deeply and was a fifth of a warm check."""
    data = {name: getattr(f, name) for name in _FINDING}
    for name, (_kind, fields) in _PARTS.items():
        part = data[name]
        data[name] = [getattr(part, n) for n in fields] if part is not None else None
    data["places"] = [list(p) for p in f.places]
    return data


def finding_of(data: dict[str, Any]) -> Finding:
    values = {name: data[name] for name in _FINDING}
    for name, (kind, _fields) in _PARTS.items():
        values[name] = kind(*values[name]) if values[name] is not None else None
    values["places"] = tuple((str(f), int(a), int(b)) for f, a, b in values["places"] or ())
    return Finding(**values)


def verdict_of(rendered: list[Rendered], statuses: list[TargetStatus], target_findings: list[list[Finding]],
               env_findings: list[Finding], third_party: int, helm: str) -> Verdict | None:
    """The verdict of an environment just checked (its targets' renderings, statuses and findings, in
    check order; `helm`: the engine's version); None when it is not to be kept: remote resources, or a
    HelmRelease whose chart is not the repository's own (fetched, unavailable: what it renders depends
    on more than the repository)."""
    releases = [release for r in rendered for release in r.releases]
    if any(r.unfetched or r.unbuilt for r in rendered) or any(
            release.status == "unavailable" or (release.chart is not None and not release.chart.in_repository)
            for release in releases):
        return None
    objects = {(r.target.environment, ro.id): ro.obj for r in rendered if r.ok for ro in r.applied}
    kinds = [(str(o.get("apiVersion")), str(o.get("kind"))) for o in objects.values()]
    crds = [o for o in objects.values() if o.get("kind") == "CustomResourceDefinition"]
    return Verdict(statuses, target_findings, env_findings, third_party, kinds, crds,
                   [(release.status, len(release.objects)) for release in releases], helm if releases else "")


class Verdicts:
    """The verdicts of one repository's environments, read from and written to `folder`."""

    def __init__(self, model: RepoModel, config: Config, renderer: Renderer, folder: BoundedFolder,
                 read_by: Mapping[str, frozenset[str]]):
        """`read_by`: each file the repository's targets read, with their environments (pipeline.readers)."""
        self.model, self.renderer, self.folder, self.read_by = model, renderer, folder, read_by
        self._static = json.dumps([VERDICT_FORMAT, code_digest(), config_digest(config), renderer.kustomize.version,
                                   list(model.tree.files)])

    def concerns_all(self, rel: str) -> bool:
        """Whether a file bears on every environment whatever reads it: a kustomization, or YAML holding a
        Flux object or a kind looked up across the repository (or that cannot be read)."""
        if posixpath.basename(rel) in KUSTOMIZATION_NAMES:
            return True
        if not rel.endswith(YAML_SUFFIXES) or not any(self.model.may_name(rel, word) for word in _WORDS):
            return False
        try:
            docs = self.model.tree.docs(rel)
        except (YamlError, OSError):
            return True
        return any(not isinstance(d.data, dict) or d.data.get("kind") in REPOSITORY_KINDS
                   or FLUX_GROUP in str(d.data.get("apiVersion") or "") for d in docs)

    def key(self, env: str, targets: Iterable[Target]) -> str | None:
        """The key of `env`'s verdict over `targets` (its targets, in check order); None when it is not
        to be kept (a target whose build names remote resources or cannot start)."""
        h = hashlib.sha256(self._static.encode())
        h.update(env.encode() + b"\0")
        for t in targets:
            render = self.renderer.input_key(t)
            if render is None:
                return None
            h.update(json.dumps([t.path, t.key, t.flux.file if t.flux else None, render]).encode())
        for rel in self.model.tree.files:
            others = self.read_by.get(rel)
            if others and env not in others and not self.concerns_all(rel):
                continue
            h.update(rel.encode() + b"\0" + self.renderer.digest(rel))
        return h.hexdigest()

    def get(self, key: str) -> Verdict | None:
        data = self.folder.read(key)
        if data is None:
            return None
        try:
            return Verdict.from_json(json.loads(data))
        except (ValueError, TypeError, KeyError):
            return None

    def put(self, key: str, verdict: Verdict) -> None:
        self.folder.write(key, json.dumps(verdict.to_json(), ensure_ascii=False).encode())
