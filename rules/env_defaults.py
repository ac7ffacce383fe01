"""env-defaults: deviations from the per-environment table (replicas, resources, log level)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bot.model import Finding
from bot.objects import EnvContext, RenderedObject
from rules import single_replica as sr
from rules.base import (
    Rule,
    containers,
    env_policy,
    example,
    example_configmap,
    finding,
    is_kind,
    key_path,
    parse_quantity,
    per_env,
    replace_scalar_line,
    workloads,
)

VERBOSE = ("trace", "debug")


def _replica_findings(ctx: EnvContext, rule: Rule, minimum: int) -> Iterator[Finding]:
    for obj in ctx.objects:
        if sr.is_hpa(obj) and sr.hpa_target(obj) and sr.scales_to_zero(obj):
            value, field, what = sr.max_replicas(obj), "spec.maxReplicas", "maxReplicas (it scales to zero by design)"
        elif sr.is_hpa(obj) and sr.hpa_target(obj):
            value, field, what = sr.min_replicas(obj), "spec.minReplicas", "minReplicas"
        elif sr.is_scaled_workload(obj) and not sr.hpas_for(ctx, obj):
            value, field, what = sr.replicas(obj), "spec.replicas", "replicas"
        else:
            continue
        if value >= minimum or sr.fires(ctx, value):
            continue
        yield finding(
            rule,
            ctx,
            obj,
            field,
            f"{obj.id} has {what} {value}, below the {ctx.environment} minimum of {minimum}: it has less "
            f"headroom for a node failure during a rollout than this environment is sized for.",
            remediation=f"Set `{field}: {minimum}`, or change the environment table in .github/infra-review.yml.",
            suggestion=replace_scalar_line(ctx, obj, field, str(minimum)),
        )


def _resource_findings(ctx: EnvContext, rule: Rule, row: dict[str, Any]) -> Iterator[Finding]:
    """The table sizes the environment's services: a Job or CronJob is sized for its task."""
    for pod in workloads(ctx.objects, long_running=True):
        for c in containers(pod, init=False):
            resources = c.data.get("resources")
            if not isinstance(resources, dict):
                continue
            for part in ("requests", "limits"):
                block, defaults = resources.get(part), row.get(part) or {}
                if not isinstance(block, dict):
                    continue
                for res in ("cpu", "memory"):
                    have, want = parse_quantity(block.get(res)), parse_quantity(defaults.get(res))
                    if have is None or want is None or have >= want:
                        continue
                    path = f"{c.path}.resources.{part}.{res}"
                    yield finding(
                        rule,
                        ctx,
                        pod.obj,
                        path,
                        f"Container {c.name!r} of {pod.obj.id}: {part}.{res} {block.get(res)} is below the "
                        f"{ctx.environment} default of {defaults.get(res)}, so it is sized for a smaller "
                        f"environment and risks throttling or OOM kills under {ctx.environment} load.",
                        remediation=f"Raise `{part}.{res}` to at least {defaults.get(res)} (or record why in the "
                        "environment table of .github/infra-review.yml).",
                        container=c.name,
                        suggestion=replace_scalar_line(ctx, pod.obj, path, str(defaults.get(res))),
                    )


def _verbose(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower() in VERBOSE


def _log_findings(ctx: EnvContext, rule: Rule, keys: set[str]) -> Iterator[Finding]:
    def says(obj: RenderedObject, path: str, where: str, container: str | None = None) -> Finding:
        return finding(
            rule,
            ctx,
            obj,
            path,
            f"{where} sets a debug log level in {ctx.environment}: debug logs cost storage, slow the "
            f"service and often print request payloads or credentials.",
            remediation=f"Use `info` (the {ctx.environment} default) in this overlay.",
            container=container,
        )

    for obj in ctx.objects:
        data = obj.obj.get("data") if is_kind(obj, "ConfigMap", "") else None
        if isinstance(data, dict):
            for key, value in data.items():
                if str(key).lower() in keys and _verbose(value):
                    yield says(obj, key_path("data", str(key)), f"{obj.id} key {key!r}")
    for pod in workloads(ctx.objects):
        for c in containers(pod):
            for item in c.data.get("env") or []:
                if (
                    isinstance(item, dict)
                    and str(item.get("name", "")).lower() in keys
                    and _verbose(item.get("value"))
                ):
                    yield says(
                        pod.obj,
                        f"{c.path}.env[{item['name']}].value",
                        f"Container {c.name!r} of {pod.obj.id} env {item['name']!r}",
                        c.name,
                    )


def check(ctx: EnvContext, rule: Rule) -> Iterator[Finding]:
    row = env_policy(ctx)
    if isinstance(row.get("replicas"), int):
        yield from _replica_findings(ctx, rule, row["replicas"])
    yield from _resource_findings(ctx, rule, row)
    if str(row.get("log_level", "info")).lower() not in VERBOSE:
        yield from _log_findings(ctx, rule, {str(k).lower() for k in rule.params.get("log_level_keys", [])})


RULE = Rule(
    id="env-defaults",
    title="Deviation from the environment's defaults",
    rationale=(
        "The environment table (docs/rules.md) sizes each environment: production runs 3+ replicas with "
        "larger requests and limits and logs at `info`. A value below it usually means a development "
        "setting leaked into a higher overlay. Warning in production and staging, notice in development."
    ),
    remediation="Bring the value up to the environment's default in the overlay's patch, or change the "
    "table for this repository under `policy.environments` in .github/infra-review.yml.",
    severity=per_env("warning", "warning", "notice"),
    params={"log_level_keys": ["LOG_LEVEL"]},
    check=check,
    own_workloads=True,
    edge_cases=(
        "Replicas of Deployments/StatefulSets below the environment minimum, not repeated where "
        "single-replica fires (production, fewer than 2). For an HPA-targeted workload the HPA's "
        "`minReplicas` is the count judged, and the finding goes on the HPA.",
        "requests/limits cpu/memory below the table, compared as Kubernetes quantities (`100m`, `0.5`, "
        "`128Mi`, `1Gi`, `1G`, `1e3`, plain numbers). A missing value is not 'below': missing-resources "
        "reports it. Unparseable quantities are skipped. Init containers are not compared, nor Jobs and "
        "CronJobs: the table sizes long-running services, a job is sized for its task.",
        "`LOG_LEVEL` of `debug` or `trace` (case-insensitive; ConfigMap data including generator literals, "
        "container env literals) where the table's log level is not verbose (staging, production).",
    ),
    example=example(
        {"configmap.yaml": example_configmap("""\
            LOG_LEVEL: debug  #-
            LOG_LEVEL: info  #+
            """)},
        note="Production logs at `info`, its default, instead of the `debug` level copied from development.",
    ),
)
