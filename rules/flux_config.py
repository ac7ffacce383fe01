"""flux-config: Flux objects that cannot reconcile or reconcile unsafely (repo scope)."""

from __future__ import annotations

from collections.abc import Iterator

from bot.model import Finding, FluxRef, ResourceId, Suggestion
from bot.repo.discover import BOOTSTRAP_SOURCE
from bot.repo.manifest import CrossRef, helm_release, kustomization
from bot.yamlpos import YamlDoc
from rules.base import Rule, all_envs, example
from rules.creators import repo_created, table_lines
from rules.repo_checks import (
    RepoScope,
    flux_docs,
    insert_under,
    line_at,
    replace_value_line,
    repo_finding,
    where,
)

SOURCE_KINDS = frozenset({"GitRepository", "OCIRepository", "HelmRepository", "Bucket", "HelmChart", "ExternalArtifact"})


def defined_sources(scope: RepoScope) -> set[tuple[str, str]]:
    """(kind, name) of every source object the repository defines, ExternalArtifacts included, and of
    those its objects create (a FluxInstance's sync source; rules.creators, with `creators:`)."""
    out = {(ref.kind, ref.name) for ref in scope.model.flux_objects if ref.kind in SOURCE_KINDS}
    for ref in scope.model.flux_objects:
        if ref.kind == "ArtifactGenerator":
            for art in ref.spec.get("artifacts") or []:
                if isinstance(art, dict) and art.get("name"):
                    out.add(("ExternalArtifact", str(art["name"])))
    out |= {(kind, name) for kind, _ns, name in repo_created(scope.model, scope.config.creators)
            if kind in SOURCE_KINDS}
    return out


def _is_bootstrap(ref: FluxRef) -> bool:
    return ref.name == BOOTSTRAP_SOURCE and ref.namespace in ("", BOOTSTRAP_SOURCE)


class _Emit:
    """Builds the findings of one Flux object, all located in its document."""

    def __init__(self, scope: RepoScope, rule: Rule, ref: FluxRef, doc: YamlDoc, environment: str | None):
        self.scope, self.rule, self.ref, self.doc, self.environment = scope, rule, ref, doc, environment
        self.rid = ResourceId.of(doc.data)
        self.label = f"{ref.kind} {ref.namespace + '/' if ref.namespace else ''}{ref.name}"

    def __call__(self, intrinsic: str, field: str, message: str, remediation: str,
                 suggestion: Suggestion | None = None, locate: tuple[str | int, ...] | None = None) -> Finding | None:
        severity = self.scope.severity(self.rule, self.environment, intrinsic)
        if severity is None:
            return None
        return repo_finding(
            self.rule,
            severity=severity,
            environment=self.environment,
            message=f"{self.label} (`{self.ref.file}`, {where(self.environment)}): {message}",
            file=self.ref.file,
            line=line_at(self.doc, *(locate or field.split("."))),
            field=field,
            resource=self.rid,
            remediation=remediation,
            suggestion=suggestion,
            via="flux",
        )


def _source_ref_finding(emit: _Emit, field: str, source: CrossRef | None,
                        defined: set[tuple[str, str]]) -> Finding | None:
    if source is None:
        return None
    kind, name = source.kind, source.name
    if kind not in SOURCE_KINDS or not name or "${" in name or (kind, name) in defined:
        return None
    if kind == "GitRepository" and name == BOOTSTRAP_SOURCE:
        return None
    return emit(
        "warning", f"{field}.name",
        f"its source {kind} `{name}` is not defined in this repository (it may be managed elsewhere; if not, the "
        f"object stays not-ready with \"{kind.lower()} '{name}' not found\").",
        f"If another repository or an operator creates the {kind} `{name}`, nothing is wrong: declare the kind "
        f"that creates it under `creators:` in .github/infra-review.yml, or annotate this object with "
        f"`infra-review.io/ignore`. Otherwise add the {kind} to the repository (next to the objects that use "
        f"it), or point the reference at a source that exists.",
    )


def _judged_path(scope: RepoScope, ref: FluxRef) -> str | None:
    """The repository folder a Kustomization's `spec.path` is judged as, None when it is not judged
    (another source, or `${VAR}` in it)."""
    target = scope.model.flux_path(ref)
    return target if target is not None and "${" not in kustomization(ref).path else None


def root_finding(scope: RepoScope, rule: Rule, kustomizations: list[tuple[FluxRef, YamlDoc]]) -> Finding | None:
    """One finding when the paths of all the Kustomizations judged, two different ones or more, are
    missing: the likelier cause is that the repository root is not the folder they are relative to."""
    judged = [(ref, doc) for ref, doc in kustomizations if _judged_path(scope, ref) is not None]
    paths = {_judged_path(scope, ref) or "" for ref, _doc in judged}
    if len(paths) < 2 or any(scope.model.tree.is_dir(path) for path in paths):
        return None  # one folder that several Kustomizations apply is missing: said on each of them
    ref, doc = judged[0]
    emit = _Emit(scope, rule, ref, doc, scope.environment(ref.file, ref))
    shown = ", ".join(f"`{kustomization(r).path}`" for r, _d in judged[:3]) + (", …" if len(judged) > 3 else "")
    return emit(
        "error", "spec.path",
        f"none of the {len(judged)} Flux Kustomizations' `spec.path`s ({shown}) is a folder of the repository "
        f"root used, `{scope.model.tree.root}`, so the root looks wrong: Flux resolves them from the root of the "
        f"source repository, and from this one every Kustomization would fail with \"kustomization path not "
        f"found\" and nothing would be applied or checked.",
        "If this folder is part of a larger repository, check that repository, or give its root with "
        "`infra-review check --root DIR`; otherwise point the `spec.path`s at existing folders, relative to the "
        "repository root.",
    )


def kustomization_findings(scope: RepoScope, rule: Rule, ref: FluxRef, doc: YamlDoc,
                           defined: set[tuple[str, str]], paths_judged: bool = True) -> Iterator[Finding | None]:
    flux = kustomization(ref)
    raw_path = flux.path
    target = scope.model.flux_path(ref)
    emit = _Emit(scope, rule, ref, doc, scope.environment(target or ref.file, ref))
    lines = scope.model.tree.lines(ref.file)
    if paths_judged and target is not None and "${" not in raw_path and not scope.model.tree.is_dir(target):
        yield emit(
            "error", "spec.path",
            f"`spec.path: {raw_path}` resolves to `{target}`, which is not a directory of this repository, so "
            f"the Kustomization fails with \"kustomization path not found\" and applies nothing.",
            "Point `spec.path` at the overlay directory this cluster should apply (relative to the repository "
            "root), or add that directory.",
        )
    if flux.prune is not True:
        present = "prune" in ref.spec
        yield emit(
            "warning", "spec.prune",
            ("`prune` is not `true`" if present else "`prune` is not set")
            + ", so manifests deleted from git stay running in the cluster.",
            "Set `prune: true` so Flux garbage-collects objects removed from git.",
            replace_value_line(lines, line_at(doc, "spec", "prune"), "prune", "true", ref.file) if present
            else insert_under(lines, doc, ("spec",), ["prune: true"], ref.file),
        )
    if flux.source is None:
        yield emit(
            "warning", "spec.sourceRef",
            "`sourceRef` is not set, so the Kustomization has nothing to build from and is rejected.",
            "Set `sourceRef` to the GitRepository (or OCIRepository) that holds `spec.path`, e.g. "
            "`{kind: GitRepository, name: flux-system}`.",
        )
    if not flux.interval:
        yield emit(
            "warning", "spec.interval",
            "`interval` is not set, so the Kustomization is rejected by the API server and never reconciles, "
            "and drift is never corrected.",
            "Set `interval` (e.g. `10m`): how often Flux re-applies the source and corrects drift.",
            insert_under(lines, doc, ("spec",), ["interval: 10m"], ref.file),
        )
    if not flux.health_checks and flux.wait is None and not _is_bootstrap(ref):
        yield emit(
            "warning", "spec.healthChecks",
            "it has neither `healthChecks` nor `wait: true`, so it reports Ready as soon as the objects are "
            "applied: a rollout that never becomes healthy looks like a success, and Kustomizations that "
            "`dependsOn` it go ahead.",
            "Set `wait: true` (wait for every applied object) or list the workloads under `healthChecks`.",
            insert_under(lines, doc, ("spec",), ["wait: true"], ref.file),
        )
    yield _source_ref_finding(emit, "spec.sourceRef", flux.source, defined)


def helmrelease_findings(scope: RepoScope, rule: Rule, ref: FluxRef, doc: YamlDoc,
                         defined: set[tuple[str, str]]) -> Iterator[Finding | None]:
    emit = _Emit(scope, rule, ref, doc, scope.environment(ref.file))
    hr = helm_release(ref.name, ref.namespace, ref.spec)
    if hr.chart_ref is not None:
        yield _source_ref_finding(emit, "spec.chartRef", hr.chart_ref, defined)
    template = hr.chart
    if template is None:
        return
    source, chart = template.source, template.chart
    if source is not None and "${" not in chart:
        as_path = FluxRef("Kustomization", ref.name, ref.namespace, ref.file, ref.line,
                          {"path": chart, "sourceRef": {"kind": source.kind, "name": source.name}})
        local = scope.model.flux_path(as_path) if source.kind in ("GitRepository", "Bucket") else None
        tree = scope.model.tree
        if local is not None and not (tree.is_dir(local) or tree.is_file(local)):
            yield emit(
                "error", "spec.chart.spec.chart",
                f"the chart `{chart}` is read from this repository ({source.kind} `{source.name}`), but `{local}` "
                f"does not exist, so the HelmRelease fails with a chart not-found error and nothing is installed "
                f"or upgraded.",
                "Point `spec.chart.spec.chart` at the chart directory (relative to the repository root), or add "
                "the chart there.",
            )
    yield _source_ref_finding(emit, "spec.chart.spec.sourceRef", source, defined)


def type_findings(scope: RepoScope, rule: Rule, ref: FluxRef, doc: YamlDoc) -> Iterator[Finding | None]:
    """Fields Flux's API rejects for their type (bot.repo.flux_spec): the whole object is refused."""
    if not ref.problems:
        return
    emit = _Emit(scope, rule, ref, doc, scope.environment(scope.model.flux_path(ref) or ref.file, ref)
                 if ref.kind == "Kustomization" else scope.environment(ref.file))
    for problem in ref.problems:
        yield emit(
            "error", problem.field,
            f"{problem.message}, so the API server rejects the {ref.kind} and Flux applies nothing of it.",
            "Give the field the type Flux's API expects: quote a number or boolean meant as text "
            "(`newTag: \"1.25\"`), or write the list or mapping the field holds.",
            locate=("spec", *problem.segments),
        )


def check_repo(scope: RepoScope, rule: Rule) -> Iterator[Finding]:
    defined = defined_sources(scope)
    docs = list(flux_docs(scope))
    wrong_root = root_finding(scope, rule, [(ref, doc) for ref, doc in docs if ref.kind == "Kustomization"])
    if wrong_root is not None:
        yield wrong_root
    for ref, doc in docs:
        yield from (f for f in type_findings(scope, rule, ref, doc) if f is not None)
        if ref.kind == "Kustomization":
            found = kustomization_findings(scope, rule, ref, doc, defined, paths_judged=wrong_root is None)
        elif ref.kind == "HelmRelease":
            found = helmrelease_findings(scope, rule, ref, doc, defined)
        else:
            continue
        yield from (f for f in found if f is not None)


RULE = Rule(
    id="flux-config",
    title="Broken or unsafe Flux Kustomization/HelmRelease",
    rationale=(
        "A Flux Kustomization whose path does not exist never applies anything; without `prune: true` "
        "deleted manifests linger in the cluster; without `sourceRef`/`interval` it does not reconcile; "
        "without health checks or `wait` a broken rollout is reported as success."
    ),
    remediation="Point `spec.path` at an existing directory and set `prune: true`, `sourceRef`, "
    "`interval` and `healthChecks` (or `wait: true`); point a HelmRelease's chart at an existing path or source.",
    severity=all_envs("error"),
    scope="repo",
    check_repo=check_repo,
    edge_cases=(
        "Error: a Kustomization `spec.path` or a HelmRelease chart path (GitRepository source that is this "
        "repository) that does not exist; paths holding `${VAR}` are not judged.",
        "Error, once: when the paths of all the Kustomizations judged are missing, and they are two different paths "
        "or more, one finding says the repository root looks wrong, naming the root used (`check --root` chooses "
        "another), instead of one \"path not found\" per Kustomization.",
        "Warning: a Kustomization without `prune: true`, `sourceRef`, `interval`, or `healthChecks`/`wait` (one "
        "finding per missing setting); the bootstrap `flux-system` Kustomization that `flux bootstrap` writes is "
        "exempt from the health-check warning, since it only applies the cluster's own Flux objects; so is an "
        "explicit `wait: false`, a recorded decision (56 such Kustomizations in onedr0p/home-ops) rather than "
        "an omission.",
        "Warning: a `sourceRef`/`chartRef` naming a source kind and name that no file of the repository "
        "defines or creates, said as \"not defined in this repository\" (it may exist only in the cluster); the "
        "bootstrap GitRepository `flux-system` is exempt.",
        "Objects that something in the repository creates count as defined here and in `route-backend` and "
        "`service-selector` (rules/creators.py): "
        + "; ".join(table_lines())
        + ". `creators:` in .github/infra-review.yml adds entries (`{kind, group, creates: {kind, name}}`, the "
        "name a template over the creator's `{name}`, `{namespace}` and `{spec.field}`), created in the "
        "creator's namespace.",
        "Error: a field of the wrong type for Flux's API (`postBuild.substitute` values and image tags are "
        "strings: an unquoted `3` or `1.25` is a number), since the API server then rejects the whole object; "
        "the rest of the object is still checked without that field.",
        "Flux objects in files that a kustomization uses as patches are partial and not judged.",
    ),
    example=example(
        {"clusters/production/apps.yaml": """\
            apiVersion: kustomize.toolkit.fluxcd.io/v1
            kind: Kustomization
            metadata:
              name: apps
              namespace: flux-system
            spec:
              interval: 10m
              path: ./overlays/prod  #-
              path: ./overlays/production  #+
              prune: true
              wait: true
              sourceRef:
                kind: GitRepository
                name: flux-system
            """,
         "overlays/production/kustomization.yaml": """\
            configMapGenerator:
              - name: web
                literals: [LOG_LEVEL=info]
            """},
        note="`spec.path` names the overlay folder that exists.",
    ),
)
