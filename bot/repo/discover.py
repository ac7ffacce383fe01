"""Discovery: kustomization directories, Flux objects, and the build targets Flux would apply.

Targets are each Flux Kustomization's `spec.path`, plus every overlay under `overlays/<env>/`
that no Flux Kustomization reaches (only the top-most such overlay: one that another unreached
overlay includes is built as part of it).
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from bot.model import FluxRef, Target, as_dict, as_list
from bot.repo.environments import env_from_path, overlay_env
from bot.repo.flux_spec import checked_spec
from bot.repo.graph import Graph, Inputs, touches
from bot.repo.kustomization import BuildError
from bot.repo.release_inputs import release_inputs
from bot.repo.tree import KUSTOMIZATION_NAMES, YAML_SUFFIXES, PathEscape, RepoTree
from bot.yamlpos import YamlDoc, YamlError

FLUX_KINDS = {
    "kustomize.toolkit.fluxcd.io": {"Kustomization"},
    "helm.toolkit.fluxcd.io": {"HelmRelease"},
    "source.toolkit.fluxcd.io": {"GitRepository", "OCIRepository", "HelmRepository", "Bucket", "HelmChart"},
    "source.extensions.fluxcd.io": {"ArtifactGenerator"},
}
BOOTSTRAP_SOURCE = "flux-system"


def flux_kind(obj: Any) -> str | None:
    if not isinstance(obj, dict):
        return None
    group = str(obj.get("apiVersion") or "").rpartition("/")[0]
    kind = obj.get("kind")
    return kind if kind in FLUX_KINDS.get(group, ()) else None


@dataclass
class RepoModel:
    """Everything known about one repository tree before rendering."""

    tree: RepoTree
    aliases: Mapping[str, str] | None = None
    default_environment: str | None = None
    yaml_errors: dict[str, YamlError] = field(default_factory=dict)
    env_override: Callable[[str], str | None] | None = None  # configured path globs win
    ignored: Callable[[str], bool] | None = None  # configured `ignore:` paths: nothing is discovered there

    @cached_property
    def graph(self) -> Graph:
        return Graph(self.tree)

    def _discoverable(self, rel: str) -> bool:
        return self.ignored is None or not self.ignored(rel)

    @cached_property
    def kustomization_dirs(self) -> tuple[str, ...]:
        dirs = {posixpath.dirname(f) or "." for f in self.tree.files
                if posixpath.basename(f) in KUSTOMIZATION_NAMES and self._discoverable(f)}
        return tuple(sorted(dirs))

    @cached_property
    def flux_objects(self) -> tuple[FluxRef, ...]:
        """Every Flux object of the tree. A file is parsed only when its text could hold one: every Flux
        API group has `fluxcd` in its name, which YAML can hide only behind a backslash escape."""
        out: list[FluxRef] = []
        for rel in self.tree.files:
            if not rel.endswith(YAML_SUFFIXES) or not self._discoverable(rel):
                continue
            if not self._may_hold_flux(rel):
                continue
            try:
                docs = self.tree.docs(rel)
            except YamlError as exc:
                self.yaml_errors[rel] = exc
                continue
            for doc in docs:
                kind = flux_kind(doc.data)
                if not kind:
                    continue
                meta = doc.data.get("metadata") if isinstance(doc.data.get("metadata"), dict) else {}
                spec, problems = checked_spec(kind, doc.data.get("spec"))
                name_span = doc.span(("metadata", "name"))
                out.append(FluxRef(kind, str(meta.get("name") or ""), str(meta.get("namespace") or ""),
                                   rel, name_span[0] if name_span else doc.line, spec, problems))
        return tuple(out)

    def _may_hold_flux(self, rel: str) -> bool:
        return self.may_name(rel, "fluxcd")  # in every Flux API group

    def may_name(self, rel: str, word: str) -> bool:
        """Whether a value of the file can hold `word`: written in its text, or behind a backslash
        escape (the only way YAML spells a character otherwise)."""
        try:
            text = self.tree.read_text(rel)
        except (YamlError, OSError):
            return True  # parsed, to say why it cannot be read
        return word in text or "\\" in text

    def flux_kustomizations(self) -> list[FluxRef]:
        return [f for f in self.flux_objects if f.kind == "Kustomization"]

    @cached_property
    def _git_repositories(self) -> dict[str, FluxRef]:
        return {f.name: f for f in self.flux_objects if f.kind == "GitRepository"}

    def _is_self(self, kind: str, name: str) -> bool:
        """Whether a source is this repository: the bootstrap GitRepository, one with the same URL,
        or a GitRepository the repo does not define (the usual `flux-system` sync)."""
        if kind != "GitRepository":
            return False
        repos = self._git_repositories
        boot = repos.get(BOOTSTRAP_SOURCE)
        mine = repos.get(name)
        if name == BOOTSTRAP_SOURCE or mine is None:
            return True
        return boot is not None and mine.spec.get("url") == boot.spec.get("url")

    def _unbootstrapped_self(self, kind: str, raw: str) -> bool:
        """In a repository without a bootstrap GitRepository (an app repo shipping its own Flux
        objects), a GitRepository source whose explicit path exists here is taken as this repo."""
        if kind != "GitRepository" or any(f.kind == "GitRepository" and f.name == BOOTSTRAP_SOURCE
                                          for f in self.flux_objects):
            return False
        path = raw.strip().lstrip("/")
        if path in ("", ".", "./"):
            return False
        try:
            return self.tree.is_dir(self.tree.resolve(".", path))
        except PathEscape:
            return False

    def _generators(self, artifact: str, near: str) -> list[FluxRef]:
        """ArtifactGenerators defining `artifact`, those in the same folder as `near` (the cluster's
        own) first: each cluster folder usually declares its own generator under the same name."""
        gens = [g for g in self.flux_objects if g.kind == "ArtifactGenerator" and any(
            isinstance(a, dict) and a.get("name") == artifact for a in g.spec.get("artifacts") or [])]
        here = [g for g in gens if posixpath.dirname(g.file) == posixpath.dirname(near)]
        return here or gens

    def _artifact_path(self, artifact: str, path: str, near: str = "") -> str | None:
        """Map a path inside an ArtifactGenerator's artifact back to the repository path it copies."""
        for gen in self._generators(artifact, near):
            aliases = {s.get("alias"): s for s in gen.spec.get("sources") or [] if isinstance(s, dict)}
            for art in gen.spec.get("artifacts") or []:
                if not isinstance(art, dict) or art.get("name") != artifact:
                    continue
                for copy in art.get("copy") or []:
                    src, dst = str(copy.get("from") or ""), str(copy.get("to") or "")
                    alias, _, rest = src.lstrip("@").partition("/")
                    source = aliases.get(alias) or {}
                    if not self._is_self(str(source.get("kind")), str(source.get("name"))):
                        continue
                    src_dir = rest.split("*", 1)[0].rstrip("/")
                    dst_dir = dst.removeprefix("@artifact").strip("/")
                    norm = posixpath.normpath(path.strip("/")) if path.strip("./") else ""
                    if dst_dir == "" or norm == dst_dir or norm.startswith(dst_dir + "/"):
                        return posixpath.normpath(posixpath.join(src_dir, norm[len(dst_dir):].lstrip("/")))
        return None

    def flux_path(self, ref: FluxRef) -> str | None:
        """Repository-relative directory a Flux Kustomization builds, or None when its source is not
        this repository (another GitRepository, an OCIRepository, a Bucket)."""
        raw = ref.spec.get("path") or "./"
        source = ref.spec.get("sourceRef") or {}
        if not isinstance(raw, str) or not isinstance(source, dict):
            return None
        kind, name = str(source.get("kind") or "GitRepository"), str(source.get("name") or "")
        if kind == "ExternalArtifact":
            raw = self._artifact_path(name, raw, ref.file)
            if raw is None:
                return None
        elif not self._is_self(kind, name) and not self._unbootstrapped_self(kind, raw):
            return None
        try:
            return self.tree.resolve(".", raw.lstrip("/") or ".")
        except PathEscape:  # `../x`, a symlink out: Flux builds the path confined to the source
            try:
                return self.tree.confine(raw)
            except PathEscape:
                return None

    def environment_of(self, path: str, flux: FluxRef | None) -> str | None:
        return self.named_environment(path, flux) or self.default_environment

    def named_environment(self, path: str, flux: FluxRef | None) -> str | None:
        """The environment the config's paths, the cluster folder or the overlay folder name; None
        when only the fallback (`default_environment`) applies."""
        if self.env_override is not None:
            configured = self.env_override(path) or (self.env_override(flux.file) if flux else None)
            if configured:
                return configured
        if flux is not None:
            return env_from_path(flux.file, self.aliases, ("clusters",)) or env_from_path(path, self.aliases)
        return overlay_env(path, self.aliases) or env_from_path(path, self.aliases)

    def substitute_sources(self, ref: FluxRef) -> list[str]:
        """Files defining the ConfigMaps/Secrets a Flux Kustomization substitutes from."""
        wanted = {(s.get("kind"), s.get("name")) for s in ((ref.spec.get("postBuild") or {}).get("substituteFrom") or [])
                  if isinstance(s, dict)}
        if not wanted:
            return []
        return sorted({rel for key in wanted for rel in self._objects_by_kind_name.get(key, ())})

    @cached_property
    def _objects_by_kind_name(self) -> dict[tuple[Any, Any], set[str]]:
        index: dict[tuple[Any, Any], set[str]] = {}
        for rel, obj in self.source_objects():
            index.setdefault((obj.get("kind"), (obj.get("metadata") or {}).get("name")), set()).add(rel)
        return index

    def source_objects(self, kind: str | None = None) -> Iterable[tuple[str, dict]]:
        """Every Kubernetes object defined in a YAML file of the tree (for lookups by kind/name); with
        `kind`, only files whose text names it are parsed (all the others cannot hold one)."""
        for rel in self.tree.files:
            if (rel.endswith(YAML_SUFFIXES) and posixpath.basename(rel) not in KUSTOMIZATION_NAMES
                    and self._discoverable(rel) and (kind is None or self.may_name(rel, kind))):
                try:
                    docs = self.tree.docs(rel)
                except YamlError:
                    continue
                for doc in docs:
                    if isinstance(doc.data, dict) and doc.data.get("kind"):
                        yield rel, doc.data

    def inputs(self, target: Target) -> Inputs:
        """Every file the target's build reads (the Flux file itself included); computed once."""
        key = ("inputs", target.key)
        if key not in self.tree.memo:
            self.tree.memo[key] = self._inputs(target)
        return self.tree.memo[key]  # type: ignore[return-value]

    def _inputs(self, target: Target) -> Inputs:
        if target.flux is None:
            return self.graph.kustomization_inputs(target.path)
        spec = target.flux.spec
        listed = as_list(spec.get("components"))
        comps = [c for c in listed if isinstance(c, str)]
        doc = self.flux_document(target.flux)
        spans = [doc.span(("spec", "components", i)) if doc else None for i, c in enumerate(listed) if isinstance(c, str)]
        lines = [span[0] if span else None for span in spans]
        inputs = Inputs()
        inputs.merge(self.graph.flux_inputs(target.path, comps, self.substitute_sources(target.flux),
                                            target.flux.file, lines))
        inputs.files.add(target.flux.file)
        inputs.files.update(self.source_files(target.flux))
        return inputs

    def flux_document(self, ref: FluxRef) -> YamlDoc | None:
        """The document defining a Flux object (found by the line of its name), for field lines."""
        try:
            docs = self.tree.docs(ref.file)
        except YamlError:
            return None
        for doc in docs:
            span = doc.span(("metadata", "name"))
            if isinstance(doc.data, dict) and (span[0] if span else doc.line) == ref.line:
                return doc
        return None

    def weight(self, target: Target, cost: Callable[[str], int]) -> int:
        """What the target's build holds (bot.repo.graph.Graph.weight), its Flux components included."""
        memo: dict[str, int] = {}
        if target.flux is None:
            return self.graph.weight(target.path, cost, memo)
        total = self.graph.path_weight(target.path, cost, memo)
        for comp in target.flux.spec.get("components") or []:
            try:
                rel = self.tree.resolve(target.path, comp) if isinstance(comp, str) else None
            except PathEscape:
                rel = None
            if rel is not None and self.tree.kustomization_file(rel):
                total += self.graph.weight(rel, cost, memo)
        return total

    def declared_paths(self) -> list[str]:
        """The `spec.path` of each Flux Kustomization whose source can be this repository, normalised
        and not yet checked against the tree (`./` and paths holding `${VAR}` left out: they say
        nothing about where the repository root is). What bot.repo.tree.choose_root counts."""
        unbootstrapped = not any(f.kind == "GitRepository" and f.name == BOOTSTRAP_SOURCE for f in self.flux_objects)
        out: list[str] = []
        for ref in self.flux_kustomizations():
            raw = ref.spec.get("path") or "./"
            source = ref.spec.get("sourceRef") or {}
            if not isinstance(raw, str) or not isinstance(source, dict) or "${" in raw:
                continue
            kind, name = str(source.get("kind") or "GitRepository"), str(source.get("name") or "")
            if kind == "ExternalArtifact":
                mapped = self._artifact_path(name, raw, ref.file)
                if mapped is None:
                    continue
                raw = mapped
            elif not (self._is_self(kind, name) or (kind == "GitRepository" and unbootstrapped)):
                continue
            path = posixpath.normpath(raw.strip().lstrip("/") or ".")
            if path != "." and path != ".." and not path.startswith("../"):
                out.append(path)
        return out

    def source_files(self, ref: FluxRef) -> set[str]:
        """Files whose Flux sources decide where a Flux Kustomization's path is: the GitRepository it
        names (and the bootstrap one it is compared with by URL), or for an ExternalArtifact the
        ArtifactGenerator defining that artifact and the GitRepositories it copies from."""
        source = as_dict(ref.spec.get("sourceRef"))
        kind, name = str(source.get("kind") or "GitRepository"), str(source.get("name") or "")
        repos: set[str] = set()
        out: set[str] = set()
        if kind == "GitRepository":
            repos.add(name)
        elif kind == "ExternalArtifact":
            for gen in self._generators(name, ref.file):
                out.add(gen.file)
                repos |= {str(s.get("name")) for s in gen.spec.get("sources") or []
                          if isinstance(s, dict) and s.get("kind") == "GitRepository"}
        if repos - {BOOTSTRAP_SOURCE}:
            repos.add(BOOTSTRAP_SOURCE)
        for name in repos:
            if not (name == BOOTSTRAP_SOURCE and repos == {BOOTSTRAP_SOURCE}):
                out |= self._git_repository_files.get(name, set())
        return out

    @cached_property
    def _git_repository_files(self) -> dict[str, set[str]]:
        """The files defining a GitRepository, by its name (asked for every Flux Kustomization)."""
        index: dict[str, set[str]] = {}
        for f in self.flux_objects:
            if f.kind == "GitRepository":
                index.setdefault(f.name, set()).add(f.file)
        return index

    @cached_property
    def targets(self) -> tuple[Target, ...]:
        out: list[Target] = []
        reached: set[str] = set()
        for ref in self.flux_kustomizations():
            path = self.flux_path(ref)
            if path is None or not self.tree.is_dir(path):
                continue
            target = Target(path, self.environment_of(path, ref), ref)
            out.append(target)
            reached |= self.inputs(target).dirs
        unreached = [d for d in self.kustomization_dirs if overlay_env(d, self.aliases) and d not in reached]
        included: set[str] = set()
        for d in unreached:
            # Folders in a cycle with `d` include it as much as it includes them: each stays a target
            # (a build-error naming the cycle) rather than all of them disappearing.
            included |= self.graph.kustomization_inputs(d).dirs - self.graph.cycle_mates(d)
        for d in unreached:
            if d not in included:
                out.append(Target(d, self.environment_of(d, None), None))
        return tuple(sorted(out, key=lambda t: (t.path, t.key)))

    def unreached_overlays(self) -> list[Target]:
        """Overlays that no Flux Kustomization applies (they could only be applied by hand)."""
        return [t for t in self.targets if t.flux is None]

    def affected(self, changed: Iterable[str] = (), deleted: Iterable[str] = (),
                 renamed: Iterable[tuple[str, str]] = (), previous: RepoModel | None = None) -> list[Target]:
        """Targets whose rendered output a change to these paths can alter (renames count both paths),
        HelmReleases included: their charts, values files and the sources they name
        (bot.repo.release_inputs).

        With `previous` (the other side of the change), a target that did not exist there is
        affected too: deleting a Flux Kustomization turns the overlay it applied into a target of
        its own, which no file of the overlay itself reveals.
        """
        paths = set(changed) | set(deleted)
        for old, new in renamed:
            paths |= {old, new}
        before = {t.key: t for t in previous.targets} if previous is not None else None
        out = []
        for t in self.targets:
            if before is not None and t.key not in before:
                out.append(t)
                continue
            relevant = paths
            earlier = before[t.key].flux if before is not None else None
            if (earlier is not None and t.flux is not None and earlier.spec == t.flux.spec
                    and t.flux.file not in self.substitute_sources(t.flux) + sorted(self.source_files(t.flux))):
                # Its Flux Kustomization is unchanged and nothing else it reads lives in that file:
                # an edit elsewhere in the file cannot change the output.
                relevant = paths - {t.flux.file}
            inputs = self.inputs(t)
            # A changed file the build reads is the common answer: a set intersection finds it without
            # asking every changed path of a large change about every target.
            if not inputs.files.isdisjoint(relevant) or any(touches(inputs, p) for p in relevant):
                out.append(t)
            elif any(release_inputs(self, t).touched_by(p) for p in paths):
                out.append(t)
        return out

    def build_errors(self, target: Target) -> list[BuildError]:
        return list(self.inputs(target).errors)
