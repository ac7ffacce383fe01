"""route-backend: an HTTPRoute's backendRefs must name existing Services and ports."""

from __future__ import annotations

from collections.abc import Iterator

from bot.model import Finding
from bot.objects import EnvContext, RenderedObject
from rules.base import Rule, all_envs, at_most, example, finding, is_kind, opaque_namespaces
from rules.creators import GENERATORS, created_in, files_defining

MANAGED_ELSEWHERE = (
    "If another repository, a chart or an operator creates the Service, nothing is wrong: declare the kind that "
    "creates it under `creators:` in .github/infra-review.yml, or annotate the route with "
    "`infra-review.io/ignore: \"route-backend: <reason>\"`. Otherwise point the backendRef at a Service of this "
    "environment (check the name after kustomize namePrefix/nameSuffix) or add the Service."
)


def _defined_elsewhere(ctx: EnvContext, services: dict[tuple[str, str], RenderedObject], name: str) -> str | None:
    """Where the repository defines a Service of this name that this environment does not render there:
    in another namespace of the environment, or in a file (another environment, a base whose name
    kustomize changes). None when it defines none."""
    others = sorted(ns or "default" for ns, n in services if n == name)
    if others:
        return f"a Service `{name}` is rendered in namespace {', '.join(others)}"
    model = ctx.repo
    files = files_defining(model, "Service", "", name) if getattr(model, "tree", None) is not None else []
    if files:
        shown = ", ".join(f"`{f}`" for f in files[:3]) + (", …" if len(files) > 3 else "")
        return f"the repository defines a Service `{name}` in {shown}, but not under this name and namespace here"
    return None


def check(ctx: EnvContext, rule: Rule) -> Iterator[Finding]:
    services = {(o.namespace, o.name): o for o in ctx.objects if is_kind(o, "Service", "")}
    opaque = opaque_namespaces(ctx)
    created = created_in(ctx)
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
                if svc is None and (ns in opaque or ("Service", ns, name) in created):
                    continue  # a chart's or a controller's Service: its ports are not known here
                shown = f"{ns or 'default'}/{name}"
                if svc is None:
                    elsewhere = _defined_elsewhere(ctx, services, name)
                    if elsewhere is not None:
                        yield finding(
                            rule,
                            ctx,
                            route,
                            f"{path}.name",
                            f"{route.id} sends traffic to Service {shown}, which is not rendered in "
                            f"{ctx.environment} ({elsewhere}); the gateway answers those requests with 500.",
                            remediation="Point the backendRef at the Service's rendered name and namespace (check "
                            "kustomize namePrefix/nameSuffix and `namespace:`) or render the Service in this "
                            "environment.",
                        )
                        continue
                    yield finding(
                        rule,
                        ctx,
                        route,
                        f"{path}.name",
                        f"{route.id} sends traffic to Service {shown}, which is not defined in this repository "
                        f"(it may be managed elsewhere; if not, the gateway answers those requests with 500 in "
                        f"{ctx.environment}).",
                        remediation=MANAGED_ELSEWHERE,
                        severity=at_most(rule, ctx, "warning"),
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
                        f"{route.id} sends traffic to port {port} of Service {shown}, which "
                        f"exposes {', '.join(str(p) for p in sorted(ports, key=str)) or 'no ports'}.",
                        remediation="Use one of the Service's `spec.ports[].port` values.",
                    )


RULE = Rule(
    id="route-backend",
    title="HTTPRoute backend that does not exist",
    rationale="A backendRef to a missing Service or port turns every matching request into an error at "
    "the gateway; kustomize name prefixes and per-environment Services make this easy to miss. A Service "
    "that nothing in the repository defines or creates may be managed elsewhere, so that is a warning.",
    remediation="Make each `backendRefs[]` name a Service, and port a Service port, rendered in the same "
    "environment.",
    severity=all_envs("error"),
    check=check,
    edge_cases=(
        "Only core `Service` backends (`group` empty, `kind` Service or unset) are checked.",
        "A Service missing from a namespace a HelmRelease installs into, or from `flux-system`, is not "
        "judged: charts are not rendered offline and Flux's own Services come from its installation "
        "(billimek's forgejo-http and flux webhook-receiver).",
        "A Service that an object of the environment creates is defined (its port is not checked): "
        + "; ".join(g.describe() for g in GENERATORS if g.creates == "Service")
        + ". `creators:` in .github/infra-review.yml adds kinds (`{kind, group, creates: {kind, name}}`, "
        "the name a template over `{name}`, `{namespace}` and `{spec.field}`); the whole table is under "
        "`flux-config`.",
        "Error: a Service the repository defines, but not rendered under that name and namespace in this "
        "environment (another namespace, another environment, a kustomize namePrefix the route does not follow).",
        "Warning at most (a per-repository `severity` still applies): a Service nothing in the repository "
        "defines or creates, said as \"not defined in this repository\", since it may be managed elsewhere.",
        "The backend's namespace defaults to the route's; a Service in another namespace must exist there "
        "(ReferenceGrants are not checked).",
        "`port` must equal one of the Service's `spec.ports[].port`.",
    ),
    example=example(
        {"service.yaml": """\
            apiVersion: v1
            kind: Service
            metadata:
              name: web
            spec:
              selector: {app: web}
              ports: [{port: 80, targetPort: 8080}]
            """,
         "httproute.yaml": """\
            apiVersion: gateway.networking.k8s.io/v1
            kind: HTTPRoute
            metadata:
              name: web
            spec:
              parentRefs: [{name: public}]
              rules:
                - backendRefs:
                    - name: web
                      port: 8080  #-
                      port: 80  #+
            """},
        note="The route sends traffic to the port the Service exposes, 80 (8080 is the pods' port behind it).",
    ),
)
