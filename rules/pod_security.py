"""pod-security: pod templates against the Kubernetes Pod Security Standards (bot.validate.podsecurity).

Where the namespace enforces a level (`pod-security.kubernetes.io/enforce` on the Namespace the same
cluster renders), a violation is an error: admission refuses the pods. Elsewhere the pod is judged
against the level its environment should meet (parameter `target`: restricted in production, baseline
elsewhere), at the rule's severity there, so the gap shows without a wall of errors.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from bot.model import Finding, Suggestion, format_path, parse_path
from bot.objects import EnvContext, RenderedObject
from bot.validate.podsecurity import LEVELS, Violation, version_of, violations
from rules.base import (
    Container,
    Rule,
    containers,
    example,
    example_deployment,
    finding,
    indexed,
    only_this_environment,
    per_env,
    pod_meta_path,
    source_line,
    workloads,
)

ENFORCE = "pod-security.kubernetes.io/enforce"
ENFORCE_VERSION = "pod-security.kubernetes.io/enforce-version"
# What a missing field is set to where it must be set, in the container's `securityContext`.
SECURE = {
    "allowPrivilegeEscalation": ["allowPrivilegeEscalation: false"],
    "runAsNonRoot": ["runAsNonRoot: true"],
    "seccompProfile": ["seccompProfile:", "  type: RuntimeDefault"],
    "capabilities": ["capabilities:", "  drop: [ALL]"],
}


def _enforcing(ctx: EnvContext) -> dict[str, tuple[str, str]]:
    out: dict[str, tuple[str, str]] = {}
    for obj in ctx.objects:
        if obj.kind == "Namespace" and obj.id.group == "" and obj.name not in out:
            level = str(obj.labels.get(ENFORCE) or "")
            if level in LEVELS:
                version = str(obj.labels.get(ENFORCE_VERSION) or "latest")
                out[obj.name] = (level, ctx.kube_version if version == "latest" else version)
    return out


def enforced(ctx: EnvContext, namespace: str) -> tuple[str, str] | None:
    """(level, version) the namespace enforces, from the Namespace rendered in this environment."""
    return indexed(ctx, "pod-security enforce", _enforcing).get(namespace)


def check(ctx: EnvContext, rule: Rule) -> Iterator[Finding]:
    targets = rule.params.get("target") or {}
    for pod in workloads(ctx.objects):
        obj = pod.obj
        meta = obj.value(pod_meta_path(obj.kind)) or {}
        enforcing = enforced(ctx, obj.namespace)
        level, version = enforcing or (str(targets.get(ctx.environment, "baseline")), ctx.kube_version)
        found = violations(pod.spec, meta if isinstance(meta, dict) else {}, level, version_of(version))
        missing: dict[tuple[Any, ...], list[Violation]] = {}
        for v in found:
            if v.missing:
                missing.setdefault(v.path, []).append(v)
                continue
            yield _finding(ctx, rule, obj, pod.path, v, enforcing, level)
        by_path = {tuple(_relative(c.path, pod.path)): c for c in containers(pod)}
        for path, group in missing.items():
            container = by_path.get(path[:-1])
            yield _finding(ctx, rule, obj, pod.path, group[0], enforcing, level, group,
                           _insert(ctx, container, [f for v in group for f in SECURE.get(v.missing, [])]) if container
                           else None)


def _relative(container_path: str, pod_path: str) -> tuple[Any, ...]:
    return parse_path(container_path)[len(parse_path(pod_path)):]


def _finding(ctx: EnvContext, rule: Rule, obj: RenderedObject, pod_path: str, v: Violation,
             enforcing: tuple[str, str] | None, level: str, group: list[Violation] | None = None,
             suggestion: Suggestion | None = None) -> Finding:
    if v.path and v.path[0] == "metadata":
        field = format_path((*parse_path(pod_meta_path(obj.kind)), *v.path[1:]))
    else:
        field = format_path((*parse_path(pod_path), *v.path))
    controls = group or [v]
    said = "; ".join(f"{c.message} (`{c.check}`)" for c in controls)
    whose = "this Pod" if obj.kind == "Pod" else "every pod its controller creates"
    if enforcing is not None:
        message = (f"{obj.id}: {said}. Namespace `{obj.namespace}` enforces the {level} Pod Security Standard "
                   f"(`{ENFORCE}`), so admission refuses {whose}: the rollout never becomes ready and Flux's "
                   f"health check fails.")
        severity = "error"
    else:
        message = (f"{obj.id}: {said}. {ctx.environment.capitalize()} should meet the {level} Pod Security "
                   f"Standard; nothing enforces it on namespace `{obj.namespace}` yet, but a namespace that does "
                   f"would refuse {whose}.")
        severity = rule.severity_for(ctx.environment) or "notice"
    return finding(rule, ctx, obj, field, message, severity=severity, suggestion=suggestion,
                   container=_container_name(v))


def _container_name(v: Violation) -> str | None:
    if len(v.path) > 1 and v.path[0] in ("containers", "initContainers", "ephemeralContainers"):
        seg = v.path[1]
        return str(seg[1]) if isinstance(seg, tuple) else None
    return None


def _insert(ctx: EnvContext, c: Container, lines: list[str]) -> Suggestion | None:
    """The secure settings under the container's `securityContext:` line, or a new `securityContext:`
    after its `- name:` line, in a file only this environment reads."""
    if not lines:
        return None
    obj = c.obj
    sc = obj.origin(f"{c.path}.securityContext")
    if sc.via in ("manifest", "patch") and sc.line and sc.end_line == sc.line:
        text = source_line(ctx, sc.file, sc.line)
        m = re.match(r"^(\s*)(-\s+)?securityContext:\s*(\{\s*\})?\s*$", text or "")
        if text is None or not m or not only_this_environment(ctx, sc.file):
            return None
        indent = m.group(1) + (" " * len(m.group(2)) if m.group(2) else "") + "  "
        head = text.replace("{}", "").rstrip()
        return Suggestion(sc.file or "", sc.line, sc.line, "\n".join([head, *(indent + ln for ln in lines)]))
    if sc.via != "enclosing":
        return None
    where = obj.origin(c.path)
    if where.via not in ("manifest", "patch") or not where.line or not only_this_environment(ctx, where.file):
        return None
    text = source_line(ctx, where.file, where.line)
    m = re.match(r"^(\s*)(-\s+)?[\w\"']+\s*:.*$", text or "")
    if text is None or not m:
        return None
    indent = m.group(1) + (" " * len(m.group(2)) if m.group(2) else "")
    return Suggestion(where.file or "", where.line, where.line,
                      "\n".join([text, f"{indent}securityContext:", *(f"{indent}  {ln}" for ln in lines)]))


RULE = Rule(
    id="pod-security",
    title="Pod that Pod Security admission refuses, or below its environment's standard",
    rationale="The API server refuses pods at admission when their namespace enforces a Pod Security Standard "
    "(`pod-security.kubernetes.io/enforce: baseline|restricted`): for a Deployment or StatefulSet, every pod its "
    "controller tries to create, so the rollout never becomes ready and Flux's health check fails. That is an "
    "error wherever it is enforced. Where nothing enforces a level, production should still meet `restricted` "
    "(warning) and the other environments `baseline` (notice), so the gap is seen before a namespace enforces it.",
    remediation="Set what the control asks in the container's (or the pod's) `securityContext`: "
    "`allowPrivilegeEscalation: false`, `runAsNonRoot: true`, `seccompProfile: {type: RuntimeDefault}`, "
    "`capabilities: {drop: [ALL]}`; remove privileged mode, host namespaces, hostPath volumes and host ports.",
    severity=per_env("warning", "notice", "notice"),
    params={"target": {"production": "restricted", "staging": "baseline", "development": "baseline"}},
    check=check,
    edge_cases=(
        "The checks are k8s.io/pod-security-admission's, by their ids, for the Kubernetes version the namespace's "
        "`pod-security.kubernetes.io/enforce-version` names (`latest`: the configured `kubernetes.version`); "
        "tested against upstream's own pass/fail fixtures.",
        "An enforced level is read from the Namespace object the same environment renders; a namespace the "
        "repository does not define is judged against the environment's `target`.",
        "Fields that must be set (`allowPrivilegeEscalation`, `runAsNonRoot`, `seccompProfile`, `capabilities.drop`) "
        "are one finding per container, with a suggestion that adds them to its `securityContext`.",
        "`privileged` as a target level, or `target` set to it for an environment, checks nothing.",
        "Example: a Deployment in a namespace labelled `pod-security.kubernetes.io/enforce: baseline` whose container "
        "sets `securityContext: {privileged: true}` is an error at that line (`privileged`): its pods are refused. "
        "The same container in production with no `securityContext` at all is one warning naming "
        "`allowprivilegeescalation`, `runasnonroot`, `seccompprofile_restricted` and `capabilities_restricted`, with "
        "a suggestion that adds the four settings under the container.",
    ),
    example=example(
        {"deployment.yaml": example_deployment("""\
            securityContext:
              privileged: true  #-
              allowPrivilegeEscalation: false  #+
              runAsNonRoot: true  #+
              seccompProfile: {type: RuntimeDefault}  #+
              capabilities: {drop: [ALL]}  #+
            """)},
        note="The container leaves privileged mode and sets what the restricted standard asks.",
    ),
)
