"""route-backend: an HTTPRoute's backendRefs must name existing Services and ports."""

from __future__ import annotations

from collections.abc import Iterator

from bot.model import Finding
from bot.objects import EnvContext
from rules.base import Rule, all_envs, finding, is_kind, opaque_namespaces


def check(ctx: EnvContext, rule: Rule) -> Iterator[Finding]:
    services = {(o.namespace, o.name): o for o in ctx.objects if is_kind(o, "Service", "")}
    opaque = opaque_namespaces(ctx.objects)
    for route in ctx.objects:
        spec = route.obj.get("spec")
        if not is_kind(route, "HTTPRoute", "gateway.networking.k8s.io") or not isinstance(spec, dict):
            continue
        for r, rule_body in enumerate(spec.get("rules") or []):
            refs = rule_body.get("backendRefs") if isinstance(rule_body, dict) else None
            for b, ref in enumerate(refs or []):
                if not isinstance(ref, dict) or ref.get("group", "") not in ("", None):
                    continue
                if ref.get("kind", "Service") != "Service":
                    continue
                ns, name = str(ref.get("namespace") or route.namespace), str(ref.get("name") or "")
                path = f"spec.rules[{r}].backendRefs[{b}]"
                svc = services.get((ns, name))
                if svc is None and ns in opaque:
                    continue
                if svc is None:
                    yield finding(
                        rule,
                        ctx,
                        route,
                        f"{path}.name",
                        f"{route.id} sends traffic to Service {ns}/{name}, which does not exist in "
                        f"{ctx.environment}; the gateway answers those requests with 500.",
                        remediation="Point the backendRef at an existing Service (check the name after "
                        "kustomize namePrefix/nameSuffix) or add the Service to this environment.",
                    )
                    continue
                port = ref.get("port")
                ports = {
                    p.get("port")
                    for p in (svc.obj.get("spec") or {}).get("ports") or []
                    if isinstance(p, dict)
                }
                if port is not None and port not in ports:
                    yield finding(
                        rule,
                        ctx,
                        route,
                        f"{path}.port",
                        f"{route.id} sends traffic to port {port} of Service {ns}/{name}, which "
                        f"exposes {', '.join(str(p) for p in sorted(ports, key=str)) or 'no ports'}.",
                        remediation="Use one of the Service's `spec.ports[].port` values.",
                    )


RULE = Rule(
    id="route-backend",
    title="HTTPRoute backend that does not exist",
    rationale="A backendRef to a missing Service or port turns every matching request into an error at "
    "the gateway; kustomize name prefixes and per-environment Services make this easy to miss.",
    remediation="Make each `backendRefs[]` name a Service, and port a Service port, rendered in the same "
    "environment.",
    severity=all_envs("error"),
    check=check,
    edge_cases=(
        "Only core `Service` backends (`group` empty, `kind` Service or unset) are checked.",
        "A Service missing from a namespace a HelmRelease installs into, or from `flux-system`, is not "
        "judged: charts are not rendered offline and Flux's own Services come from its installation "
        "(billimek's forgejo-http and flux webhook-receiver).",
        "The backend's namespace defaults to the route's; a Service in another namespace must exist there "
        "(ReferenceGrants are not checked).",
        "`port` must equal one of the Service's `spec.ports[].port`.",
    ),
)
