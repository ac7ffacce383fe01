"""What Flux's helm-controller installs for each HelmRelease a target renders.

Steps, in helm-controller's order, for every HelmRelease among a target's rendered objects (after
the Kustomization's own build and `postBuild` substitution):

1. source: the chart's source among the objects the same environment renders (by kind, namespace,
   name; the HelmRelease's namespace by default), else as the repository defines it;
2. chart: a GitRepository that is this repository gives a folder of the tree (its `valuesFiles`
   relative to the repository root replace the chart's `values.yaml`); a HelmRepository (HTTP or
   OCI), an OCIRepository or a HelmChart's own source gives an archive through the policed fetcher;
3. values: bot.render.values (each `valuesFrom`, then `spec.values`);
4. release: its name and namespace (bot.repo.manifest), CRDs per `install.crds`;
5. template with Helm's own engine (bot.render.helm), in a sandboxed child process;
6. post-renderers: each `postRenderers[].kustomize` (`patches`, `images`) applied with Kustomize.

A release that cannot be rendered says why: the chart is unavailable (offline, refused, not found:
a notice, never Flux's failure), or the chart or its values are broken (Flux would fail too).
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from bot.deadline import Deadline
from bot.fetch import Fetcher
from bot.fetch.charts import ChartRef, ChartUnavailable, fetch_chart
from bot.model import Origin, ResourceId, Target, as_dict
from bot.objects import RenderedObject
from bot.render.chart_origin import ChartOrigins
from bot.render.helm import (
    DEFAULT_KUBE_VERSION,
    Helm,
    LintMessage,
    LintResult,
    TemplateRequest,
    TemplateResult,
    chart_relative,
)
from bot.render.kustomize import Kustomize, clean_error, run_build
from bot.render.values import MergedValues, merge_maps, merge_release_values
from bot.repo.manifest import (
    GitRepository,
    HelmChart,
    HelmChartTemplate,
    HelmRelease,
    HelmRepository,
    OCIRepository,
    Source,
    helm_release,
    source,
)
from bot.repo.tree import PathEscape, RepoTree
from bot.yamlpos import YamlError, load_docs

if TYPE_CHECKING:
    from bot.render.build import DiskCache, Rendered
    from bot.repo.discover import RepoModel

MAX_VALUES_BYTES = 1024 * 1024  # a fetched chart's values.yaml read for provenance

HELM_GROUP = "helm.toolkit.fluxcd.io"
SOURCE_KINDS = ("GitRepository", "HelmRepository", "OCIRepository", "HelmChart")
CLUSTER_SCOPED = frozenset({
    "Namespace", "Node", "PersistentVolume", "StorageClass", "CSIDriver", "CSINode", "PriorityClass",
    "RuntimeClass", "IngressClass", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
    "APIService", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
    "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "VolumeAttachment",
    "ClusterIssuer", "GatewayClass", "ClusterPolicy",
})


@dataclass(frozen=True)
class ChartOrigin:
    """Where a release's chart came from: a folder of this repository, or fetched (`url`, `version`)."""

    folder: str = ""  # repository-relative chart folder
    url: str = ""
    name: str = ""
    version: str = ""

    @property
    def in_repository(self) -> bool:
        return bool(self.folder)

    def __str__(self) -> str:
        if self.folder:
            return f"`{self.folder}` (in this repository)"
        return f"{self.name} {self.version} from {self.url}".strip()


@dataclass
class Release:
    """One HelmRelease of one target, and what became of it."""

    target: Target
    hr: HelmRelease
    hr_object: RenderedObject
    status: str = "rendered"  # rendered | unavailable | error | suspended
    reason: str = ""
    at: str = "spec.chart"  # the HelmRelease field the reason belongs to
    objects: list[RenderedObject] = field(default_factory=list)
    chart: ChartOrigin | None = None
    values: MergedValues | None = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cached: bool = False  # Helm's output came from the render cache
    # What the renderer carries between its steps: the chart to template, its defaults and their files.
    chart_path: Path | None = field(default=None, repr=False)
    defaults: dict[str, Any] = field(default_factory=dict, repr=False)
    defaults_files: tuple[str, ...] = ()

    @property
    def origin(self) -> Origin:
        return self.hr_object.origin(self.at)


def is_helm_release(ro: RenderedObject) -> bool:
    return ro.kind == "HelmRelease" and ro.id.group == HELM_GROUP


class Index:
    """The objects one environment renders, by (kind, namespace, name); the repository's own YAML
    documents as a fallback (a target outside a pull request's reach is not rendered)."""

    def __init__(self, rendered: Iterable[RenderedObject], model: RepoModel):
        self.rendered: dict[tuple[str, str, str], RenderedObject] = {}
        for ro in rendered:
            self.rendered.setdefault((ro.kind, ro.namespace, ro.name), ro)
        self.model = model
        self._raw: dict[tuple[str, str, str], dict[str, Any]] | None = None

    def _raw_index(self) -> dict[tuple[str, str, str], dict[str, Any]]:
        if self._raw is None:
            self._raw = {}
            for _rel, obj in self.model.source_objects():
                meta = as_dict(obj.get("metadata"))
                key = (str(obj.get("kind")), str(meta.get("namespace") or ""), str(meta.get("name") or ""))
                self._raw.setdefault(key, obj)
        return self._raw

    def object(self, kind: str, namespace: str, name: str) -> RenderedObject | None:
        """The rendered object; one rendered without a namespace stands for any (Flux's Kustomization
        or the HelmRelease's own namespace is where it lands)."""
        return self.rendered.get((kind, namespace, name)) or self.rendered.get((kind, "", name))

    def data(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        ro = self.object(kind, namespace, name)
        if ro is not None:
            return ro.obj
        raw = self._raw_index()
        return raw.get((kind, namespace, name)) or raw.get((kind, "", name))

    def source(self, kind: str, namespace: str, name: str) -> Source | None:
        obj = self.data(kind, namespace, name)
        if obj is None:
            return None
        meta = as_dict(obj.get("metadata"))
        return source(kind, str(meta.get("name") or name), str(meta.get("namespace") or namespace), obj.get("spec"))


class Unavailable(Exception):
    """The chart cannot be had here; says why (a notice: Flux may well have it)."""


class Broken(Exception):
    """Flux would fail this release too; `field` is where in the HelmRelease."""

    def __init__(self, message: str, field: str = "spec.chart"):
        super().__init__(message)
        self.field = field


@dataclass
class ReleaseRenderer:
    """Renders the HelmReleases of rendered targets with `helm` (bot.render.helm), fetching charts
    through `fetcher` (None: offline) and post-rendering with `kustomize`."""

    model: RepoModel
    helm: Helm | None
    kustomize: Kustomize
    fetcher: Fetcher | None = None
    kube_version: str = DEFAULT_KUBE_VERSION
    api_versions: tuple[str, ...] = ()
    deadline: Deadline = field(default_factory=Deadline)
    missing_engine: str = ""  # why there is no Helm, when `helm` is None
    cache: DiskCache | None = None  # Helm's output by the hash of everything it reads (the render cache)

    def render_all(self, rendered: list[Rendered]) -> list[Release]:
        """Every HelmRelease of every rendered target, in order; each target's `releases` set too."""
        by_env: dict[str, list[RenderedObject]] = {}
        for r in rendered:
            by_env.setdefault(r.target.environment or "", []).extend(r.objects)
        indexes = {env: Index(objs, self.model) for env, objs in by_env.items()}
        out: list[Release] = []
        with tempfile.TemporaryDirectory(prefix="infra-review-charts-") as tmp:
            scratch = Path(tmp)
            pending: list[tuple[Release, Index]] = []
            for r in rendered:
                index = indexes[r.target.environment or ""]
                r.releases = []
                for ro in r.objects:
                    if is_helm_release(ro):
                        self.deadline.check()
                        release = self._prepare(r.target, ro, index, scratch / str(len(out)))
                        out.append(release)
                        r.releases.append(release)
                        if release.status == "rendered":
                            pending.append((release, index))
            self._template_all(pending, scratch)
        return out

    def _prepare(self, target: Target, ro: RenderedObject, index: Index, scratch: Path) -> Release:
        """Steps 1-4: source, chart, values, release; `status` rendered means ready to template."""
        started = time.monotonic()
        hr = helm_release(ro.name, ro.namespace or "default", ro.obj.get("spec"))
        release = Release(target, hr, ro)
        if hr.suspend:
            release.status, release.reason = "suspended", "`spec.suspend` is true: Flux does not act on it"
            return release
        try:
            scratch.mkdir(parents=True)
            release.chart_path, release.chart = self._chart(release, index, scratch)
            release.values = merge_release_values(hr, lambda k, ns, n: index.data(k, ns, n))
            for p in release.values.problems:
                if p.fatal:
                    raise Broken(f"{p.message}, so Flux cannot install the release",
                                 f"spec.valuesFrom[{p.ref.index}]")
                release.notes.append(p.message + ("" if p.unknown else " (optional: skipped)"))
            if self.helm is None:
                raise Unavailable(self.missing_engine or "no Helm engine is installed")
        except Unavailable as exc:
            release.status, release.reason = "unavailable", str(exc)
        except Broken as exc:
            release.status, release.reason, release.at = "error", str(exc), exc.field
        release.seconds = time.monotonic() - started
        return release

    # --- 1-2. source and chart ------------------------------------------------------------------
    def _chart(self, release: Release, index: Index, scratch: Path) -> tuple[Path, ChartOrigin]:
        hr = release.hr
        template = hr.chart
        field_name = "spec.chart.spec.sourceRef" if template else "spec.chartRef"
        ref = hr.source
        if ref is None:
            raise Broken("it names no chart (`spec.chart.spec` with a `sourceRef`, or `spec.chartRef`)",
                         "spec.chart" if template else "spec")
        src = index.source(ref.kind, ref.namespace, ref.name)
        if isinstance(src, HelmChart) and template is None:
            template = src.template
            inner = template.source
            if inner is None:
                raise Broken(f"HelmChart {ref.namespace}/{ref.name} names no source", field_name)
            src = index.source(inner.kind, inner.namespace, inner.name)
            ref = inner
        if src is None:
            if ref.kind == "GitRepository" and self.model._is_self(ref.kind, ref.name) and template:
                return self._local_chart(release, template, scratch)
            raise Unavailable(f"its chart source {ref} is not defined in this repository")
        if isinstance(src, GitRepository):
            if template is None:
                raise Broken(f"`chartRef` cannot name a GitRepository ({ref})", field_name)
            if self.model._is_self(ref.kind, ref.name):
                return self._local_chart(release, template, scratch)
            raise Unavailable(f"its chart comes from another Git repository ({src.url}), which is not fetched")
        if isinstance(src, HelmRepository):
            if template is None:
                raise Broken(f"`chartRef` cannot name a HelmRepository ({ref})", field_name)
            url = f"{src.url.rstrip('/')}/{template.chart}" if src.is_oci else src.url
            chart = ChartRef("oci" if src.is_oci else "helm", url, "" if src.is_oci else template.chart,
                             template.version)
            return self._fetched(release, chart, scratch)
        if isinstance(src, OCIRepository):
            chart = ChartRef("oci", src.url, "", src.semver or src.tag, src.digest)
            return self._fetched(release, chart, scratch)
        raise Broken(f"a chart cannot come from a {ref.kind}", field_name)

    def _fetched(self, release: Release, ref: ChartRef, scratch: Path) -> tuple[Path, ChartOrigin]:
        if self.fetcher is None or not self.fetcher.settings.enabled:
            raise Unavailable(f"offline: fetching is off (`--offline` or `fetch: {{enabled: false}}`), so the chart "
                              f"{ref.name or posixpath.basename(ref.url)} from {ref.url} was not fetched")
        try:
            got = fetch_chart(self.fetcher, ref)
        except ChartUnavailable as exc:
            raise Unavailable(f"{exc.reason} ({ref.url})") from None
        archive = scratch / "chart.tgz"
        archive.write_bytes(got.archive)
        release.defaults = _archive_values(got.archive)
        return archive, ChartOrigin(url=got.url, name=got.name, version=got.version)

    def _local_chart(self, release: Release, template: HelmChartTemplate, scratch: Path) -> tuple[Path, ChartOrigin]:
        """The chart folder of this repository, copied into the scratch folder (regular files inside
        the repository only), with its `valuesFiles` merged into its `values.yaml` as source-controller
        does (they replace the chart's own defaults unless they list them)."""
        tree = self.model.tree
        try:
            folder = tree.resolve(".", template.chart.lstrip("/") or ".")
        except PathEscape as exc:
            raise Broken(f"chart path {template.chart!r}: {exc}", "spec.chart.spec.chart") from None
        if not tree.is_file(posixpath.join(folder, "Chart.yaml")):
            raise Broken(f"`{folder}` holds no Chart.yaml, so it is no chart (Flux fails to build it)",
                         "spec.chart.spec.chart")
        dest = copy_chart(tree, folder, scratch / "chart")
        files = [posixpath.join(folder, "values.yaml")] if tree.is_file(posixpath.join(folder, "values.yaml")) else []
        if template.values_files:
            files = []
            for i, vf in enumerate(template.values_files):
                try:
                    files.append(tree.resolve(".", vf.lstrip("/")))
                except PathEscape as exc:
                    raise Broken(f"values file {vf!r}: {exc}", f"spec.chart.spec.valuesFiles[{i}]") from None
        merged: dict[str, Any] = {}
        for i, rel in enumerate(files):
            try:
                docs = tree.docs(rel)
            except (YamlError, OSError) as exc:
                raise Broken(f"values file `{rel}` cannot be read: {exc}",
                             f"spec.chart.spec.valuesFiles[{i}]" if template.values_files else "spec.chart") from None
            merged = merge_maps(merged, as_dict(docs[0].data if docs else {}))
        if template.values_files:
            (dest / "values.yaml").write_text(yaml.safe_dump(merged, sort_keys=False))
        release.defaults, release.defaults_files = merged, tuple(files)
        return dest, ChartOrigin(folder=folder)

    # --- 5-6. template and post-render ---------------------------------------------------------
    def _template_all(self, pending: list[tuple[Release, Index]], scratch: Path) -> None:
        if not pending or self.helm is None:
            return
        started = time.monotonic()
        requests = [TemplateRequest(chart=release.chart_path or Path(), values=(release.values.values
                                                                                  if release.values else {}),
                                    release_name=release.hr.release_name, namespace=release.hr.release_namespace,
                                    kube_version=self.kube_version, api_versions=self.api_versions,
                                    include_crds=release.hr.include_crds)
                    for release, _index in pending]
        results, hits = self._cached_template(requests)
        share = (time.monotonic() - started) / len(pending)
        for n, ((release, index), result) in enumerate(zip(pending, results, strict=True)):
            release.seconds += share
            release.cached = n in hits
            try:
                release.objects = self._finish(release, index, result, scratch / f"post-{n}")
            except Broken as exc:
                release.status, release.reason, release.at = "error", str(exc), exc.field

    def _cached_template(self, requests: list[TemplateRequest]) -> tuple[list[TemplateResult], set[int]]:
        """Helm's answer for each request, and which came from the cache (those whose inputs are
        unchanged); the rest are templated in one batch. A result a limit stopped is never kept."""
        assert self.helm is not None
        keys = [_cache_key(self.helm.version, r) for r in requests]
        found: dict[int, TemplateResult] = {}
        for i, key in enumerate(keys):
            hit = self.cache.get(key) if self.cache is not None else None
            if hit is not None:
                found[i] = TemplateResult(bool(hit.get("ok")), tuple((str(p), str(t)) for p, t in hit.get("manifests") or []),
                                          str(hit.get("error") or ""), str(hit.get("error_file") or ""),
                                          int(hit.get("error_line") or 0))
        hits = set(found)
        todo = [i for i in range(len(requests)) if i not in found]
        fresh = self.helm.template([requests[i] for i in todo], self.deadline) if todo else []
        for i, result in zip(todo, fresh, strict=True):
            found[i] = result
            if self.cache is not None and not result.stopped:
                self.cache.put(keys[i], {"ok": result.ok, "manifests": [list(m) for m in result.manifests],
                                         "error": result.error, "error_file": result.error_file,
                                         "error_line": result.error_line})
        return [found[i] for i in range(len(requests))], hits

    def _finish(self, release: Release, index: Index, result: TemplateResult, scratch: Path) -> list[RenderedObject]:
        if not result.ok:
            where = ""
            if result.error_file and release.chart and release.chart.in_repository:
                where = f" (`{_in_folder(release.chart.folder, chart_relative(result.error_file))}`" + \
                        (f" line {result.error_line})" if result.error_line else ")")
            raise Broken(f"Helm cannot render the chart{where}: {result.error}")
        manifests = list(result.manifests)
        if release.hr.post_renderers:
            manifests = [("post-renderer", self._post_render(release.hr, manifests, scratch))]
        return self._objects(release, index, manifests)

    def _post_render(self, hr: HelmRelease, manifests: list[tuple[str, str]], scratch: Path) -> str:
        text = "\n---\n".join(body for _path, body in manifests)
        for i, renderer in enumerate(hr.post_renderers):
            work = scratch / str(i)
            work.mkdir(parents=True)
            (work / "helm-output.yaml").write_text(text)
            kust: dict[str, Any] = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                                    "resources": ["helm-output.yaml"]}
            for key in ("patches", "images"):
                if renderer.get(key):
                    kust[key] = renderer[key]
            (work / "kustomization.yaml").write_text(yaml.safe_dump(kust, sort_keys=False))
            res = run_build(self.kustomize, work, ".", stop=self.deadline)
            if res.returncode != 0:
                raise Broken(f"its post-renderer cannot be applied: {clean_error(res.stderr, work, res.returncode)}",
                             f"spec.postRenderers[{i}]")
            text = res.stdout
        return text

    def _objects(self, release: Release, index: Index, manifests: list[tuple[str, str]]) -> list[RenderedObject]:
        hr = release.hr
        origins = ChartOrigins(
            release.hr_object, release.values or MergedValues({}),
            value_sources=[(ref.kind, ref.name, ref.values_key) for ref in hr.values_from],
            lookup=lambda kind, ns, name: index.object(kind, ns, name), tree=self.model.tree,
            chart_folder=release.chart.folder if release.chart else "", defaults=release.defaults,
            defaults_files=release.defaults_files)
        out = []
        for template, text in manifests:
            try:
                docs = load_docs(text, template)
            except YamlError as exc:
                raise Broken(f"the chart's output is not valid YAML (`{template}`): {exc.message}") from None
            for doc in docs:
                if not isinstance(doc.data, dict) or not doc.data.get("kind"):
                    continue
                if is_test_hook(doc.data) and not hr.test_enable:
                    continue
                kind = str(doc.data.get("kind"))
                ro = RenderedObject(doc.data, ResourceId.of(doc.data, "" if kind in CLUSTER_SCOPED
                                                            else hr.release_namespace), release.target)
                ro.locate = _locator(origins, ro, template)
                ro.places = release.hr_object.places
                out.append(ro)
        return out


TEST_HOOKS = frozenset({"test", "test-success", "test-failure"})


def is_test_hook(obj: dict[str, Any]) -> bool:
    """A chart's test (`helm.sh/hook: test`): Flux runs it only with `spec.test.enable`, and it is not part
    of what the release installs (its Pods often have random names, too)."""
    hooks = as_dict(as_dict(obj.get("metadata")).get("annotations")).get("helm.sh/hook")
    return isinstance(hooks, str) and bool(TEST_HOOKS & {h.strip() for h in hooks.split(",")})


def copy_chart(tree: RepoTree, folder: str, dest: Path) -> Path:
    """The chart folder's files, copied to `dest`: only the tree's regular files inside the repository,
    so Helm never follows a symlink out of it."""
    prefix = "" if folder == "." else folder + "/"
    for rel in tree.files:
        if rel.startswith(prefix):
            out = dest / rel[len(prefix):]
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(tree.abspath(rel), out)
    return dest


def chart_folders(tree: RepoTree) -> list[str]:
    """Every chart of the repository: the folders holding a Chart.yaml, outermost only (a chart's
    `charts/` subcharts are linted with it)."""
    folders = sorted(posixpath.dirname(rel) or "." for rel in tree.files if posixpath.basename(rel) == "Chart.yaml")
    out: list[str] = []
    for folder in folders:
        if not any(folder.startswith(outer.rstrip("/") + "/") or outer == "." for outer in out):
            out.append(folder)
    return out


HELM_CACHE_VERSION = "1"


def _cache_key(helm_version: str, request: TemplateRequest) -> str:
    """The hash of everything `helm template` reads: the chart's files (or archive), the values, the
    release, the cluster's capabilities and the engine's version."""
    h = hashlib.sha256(json.dumps(["helm", HELM_CACHE_VERSION, helm_version, request.values, request.release_name,
                                   request.namespace, request.kube_version, list(request.api_versions),
                                   request.include_crds], sort_keys=True, default=str).encode())
    h.update(_chart_digest(request.chart))
    return h.hexdigest()


def _chart_digest(chart: Path) -> bytes:
    """A chart folder's files (names and contents), or an archive's bytes, as one digest."""
    h = hashlib.sha256()
    files = sorted(p for p in chart.rglob("*") if p.is_file()) if chart.is_dir() else [chart]
    for path in files:
        h.update(str(path.relative_to(chart) if chart.is_dir() else "").encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.digest()


def cached_lint(helm: Helm, chart: Path, kube_version: str, cache: DiskCache | None, stop: Deadline) -> LintResult:
    """`helm lint` of a chart folder, from the render cache while the chart's files are unchanged."""
    key = hashlib.sha256(json.dumps(["lint", HELM_CACHE_VERSION, helm.version, kube_version]).encode()
                         + _chart_digest(chart)).hexdigest()
    hit = cache.get(key) if cache is not None else None
    if hit is not None:
        return LintResult(bool(hit.get("ok")), tuple(LintMessage(*m) for m in hit.get("messages") or []),
                          str(hit.get("error") or ""))
    result = helm.lint(chart, {}, kube_version, stop)
    if cache is not None and result.ok:
        cache.put(key, {"ok": True, "messages": [[m.severity, m.path, m.line, m.message] for m in result.messages]})
    return result


def _locator(origins: ChartOrigins, ro: RenderedObject, template: str) -> Callable[[str], Origin]:
    def locate(path: str) -> Origin:
        return origins.locate(ro, template, path)

    return locate


def _in_folder(folder: str, rel: str) -> str:
    return rel if folder in ("", ".") else posixpath.join(folder, rel)


def _archive_values(archive: bytes) -> dict[str, Any]:
    """A fetched chart's own `values.yaml` (`<chart>/values.yaml` in the archive), {} when unreadable."""
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            for member in tar:
                parts = member.name.split("/")
                if len(parts) == 2 and parts[1] == "values.yaml" and member.isfile() and member.size <= MAX_VALUES_BYTES:
                    f = tar.extractfile(member)
                    data = yaml.safe_load(f.read()) if f else None
                    return data if isinstance(data, dict) else {}
    except (tarfile.TarError, OSError, EOFError, yaml.YAMLError):
        pass
    return {}
