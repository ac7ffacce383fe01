"""missing-network-policy: every long-running pod is isolated for both Ingress and Egress."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bot.model import Finding
from bot.objects import EnvContext, RenderedObject
from rules.base import Rule, example, example_deployment, finding, is_kind, per_env, pod_meta_path, workloads
from rules.selectors import selector_matches

DIRECTIONS = ("Ingress", "Egress")


def policy_types(spec: dict[str, Any]) -> set[str]:
    """What a policy isolates: explicit `policyTypes`, else Ingress plus Egress if it has egress rules."""
    types = spec.get("policyTypes")
    if isinstance(types, list) and types:
        return {str(t) for t in types} & set(DIRECTIONS)
    return {"Ingress"} | ({"Egress"} if spec.get("egress") else set())


def network_policies(objects: list[RenderedObject]) -> list[tuple[RenderedObject, dict[str, Any]]]:
    return [
        (o, o.obj["spec"])
        for o in objects
        if is_kind(o, "NetworkPolicy", "networking.k8s.io") and isinstance(o.obj.get("spec"), dict)
    ]


def check(ctx: EnvContext, rule: Rule) -> Iterator[Finding]:
    policies = network_policies(ctx.objects)
    for pod in workloads(ctx.objects, long_running=True):
        obj = pod.obj
        selecting = [
            (p, spec)
            for p, spec in policies
            if p.namespace == obj.namespace and selector_matches(spec.get("podSelector"), pod.labels)
        ]
        covered: set[str] = set()
        for _, spec in selecting:
            covered |= policy_types(spec)
        missing = [d for d in DIRECTIONS if d not in covered]
        if not missing:
            continue
        if selecting:
            names = ", ".join(p.name for p, _ in selecting)
            detail = f"the NetworkPolicies selecting its pods ({names}) cover only {', '.join(sorted(covered)) or 'nothing'}"
        else:
            detail = f"no NetworkPolicy in namespace {obj.namespace or 'default'} selects its pods"
        yield finding(
            rule,
            ctx,
            obj,
            f"{pod_meta_path(obj.kind)}.labels",
            f"{obj.id}: {detail}, so {' and '.join(missing)} traffic is unrestricted in {ctx.environment}; "
            f"a compromised pod can reach (or be reached from) anything in the cluster.",
        )


RULE = Rule(
    id="missing-network-policy",
    title="Pods not isolated by NetworkPolicies for both Ingress and Egress",
    rationale=(
        "Without a policy selecting a pod, Kubernetes allows all traffic to and from it, so one "
        "compromised workload can reach every other. Error in production and staging, warning in "
        "development."
    ),
    remediation="Add a NetworkPolicy in the workload's namespace whose `podSelector` matches the pod "
    "template labels, with `policyTypes: [Ingress, Egress]` and the allowed `ingress`/`egress` rules (a "
    "namespace-wide default-deny plus specific allows is the usual pattern).",
    severity=per_env("error", "error", "warning"),
    check=check,
    edge_cases=(
        "Long-running workloads only (not Jobs/CronJobs); their pod-template labels are matched, not "
        "the workload's own labels or `spec.selector`.",
        "A workload is covered if the union of the policies selecting its pods covers both Ingress and Egress.",
        "`policyTypes` absent means Ingress, plus Egress if the policy has egress rules; explicit "
        "`policyTypes` makes rules for the other direction inert.",
        "A default-deny policy (a direction listed with no rules) counts as coverage.",
        "Full selector semantics: matchLabels and matchExpressions (In, NotIn, Exists, DoesNotExist) ANDed; "
        "`podSelector: {}` selects every pod in the namespace; a malformed or missing podSelector selects "
        "nothing.",
        "Only policies in the same namespace, compared as rendered (after the kustomize namespace "
        "transform), and in the same environment count.",
    ),
    example=example(
        {"deployment.yaml": example_deployment()},
        added={"networkpolicy.yaml": """\
            apiVersion: networking.k8s.io/v1
            kind: NetworkPolicy
            metadata:
              name: web
            spec:
              podSelector:
                matchLabels: {app: web}
              policyTypes: [Ingress, Egress]
              ingress:
                - ports: [{port: 8080}]
              egress:
                - ports: [{port: 53, protocol: UDP}]
            """},
        note="A NetworkPolicy selects the pods and restricts both directions: HTTP in, DNS out.",
    ),
)
