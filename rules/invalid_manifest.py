"""invalid-manifest: objects the API server would reject, validated against the schema of their kind.

Per environment, every object Flux applies (Kustomize and chart output) against its kind's schema for the
configured Kubernetes version (bot.validate); once per repository, every document of the repository for
repeated keys in keyed lists, which a strategic-merge patch would silently collapse before anything
renders them.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator
from typing import Any

from bot.model import Finding, Suggestion
from bot.objects import EnvContext, RenderedObject
from bot.repo.tree import KUSTOMIZATION_NAMES
from bot.validate.problems import Problem, problems, walked_problems
from bot.validate.schemas import CRD, Catalog, repository_crds
from rules.base import (
    Rule,
    all_envs,
    example,
    example_deployment,
    finding,
    only_this_environment,
    source_line,
)
from rules.repo_checks import RepoScope, repo_finding, where

YAML_SUFFIXES = (".yaml", ".yml")
# What a problem of the repository's own documents does, before anything renders them.
WRITTEN = {
    "duplicate": "In a patch, Kustomize's strategic merge keeps one of the two and the other is lost without a "
                 "word; in a resource, the API server refuses it.",
    "unkeyed": "A strategic merge (an overlay's patch of this object) drops the item without a word; in a "
               "resource, the API server refuses it.",
}
EFFECT = {
    "unknown": "the API server refuses it or drops the field, and the setting never takes effect",
    "duplicate": "the API server refuses the object",
}


def catalog(ctx: EnvContext) -> Catalog:
    """The schemas for this environment: its Kubernetes version, the CRDs it renders and the repository's."""
    objects = [ro.obj for ro in ctx.objects if ro.kind == CRD]
    return Catalog.for_objects(ctx.kube_version, objects + (repository_crds(ctx.repo) if ctx.repo else []))


def rename(ctx: EnvContext, obj: RenderedObject, problem: Problem) -> Suggestion | None:
    """The misspelt key renamed on the line that wrote it (in a file of this environment only)."""
    if problem.rename is None:
        return None
    origin = obj.origin(problem.path)
    span = origin.span()
    if origin.via not in ("manifest", "patch") or span is None or span[1] != origin.line:
        return None
    file, line, _ = span
    text = source_line(ctx, file, line)
    wrong, right = problem.rename
    m = re.match(r"^(\s*(?:-\s+)?)(['\"]?)" + re.escape(wrong) + r"\2(\s*:.*)$", text or "")
    if not m or not only_this_environment(ctx, file):
        return None
    return Suggestion(file, line, line, f"{m.group(1)}{m.group(2)}{right}{m.group(2)}{m.group(3)}")


def check(ctx: EnvContext, rule: Rule) -> Iterator[Finding]:
    schemas = catalog(ctx)
    for obj in ctx.objects:
        # Keyed lists of what the repository writes are judged in its documents (check_repo); chart
        # output has no document of ours.
        found = problems(schemas, obj.obj, duplicates=obj.id in ctx.from_charts)
        for problem in found or ():
            effect = EFFECT.get(problem.kind, "the API server refuses the object")
            yield finding(
                rule, ctx, obj, problem.path,
                f"{obj.id}: {problem.message}. Flux applies it after the merge and {effect}; a rejected object "
                f"fails the whole apply of its Kustomization or release in {ctx.environment}.",
                suggestion=rename(ctx, obj, problem),
            )


def check_repo(scope: RepoScope, rule: Rule) -> Iterator[Finding]:
    """Repeated keys (two containers named `api`) in the repository's own documents, patches included."""
    model = scope.model
    schemas = Catalog.for_objects(scope.config.kube_version, repository_crds(model))
    for rel in sorted(model.tree.files):
        if not rel.endswith(YAML_SUFFIXES) or posixpath.basename(rel) in KUSTOMIZATION_NAMES:
            continue
        for doc in scope.docs(rel):
            yield from _document(scope, rule, schemas, rel, doc)


def _document(scope: RepoScope, rule: Rule, schemas: Catalog, rel: str, doc: Any) -> Iterator[Finding]:
    data = doc.data
    if not isinstance(data, dict) or not isinstance(data.get("apiVersion"), str) or not isinstance(data.get("kind"), str):
        return
    compiled = schemas.compiled(data["apiVersion"], data["kind"])
    if compiled is None:
        return
    environment = scope.environment(rel)
    severity = scope.severity(rule, environment)
    if severity is None:
        return
    for problem in walked_problems(schemas, compiled, data):
        if problem.kind not in WRITTEN:
            continue
        span = doc.span(problem.segments)
        yield repo_finding(
            rule, severity=severity, environment=environment, file=rel, line=span[0] if span else doc.line,
            end_line=span[1] if span else None, field=problem.path,
            message=f"{data['kind']} `{(data.get('metadata') or {}).get('name', '')}` (`{rel}`, {where(environment)}): "
                    f"{problem.message}. {WRITTEN[problem.kind]}",
        )


RULE = Rule(
    id="invalid-manifest",
    title="Object the API server would reject",
    rationale="Kustomize merges whatever YAML it is given: a typo (`replcas: 3`, `livenessprobe:`), a string "
    "where an integer belongs, `cpu: 500 m` or two containers with one name renders without a word and only "
    "fails when Flux applies it, after the merge, in production, taking the rest of the Kustomization with it. "
    "Every rendered object is validated against the schema of its kind for the configured Kubernetes version "
    "(`kubernetes: {version}` in .github/infra-review.yml), strictly. An error in every environment.",
    remediation="Fix the field the message names at this line: the known field name it suggests, the type the "
    "schema wants, the missing required field, a quantity such as `500m` or `1Gi`, one item per name.",
    severity=all_envs("error"),
    check=check,
    check_repo=check_repo,
    edge_cases=(
        "Built-in kinds against the strict schemas of the `kubernetes-validate` package (the newest release not "
        "newer than the configured version); Flux's kinds and the Gateway API's against their CRDs, vendored; "
        "any kind whose CustomResourceDefinition is in the repository against that. Kinds with no schema are "
        "counted in the report's notes, never an error.",
        "Unknown fields name the nearest known one (`livenessprobe` → `livenessProbe`), with a suggestion that "
        "renames the key where the fix is a rename.",
        "Quantities are parsed as Kubernetes parses them (the schema lets any string through).",
        "Repeated keys in keyed lists (containers, env, volumes, volume mounts, ports by port and protocol) are "
        "found in the repository's documents, patches included, since a strategic merge collapses them before "
        "anything renders; and in chart output.",
        "At most 20 problems per object.",
        "SOPS metadata (`sops:`) is left out of the object validated: Flux removes it when it decrypts.",
        "Against a vendored CRD, the `kind` an Alert or Receiver names is not judged by the CRD's enum: clusters "
        "widen it for the controllers that send events (the Flux Operator's FluxInstance, tofu-controller).",
        "Example: `replcas: 3` in an overlay's patch is `spec.replcas: unknown field — did you mean replicas?` at "
        "that line of the patch, with the suggestion `replicas: 3`; `cpu: 500 m` is `... '500 m' is not a "
        "Kubernetes quantity`; two `- name: api` items under `containers:` in a patch are found in the patch, "
        "before Kustomize's merge keeps only one.",
    ),
    example=example(
        {"deployment.yaml": example_deployment(replicas="""\
            replcas: 3  #-
            replicas: 3  #+
            """)},
        note="The misspelt key `replcas` is spelt `replicas`.",
    ),
)
