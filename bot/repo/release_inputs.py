"""What the HelmReleases of a target read beyond its build: for `affected()`, before anything renders.

A HelmRelease is rendered from more than its own file: the chart folder of this repository, its
`valuesFiles`, the source object it names (HelmRepository, OCIRepository, HelmChart, GitRepository),
and the ConfigMaps and Secrets of its `valuesFrom`, wherever in the repository they are defined.
A change to any of those changes what the release installs, so it affects exactly the targets whose
HelmReleases read it. Objects are matched by kind and name (namespaces are what Flux sets later, so
matching without them errs on the side of rendering).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot.model import as_dict, as_list
from bot.repo.tree import PathEscape
from bot.yamlpos import YamlError

if TYPE_CHECKING:
    from bot.model import Target
    from bot.repo.discover import RepoModel

HELM_RELEASE = ("helm.toolkit.fluxcd.io", "HelmRelease")


@dataclass
class ReleaseInputs:
    files: set[str] = field(default_factory=set)  # values files, files defining sources and values objects
    folders: set[str] = field(default_factory=set)  # chart folders of this repository

    def touched_by(self, path: str) -> bool:
        return path in self.files or any(path == f or path.startswith(f.rstrip("/") + "/") or f == "."
                                         for f in self.folders)


def _defined_in(model: RepoModel) -> dict[tuple[str, str], set[str]]:
    """(kind, name) → the files that define such an object; computed once per tree."""
    key = ("release-inputs", "defined-in")
    if key not in model.tree.memo:
        index: dict[tuple[str, str], set[str]] = {}
        for rel, obj in model.source_objects():
            name = as_dict(obj.get("metadata")).get("name")
            if name:
                index.setdefault((str(obj.get("kind")), str(name)), set()).add(rel)
        model.tree.memo[key] = index
    return model.tree.memo[key]  # type: ignore[return-value]


def release_inputs(model: RepoModel, target: Target) -> ReleaseInputs:
    """What the HelmReleases among the target's input files read (computed once per target)."""
    key = ("release-inputs", target.key)
    if key not in model.tree.memo:
        model.tree.memo[key] = _release_inputs(model, target)
    return model.tree.memo[key]  # type: ignore[return-value]


def _releases(model: RepoModel, files: set[str]) -> list[dict[str, Any]]:
    out = []
    for rel in sorted(files):
        if not rel.endswith((".yaml", ".yml")) or not model.tree.is_file(rel):
            continue
        try:
            docs = model.tree.docs(rel)
        except (YamlError, OSError):
            continue
        for doc in docs:
            data = doc.data
            if (isinstance(data, dict) and data.get("kind") == HELM_RELEASE[1]
                    and str(data.get("apiVersion", "")).startswith(HELM_RELEASE[0] + "/")):
                out.append(data)
    return out


def _release_inputs(model: RepoModel, target: Target) -> ReleaseInputs:
    out = ReleaseInputs()
    defined = _defined_in(model)
    for hr in _releases(model, model.inputs(target).files):
        spec = as_dict(hr.get("spec"))
        chart = as_dict(as_dict(spec.get("chart")).get("spec"))
        refs = [as_dict(chart.get("sourceRef")), as_dict(spec.get("chartRef"))]
        for ref in refs:
            if ref.get("name"):
                out.files |= defined.get((str(ref.get("kind") or ""), str(ref["name"])), set())
        source = refs[0]
        if chart.get("chart") and source.get("kind") == "GitRepository" and model._is_self("GitRepository",
                                                                                           str(source.get("name"))):
            try:
                out.folders.add(model.tree.resolve(".", str(chart["chart"]).lstrip("/") or "."))
            except PathEscape:
                pass
        for vf in as_list(chart.get("valuesFiles")):
            out.files.add(posixpath.normpath(str(vf).lstrip("/")))
        for entry in as_list(spec.get("valuesFrom")):
            entry = as_dict(entry)
            if entry.get("name"):
                out.files |= defined.get((str(entry.get("kind") or ""), str(entry["name"])), set())
        # A chart's own HelmChart names a source too.
        for rel in list(out.files):
            for helm_chart in _objects_of(model, rel, "HelmChart"):
                inner = as_dict(as_dict(helm_chart.get("spec")).get("sourceRef"))
                if inner.get("name"):
                    out.files |= defined.get((str(inner.get("kind") or ""), str(inner["name"])), set())
    return out


def _objects_of(model: RepoModel, rel: str, kind: str) -> list[dict[str, Any]]:
    try:
        return [d.data for d in model.tree.docs(rel) if isinstance(d.data, dict) and d.data.get("kind") == kind]
    except (YamlError, OSError):
        return []
