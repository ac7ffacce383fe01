"""single-replica: production Deployments/StatefulSets need at least two pods (or an HPA that keeps two)."""

from __future__ import annotations

from collections.abc import Iterator

from bot.model import Finding, as_dict
from bot.objects import EnvContext, RenderedObject
from rules.base import (
    Rule,
    env_policy,
    example,
    example_deployment,
    finding,
    indexed,
    is_kind,
    per_env,
    replace_scalar_line,
)

SCALED_KINDS = ("Deployment", "StatefulSet")
MIN_REPLICAS = 2


def is_scaled_workload(obj: RenderedObject) -> bool:
    return obj.kind in SCALED_KINDS and is_kind(obj, obj.kind, "apps", "extensions")


def is_hpa(obj: RenderedObject) -> bool:
    return is_kind(obj, "HorizontalPodAutoscaler", "autoscaling")


def hpa_target(hpa: RenderedObject) -> tuple[str, str] | None:
    """(kind, name) of the Deployment/StatefulSet an HPA scales, or None for other targets."""
    ref = (hpa.obj.get("spec") or {}).get("scaleTargetRef") if isinstance(hpa.obj.get("spec"), dict) else None
    if not isinstance(ref, dict) or ref.get("kind") not in SCALED_KINDS:
        return None
    group = str(ref.get("apiVersion") or "apps/").rpartition("/")[0]
    return (str(ref["kind"]), str(ref.get("name") or "")) if group in ("apps", "extensions") else None


def _hpas_by_target(ctx: EnvContext) -> dict[tuple[str, str, str], list[RenderedObject]]:
    out: dict[tuple[str, str, str], list[RenderedObject]] = {}
    for o in ctx.objects:
        target = hpa_target(o) if is_hpa(o) else None
        if target is not None:
            out.setdefault((o.namespace, *target), []).append(o)
    return out


def hpas_for(ctx: EnvContext, workload: RenderedObject) -> list[RenderedObject]:
    """The HPAs of the environment that scale `workload`."""
    return indexed(ctx, "hpas", _hpas_by_target).get((workload.namespace, workload.kind, workload.name), [])


def count(value: object) -> int:
    """A replica count as Kubernetes defaults it (unset = 1); a non-integer counts as 1."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 1


def replicas(obj: RenderedObject) -> int:
    spec = obj.obj.get("spec")
    return count(spec.get("replicas") if isinstance(spec, dict) else None)


def min_replicas(hpa: RenderedObject) -> int:
    spec = hpa.obj.get("spec")
    return count(spec.get("minReplicas") if isinstance(spec, dict) else None)


def max_replicas(hpa: RenderedObject) -> int:
    spec = hpa.obj.get("spec")
    return count(spec.get("maxReplicas") if isinstance(spec, dict) else None)


def scales_to_zero(hpa: RenderedObject) -> bool:
    """`minReplicas: 0` with only Object or External metrics: Kubernetes' scale-to-zero (the
    HPAScaleToZero feature gate accepts nothing else), a design choice rather than a missing value."""
    spec = as_dict(hpa.obj.get("spec"))
    metrics = spec.get("metrics")
    return (spec.get("minReplicas") == 0 and isinstance(metrics, list) and bool(metrics)
            and all(isinstance(m, dict) and m.get("type") in ("Object", "External") for m in metrics))


def fires(ctx: EnvContext, value: int) -> bool:
    """Whether this rule reports a replica count in ctx's environment (by its default severity)."""
    return RULE.severity_for(ctx.environment) is not None and value < RULE.params["min_replicas"]


def target_count(ctx: EnvContext, rule: Rule) -> int:
    return max(int(rule.params.get("min_replicas", MIN_REPLICAS)), int(env_policy(ctx).get("replicas") or 0))


def check(ctx: EnvContext, rule: Rule) -> Iterator[Finding]:
    least = int(rule.params.get("min_replicas", MIN_REPLICAS))
    target = target_count(ctx, rule)
    for obj in ctx.objects:
        if is_hpa(obj) and hpa_target(obj) and scales_to_zero(obj):
            if max_replicas(obj) < least:
                kind, name = hpa_target(obj) or ("", "")
                yield finding(
                    rule,
                    ctx,
                    obj,
                    "spec.maxReplicas",
                    f"{obj.id} scales {kind} {name} to zero on its metric by design, but never above "
                    f"{max_replicas(obj)} pod: whenever it runs in {ctx.environment}, one node drain or crash "
                    f"is an outage.",
                    remediation=f"Raise `spec.maxReplicas` to at least {target} and give the metric a target that "
                    f"asks for {least} pods while the workload is active; `minReplicas: 0` can stay.",
                    suggestion=replace_scalar_line(ctx, obj, "spec.maxReplicas", str(target)),
                )
        elif is_hpa(obj) and hpa_target(obj) and min_replicas(obj) < least:
            kind, name = hpa_target(obj) or ("", "")
            unset = "minReplicas" not in (obj.obj.get("spec") or {})
            yield finding(
                rule,
                ctx,
                obj,
                "spec.minReplicas",
                f"{obj.id} lets {kind} {name} scale down to {min_replicas(obj)} pod"
                f"{' (minReplicas unset)' if unset else ''}; in {ctx.environment} one node drain or crash "
                f"is then an outage.",
                remediation=f"Set `spec.minReplicas: {target}` on the HPA.",
                suggestion=replace_scalar_line(ctx, obj, "spec.minReplicas", str(target)),
            )
        elif is_scaled_workload(obj) and not hpas_for(ctx, obj) and replicas(obj) < least:
            unset = "replicas" not in (obj.obj.get("spec") or {})
            yield finding(
                rule,
                ctx,
                obj,
                "spec.replicas",
                f"{obj.id} runs {'1 replica (replicas unset)' if unset else f'{replicas(obj)} replica'} in "
                f"{ctx.environment}: a node drain, crash or rollout leaves it with no ready pod.",
                remediation=f"Set `spec.replicas: {target}` (or add an HPA with `minReplicas` >= {least}).",
                suggestion=replace_scalar_line(ctx, obj, "spec.replicas", str(target)),
            )


RULE = Rule(
    id="single-replica",
    title="Single replica in production",
    rationale=(
        "One pod means every node drain, eviction or crash is downtime. Only production is held to "
        "this (the seed allows one replica in development and staging uses env-defaults)."
    ),
    remediation="Set `spec.replicas` to at least 2 (the production default is 3), or let an HPA with "
    "`minReplicas` >= 2 manage it.",
    severity=per_env("error", None, None),
    params={"min_replicas": MIN_REPLICAS},
    check=check,
    own_workloads=True,
    edge_cases=(
        "Deployments and StatefulSets (apps group); `replicas` unset counts as 1.",
        "If an HPA in the same namespace targets the workload, the workload's own `replicas` is ignored and "
        "the HPA's `minReplicas` (unset = 1) must be >= 2; the finding goes on the HPA.",
        "An HPA targeting a Deployment/StatefulSet is judged on its `minReplicas` even when its target is "
        "not rendered in the same environment.",
        "An HPA that scales to zero by design (`minReplicas: 0` with only Object or External metrics, the "
        "HPAScaleToZero feature) is judged on its `maxReplicas` instead: the pods it runs while active.",
        "The suggestion replaces the `replicas:`/`minReplicas:` line with the environment's minimum when that "
        "value comes from a manifest or patch line.",
    ),
    example=example(
        {"deployment.yaml": example_deployment(replicas="""\
            replicas: 1  #-
            replicas: 3  #+
            """)},
        note="Production runs three replicas, its default (two is the least this rule accepts).",
    ),
)
