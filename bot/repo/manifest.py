"""Flux objects as typed models, parsed once, in Flux's own vocabulary (after flux-local's manifest).

A model is built from an object's `spec` after bot.repo.flux_spec removed the fields of the wrong
type, so every attribute here has the type Flux's CRD gives it. Defaults are Flux's: a
HelmRelease's `valuesKey` is `values.yaml`, a source reference without a namespace is in the
namespace of the object that holds it, `install.crds` is `Create`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from bot.model import FluxRef, as_dict, as_list
from bot.repo.flux_spec import SpecProblem, checked_spec

RELEASE_NAME_MAX = 53  # Helm's limit on a release name
DEFAULT_VALUES_KEY = "values.yaml"


@dataclass(frozen=True)
class CrossRef:
    """A reference to another object by kind and name (`sourceRef`, `chartRef`, `dependsOn`)."""

    kind: str
    name: str
    namespace: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}" if self.namespace else f"{self.kind}/{self.name}"


def _ref(raw: Any, namespace: str, default_kind: str = "") -> CrossRef | None:
    data = as_dict(raw)
    if not data.get("name"):
        return None
    return CrossRef(str(data.get("kind") or default_kind), str(data["name"]), str(data.get("namespace") or namespace))


@dataclass(frozen=True)
class Kustomization:
    """A Flux Kustomization's spec (kustomize.toolkit.fluxcd.io), as the kustomize-controller reads it.
    `prune` and `wait` are None when unset; `post_build` is the raw `postBuild` mapping
    (bot.render.substitute reads it)."""

    name: str
    namespace: str
    path: str = ""
    source: CrossRef | None = None
    target_namespace: str = ""
    patches: tuple[dict[str, Any], ...] = ()
    components: tuple[str, ...] = ()
    patches_strategic_merge: tuple[Any, ...] = ()
    patches_json6902: tuple[dict[str, Any], ...] = ()
    images: tuple[dict[str, Any], ...] = ()
    common_labels: dict[str, Any] = field(default_factory=dict)
    common_annotations: dict[str, Any] = field(default_factory=dict)
    post_build: dict[str, Any] | None = None
    prune: bool | None = None
    wait: bool | None = None
    interval: str = ""
    health_checks: tuple[Any, ...] = ()

    @property
    def edits_kustomization(self) -> bool:
        """Whether the controller writes anything into the kustomization before the build."""
        return bool(self.target_namespace or self.patches or self.components or self.patches_strategic_merge
                    or self.patches_json6902 or self.images)

    @property
    def common_metadata(self) -> bool:
        return bool(self.common_labels or self.common_annotations)


def kustomization_of(spec: dict[str, Any], name: str = "", namespace: str = "") -> Kustomization:
    """The model of a Kustomization spec that bot.repo.flux_spec has already checked (FluxRef.spec)."""
    common = as_dict(spec.get("commonMetadata"))
    post = spec.get("postBuild")
    return Kustomization(
        name=name, namespace=namespace, path=str(spec.get("path") or ""),
        source=_ref(spec.get("sourceRef"), namespace),
        target_namespace=str(spec.get("targetNamespace") or ""),
        patches=tuple(p for p in as_list(spec.get("patches")) if isinstance(p, dict)),
        components=tuple(str(c) for c in as_list(spec.get("components"))),
        patches_strategic_merge=tuple(as_list(spec.get("patchesStrategicMerge"))),
        patches_json6902=tuple(p for p in as_list(spec.get("patchesJson6902")) if isinstance(p, dict)),
        images=tuple(i for i in as_list(spec.get("images")) if isinstance(i, dict)),
        common_labels=as_dict(common.get("labels")), common_annotations=as_dict(common.get("annotations")),
        post_build=post if isinstance(post, dict) else None,
        prune=spec["prune"] if isinstance(spec.get("prune"), bool) else None,
        wait=spec["wait"] if isinstance(spec.get("wait"), bool) else None,
        interval=str(spec.get("interval") or ""), health_checks=tuple(as_list(spec.get("healthChecks"))))


def kustomization(ref: FluxRef) -> Kustomization:
    """The model of a Flux Kustomization found in the repository. Not cached by `ref`: a FluxRef's
    identity leaves its spec out, and the two sides of a review hold the same ref with other specs."""
    return kustomization_of(ref.spec, ref.name, ref.namespace)


@dataclass(frozen=True)
class ValuesReference:
    """One `valuesFrom` entry, with its index in the list (for its line)."""

    index: int
    kind: str
    name: str
    values_key: str = DEFAULT_VALUES_KEY
    target_path: str = ""
    optional: bool = False


@dataclass(frozen=True)
class HelmChartTemplate:
    """`spec.chart.spec`: the chart by name (and version) in a source."""

    chart: str
    version: str
    source: CrossRef | None
    values_files: tuple[str, ...] = ()


@dataclass(frozen=True)
class HelmRelease:
    name: str
    namespace: str
    chart: HelmChartTemplate | None = None
    chart_ref: CrossRef | None = None
    release_name_field: str = ""
    target_namespace: str = ""
    values: dict[str, Any] = field(default_factory=dict)
    values_from: tuple[ValuesReference, ...] = ()
    post_renderers: tuple[dict[str, Any], ...] = ()  # each `postRenderers[].kustomize`
    install_crds: str = "Create"
    test_enable: bool = False  # `spec.test.enable`: Helm's test hooks run after install and upgrade
    suspend: bool = False
    problems: tuple[SpecProblem, ...] = ()

    @property
    def release_name(self) -> str:
        """`spec.releaseName`, else `[<targetNamespace>-]<name>`, shortened as helm-controller does
        past Helm's 53 characters (the first 40, a dash, 12 hex digits of its SHA-256)."""
        name = self.release_name_field or (f"{self.target_namespace}-{self.name}" if self.target_namespace
                                           else self.name)
        if len(name) <= RELEASE_NAME_MAX:
            return name
        return f"{name[:RELEASE_NAME_MAX - 13]}-{hashlib.sha256(name.encode()).hexdigest()[:12]}"

    @property
    def release_namespace(self) -> str:
        return self.target_namespace or self.namespace

    @property
    def include_crds(self) -> bool:
        """Whether installing applies the chart's `crds/` folder (`Skip` leaves it out)."""
        return self.install_crds != "Skip"

    @property
    def source(self) -> CrossRef | None:
        return self.chart.source if self.chart is not None else self.chart_ref


def helm_release(name: str, namespace: str, spec: Any) -> HelmRelease:
    clean, problems = checked_spec("HelmRelease", spec)
    chart_spec = as_dict(as_dict(clean.get("chart")).get("spec"))
    chart = None
    if chart_spec.get("chart"):
        chart = HelmChartTemplate(
            chart=str(chart_spec["chart"]), version=str(chart_spec.get("version") or ""),
            source=_ref(chart_spec.get("sourceRef"), namespace),
            values_files=tuple(str(v) for v in as_list(chart_spec.get("valuesFiles")) if v))
    values_from = tuple(
        ValuesReference(i, str(v.get("kind") or ""), str(v.get("name") or ""),
                        str(v.get("valuesKey") or DEFAULT_VALUES_KEY), str(v.get("targetPath") or ""),
                        bool(v.get("optional")))
        for i, v in enumerate(as_list(clean.get("valuesFrom"))) if isinstance(v, dict))
    renderers = tuple(as_dict(p.get("kustomize")) for p in as_list(clean.get("postRenderers"))
                      if isinstance(p, dict) and isinstance(p.get("kustomize"), dict))
    return HelmRelease(
        name=name, namespace=namespace, chart=chart, chart_ref=_ref(clean.get("chartRef"), namespace),
        release_name_field=str(clean.get("releaseName") or ""),
        target_namespace=str(clean.get("targetNamespace") or ""),
        values=as_dict(clean.get("values")), values_from=values_from, post_renderers=renderers,
        install_crds=str(as_dict(clean.get("install")).get("crds") or "Create"),
        test_enable=bool(as_dict(clean.get("test")).get("enable")),
        suspend=bool(clean.get("suspend")), problems=problems)


@dataclass(frozen=True)
class HelmRepository:
    name: str
    namespace: str
    url: str
    type: str = "default"  # or "oci"

    @property
    def is_oci(self) -> bool:
        return self.type == "oci" or self.url.startswith("oci://")


@dataclass(frozen=True)
class OCIRepository:
    name: str
    namespace: str
    url: str
    tag: str = ""
    semver: str = ""
    digest: str = ""


@dataclass(frozen=True)
class GitRepository:
    name: str
    namespace: str
    url: str


@dataclass(frozen=True)
class HelmChart:
    """source-controller's HelmChart: what a HelmRelease's `chartRef` may name."""

    name: str
    namespace: str
    template: HelmChartTemplate


Source = HelmRepository | OCIRepository | GitRepository | HelmChart


def source(kind: str, name: str, namespace: str, spec: Any) -> Source | None:
    """The typed model of a source object, None for kinds a chart cannot come from."""
    clean, _ = checked_spec(kind, spec)
    url = str(clean.get("url") or "")
    if kind == "HelmRepository":
        return HelmRepository(name, namespace, url, str(clean.get("type") or "default"))
    if kind == "OCIRepository":
        ref = as_dict(clean.get("ref"))
        return OCIRepository(name, namespace, url, str(ref.get("tag") or ""), str(ref.get("semver") or ""),
                             str(ref.get("digest") or ""))
    if kind == "GitRepository":
        return GitRepository(name, namespace, url)
    if kind == "HelmChart":
        raw = as_dict(spec)
        template = HelmChartTemplate(
            chart=str(raw.get("chart") or ""), version=str(raw.get("version") or ""),
            source=_ref(raw.get("sourceRef"), namespace),
            values_files=tuple(str(v) for v in as_list(raw.get("valuesFiles")) if v))
        return HelmChart(name, namespace, template)
    return None
