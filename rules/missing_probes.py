"""missing-probes: long-running containers need both a liveness and a readiness probe."""

from __future__ import annotations

from collections.abc import Iterator

from bot.model import Finding
from bot.objects import EnvContext
from rules.base import Rule, containers, example, example_deployment, finding, per_env, workloads

PROBES = ("livenessProbe", "readinessProbe")


def check(ctx: EnvContext, rule: Rule) -> Iterator[Finding]:
    required = list(rule.params.get("required", PROBES))
    for pod in workloads(ctx.objects, long_running=True):
        for c in containers(pod, init=False):
            missing = [p for p in required if not isinstance(c.data.get(p), dict)]
            if not missing:
                continue
            consequence = []
            if "livenessProbe" in missing:
                consequence.append("a hung process is never restarted")
            if "readinessProbe" in missing:
                consequence.append("traffic reaches the pod before it is ready and during shutdown")
            yield finding(
                rule,
                ctx,
                pod.obj,
                c.path,
                f"Container {c.name!r} of {pod.obj.id} has no {' and no '.join(missing)}, so "
                f"{' and '.join(consequence)} ({ctx.environment}).",
                container=c.name,
                locate_path=f"{c.path}.{missing[0]}",
            )


RULE = Rule(
    id="missing-probes",
    title="Long-running container without liveness and readiness probes",
    rationale=(
        "Without a readiness probe, rollouts send traffic to pods that cannot serve yet; without a "
        "liveness probe, a deadlocked process keeps its slot forever. Error in production and staging "
        "(staging is where rollouts are rehearsed), warning in development."
    ),
    remediation="Add a `livenessProbe` and a `readinessProbe` (e.g. `httpGet` on a health endpoint of a "
    "declared container port) to the container.",
    severity=per_env("error", "error", "warning"),
    params={"required": list(PROBES)},
    check=check,
    own_workloads=True,
    edge_cases=(
        "Only long-running workloads: Deployment, StatefulSet, DaemonSet, ReplicaSet, Pod. Jobs and "
        "CronJobs are exempt.",
        "Init containers are exempt (they run to completion before the pod is ready).",
        "A `startupProbe` replaces neither probe.",
        "Each container is judged on its own: one finding per container naming the missing probes, located "
        "where the first missing probe belongs: where the pull request or a patch removed it, else at the "
        "container in the document that introduces it (the base).",
    ),
    example=example(
        {"deployment.yaml": example_deployment("""\
            livenessProbe:  #+
              httpGet: {path: /healthz, port: 8080}  #+
            readinessProbe:  #+
              httpGet: {path: /ready, port: 8080}  #+
            """)},
        note="The container gets a liveness and a readiness probe.",
    ),
)
