"""service-selector: a Service must select some pod template, on a port those pods have."""

from __future__ import annotations

from collections.abc import Iterator

from bot.model import Finding
from bot.objects import EnvContext
from rules.base import PodSpec, Rule, all_envs, containers, finding, is_kind, opaque_namespaces, workloads
from rules.probe_port import declared_ports
from rules.selectors import map_selects


def check(ctx: EnvContext, rule: Rule) -> Iterator[Finding]:
    pods = list(workloads(ctx.objects))
    opaque = opaque_namespaces(ctx.objects)
    for svc in ctx.objects:
        spec = svc.obj.get("spec")
        if not is_kind(svc, "Service", "") or not isinstance(spec, dict):
            continue
        selector = spec.get("selector")
        if spec.get("type") == "ExternalName" or not isinstance(selector, dict) or not selector:
            continue
        selected: list[PodSpec] = [
            p for p in pods if p.obj.namespace == svc.namespace and map_selects(selector, p.labels)
        ]
        if not selected and svc.namespace in opaque:
            continue
        if not selected:
            wanted = ", ".join(f"{k}={v}" for k, v in selector.items())
            yield finding(
                rule,
                ctx,
                svc,
                "spec.selector",
                f"{svc.id} selects {wanted}, which matches no pod template in namespace "
                f"{svc.namespace or 'default'} of {ctx.environment}: it has no endpoints and every request fails.",
                remediation="Make the selector match the workload's pod-template labels (a commonLabels/labels "
                "change in the overlay often breaks this).",
            )
            continue
        numbers: set[int] = set()
        names: set[str] = set()
        for pod in selected:
            for c in containers(pod, init=False):
                n, m = declared_ports(c.data)
                numbers |= n
                names |= m
        for i, port in enumerate(spec.get("ports") or []):
            if not isinstance(port, dict):
                continue
            target = port.get("targetPort", port.get("port"))
            if isinstance(target, str) and target.isdigit():
                target = int(target)
            if target is None or target in (numbers if isinstance(target, int) else names):
                continue
            sel = f"[{port['name']}]" if port.get("name") else f"[{i}]"
            yield finding(
                rule,
                ctx,
                svc,
                f"spec.ports{sel}.targetPort",
                f"{svc.id} forwards port {port.get('port')} to {target!r}, which no selected pod "
                f"({', '.join(sorted({str(p.obj.id) for p in selected}))}) declares; connections will be refused.",
                remediation="Set `targetPort` to a declared container port number or name of the selected pods.",
                locate_path=f"spec.ports{sel}.targetPort" if "targetPort" in port else f"spec.ports{sel}",
            )


RULE = Rule(
    id="service-selector",
    title="Service that selects no pods, or targets a port they lack",
    rationale="A Service whose selector or targetPort drifted from the workload has no working endpoints; "
    "nothing fails at apply time, only requests do. A warning, since some pods come from outside the repo.",
    remediation="Align the Service's `selector` with the pod-template labels and `targetPort` with a "
    "declared container port.",
    severity=all_envs("warning"),
    check=check,
    edge_cases=(
        "Services without a selector and `ExternalName` Services are skipped (their endpoints are managed "
        "elsewhere).",
        "Pod templates of every workload kind in the same namespace and environment are candidates.",
        "A Service selecting nothing in a namespace a HelmRelease installs into, or in `flux-system`, is not "
        "judged: the chart's pods are not rendered offline.",
        "`targetPort` defaults to `port`; a number must be a declared `containerPort` of a selected pod's "
        "container, a name a declared port name.",
    ),
)
