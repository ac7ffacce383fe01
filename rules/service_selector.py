"""service-selector: a Service must select some pod template, on a port those pods have."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from bot.model import Finding
from bot.objects import EnvContext
from rules.base import (
    WORKLOAD_GROUPS,
    PodSpec,
    Rule,
    all_envs,
    containers,
    example,
    example_deployment,
    finding,
    is_kind,
    opaque_namespaces,
    workloads,
)
from rules.creators import created_in
from rules.probe_port import declared_ports, port_reference
from rules.selectors import map_selects, pairs_on_no_template


def _selects_nothing(svc_label: str, selector: dict[str, Any], namespace: str, environment: str,
                     pods: list[PodSpec], created: list[str]) -> str:
    wanted = ", ".join(f"{k}={v}" for k, v in selector.items())
    where = f"namespace {namespace or 'default'} of {environment}"
    text = f"{svc_label} selects {wanted}, but no pod template this repository renders in {where} carries all of them"
    if created:
        text += f"; {', '.join(created)}, whose pods are not rendered here and may carry them"
    absent = pairs_on_no_template(selector, [p.labels for p in pods])
    if absent:
        shown = ", ".join(f"{k}={v}" for k, v in absent)
        text += (f". {shown} {'is' if len(absent) == 1 else 'are'} on no pod template of the namespace at all: a "
                 f"controller may add such labels at run time (the label an operator's leader election puts on "
                 f"the leader pod), and then the Service selects that pod")
    return text + ". If nothing adds them, it has no endpoints and every request to it fails."


def _index(pods: list[PodSpec]) -> tuple[dict[str, list[PodSpec]], dict[tuple[str, str, str], list[PodSpec]]]:
    """Pod templates by namespace, and by (namespace, label, value): a selector's candidates are the
    templates carrying its first pair, so each Service costs what it may select, not every template."""
    by_namespace: dict[str, list[PodSpec]] = defaultdict(list)
    by_pair: dict[tuple[str, str, str], list[PodSpec]] = defaultdict(list)
    for pod in pods:
        by_namespace[pod.obj.namespace].append(pod)
        for key, value in pod.labels.items():
            by_pair[(pod.obj.namespace, str(key), str(value))].append(pod)
    return by_namespace, by_pair


def check(ctx: EnvContext, rule: Rule) -> Iterator[Finding]:
    by_namespace, by_pair = _index(list(workloads(ctx.objects)))
    opaque = opaque_namespaces(ctx)
    created = created_in(ctx)
    for svc in ctx.objects:
        spec = svc.obj.get("spec")
        if not is_kind(svc, "Service", "") or not isinstance(spec, dict):
            continue
        selector = spec.get("selector")
        if spec.get("type") == "ExternalName" or not isinstance(selector, dict) or not selector:
            continue
        here = by_namespace.get(svc.namespace, [])
        key, value = next(iter(selector.items()))
        candidates = by_pair.get((svc.namespace, str(key), str(value)), [])
        selected: list[PodSpec] = [p for p in candidates if map_selects(selector, p.labels)]
        if not selected and svc.namespace in opaque:
            continue
        if not selected:
            made = sorted(f"{by} creates {kind} {name}" for (kind, ns, name), by in created.items()
                          if ns == svc.namespace and kind in WORKLOAD_GROUPS)
            yield finding(
                rule,
                ctx,
                svc,
                "spec.selector",
                _selects_nothing(str(svc.id), selector, svc.namespace, ctx.environment, here, made),
                remediation="Make the selector match the workload's pod-template labels (a commonLabels/labels "
                "change in the overlay often breaks this); if the pods come from elsewhere (an operator, a chart, "
                "labels added at run time), annotate the Service with "
                "`infra-review.io/ignore: \"service-selector: <reason>\"`.",
            )
            continue
        names: set[str] = set()
        for pod in selected:
            for c in containers(pod, init=False):
                names |= declared_ports(c.data)[1]
        for i, port in enumerate(spec.get("ports") or []):
            if not isinstance(port, dict):
                continue
            target = port_reference(port.get("targetPort", port.get("port")))
            # A number reaches the pods whether or not they declare it; only a name must resolve.
            if not isinstance(target, str) or target in names:
                continue
            sel = f"[{port['name']}]" if port.get("name") else f"[{i}]"
            yield finding(
                rule,
                ctx,
                svc,
                f"spec.ports{sel}.targetPort",
                f"{svc.id} forwards port {port.get('port')} to the port named {target!r}, which no container of "
                f"the selected pods ({', '.join(sorted({str(p.obj.id) for p in selected}))}) declares: the name "
                f"resolves to no port, so the Service has no endpoints for it and connections fail.",
                remediation="Set `targetPort` to a port name the selected pods' containers declare "
                "(`ports[].name`), or to the port number the application listens on.",
                locate_path=f"spec.ports{sel}.targetPort" if "targetPort" in port else f"spec.ports{sel}",
            )


RULE = Rule(
    id="service-selector",
    title="Service that selects no pods, or targets a port they lack",
    rationale="A Service whose selector or named targetPort drifted from the workload has no working endpoints; "
    "nothing fails at apply time, only requests do. A warning, since some pods come from outside the repo "
    "or get labels only at run time.",
    remediation="Align the Service's `selector` with the pod-template labels and a named `targetPort` with a "
    "port name the containers declare.",
    severity=all_envs("warning"),
    check=check,
    edge_cases=(
        "Services without a selector and `ExternalName` Services are skipped (their endpoints are managed "
        "elsewhere).",
        "Pod templates of every workload kind in the same namespace and environment are candidates.",
        "A Service selecting nothing in a namespace a HelmRelease installs into, or in `flux-system`, is not "
        "judged: the chart's pods are not rendered offline.",
        "A Service selecting nothing elsewhere stays a warning, and says what may still provide the pods: "
        "workloads that an object of the namespace creates (a Tekton EventListener's `el-<name>` Deployment; "
        "the table is under `flux-config`), and, when some selector labels are on no pod template of the "
        "namespace at all, labels that controllers add at run time (a leader-election label on the leader pod).",
        "A numeric `targetPort` (or none: it defaults to `port`) is never flagged: traffic reaches that port of "
        "the pod whether or not the container declares it. A named `targetPort` must be a `ports[].name` of a "
        "container of the selected pods (a string of digits is read as a number).",
    ),
    example=example(
        {"deployment.yaml": example_deployment(), "service.yaml": """\
            apiVersion: v1
            kind: Service
            metadata:
              name: web
            spec:
              selector:
                app: web-frontend  #-
                app: web  #+
              ports:
                - port: 80
                  targetPort: 8080
            """},
        note="The Service selects the label the Deployment's pods carry, `app: web`.",
    ),
)
