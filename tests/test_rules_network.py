"""Cross-object rules: missing-network-policy, service-selector, route-backend, probe-port; and missing-labels."""

from __future__ import annotations

import pytest

from rules import get_rule
from rules.selectors import selector_matches
from rules.testing import env_from_yaml


def run(ctx, rule_id):
    rule = get_rule(rule_id)
    return list(rule.check(ctx, rule))


def workload(kind="Deployment", ns="shop", labels="{app: api, tier: web}", api="apps/v1") -> str:
    return f"""
apiVersion: {api}
kind: {kind}
metadata: {{name: api, namespace: {ns}}}
spec:
  template:
    metadata: {{labels: {labels}}}
    spec:
      containers:
        - name: api
          image: a:1
          ports: [{{containerPort: 8080, name: http}}]
"""


def policy(spec: str, ns="shop", name="np") -> str:
    body = "\n".join("  " + line for line in spec.strip("\n").splitlines())
    return f"---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{body}\n"


@pytest.mark.parametrize(
    ("selector", "labels", "selected"),
    [
        ({}, {"a": "1"}, True),
        ({"matchLabels": {"app": "api"}}, {"app": "api", "x": "y"}, True),
        ({"matchLabels": {"app": "api"}}, {"app": "web"}, False),
        (
            {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["web", "db"]}]},
            {"tier": "web"},
            True,
        ),
        ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["web"]}]}, {}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, {"tier": ""}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, {"tier": "x"}, False),
        (
            {"matchLabels": {"app": "api"}, "matchExpressions": [{"key": "t", "operator": "Exists"}]},
            {"app": "api"},
            False,
        ),
        ({"matchExpressions": [{"key": "t", "operator": "Bogus"}]}, {"t": "x"}, False),
        ({"app": "api"}, {"app": "api"}, False),
        (None, {"app": "api"}, False),
    ],
)
def test_selector_semantics(selector, labels, selected):
    assert selector_matches(selector, labels) is selected


@pytest.mark.parametrize(
    ("policies", "missing"),
    [
        ("", "Ingress and Egress"),
        (policy("podSelector: {}\npolicyTypes: [Ingress, Egress]"), None),  # default-deny both counts
        (policy("podSelector: {matchLabels: {app: api}}\ningress: [{}]\negress: [{}]"), None),  # types absent
        (policy("podSelector: {matchLabels: {app: api}}\ningress: [{}]"), "Egress"),  # absent, no egress
        (policy("podSelector: {}\npolicyTypes: [Ingress]\negress: [{}]"), "Egress"),  # explicit types win
        (policy("podSelector: {}\npolicyTypes: [Ingress]") + policy("podSelector: {}\npolicyTypes: [Egress]", name="e"), None),
        (policy("podSelector: {}\npolicyTypes: [Ingress, Egress]", ns="other"), "Ingress and Egress"),
        (policy("podSelector: {matchExpressions: [{key: tier, operator: In, values: [web]}]}\npolicyTypes: [Ingress, Egress]"), None),
        (policy("podSelector: {matchLabels: {app: other}}\npolicyTypes: [Ingress, Egress]"), "Ingress and Egress"),
        ("---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x, namespace: shop}\nspec: null\n", "Ingress and Egress"),
    ],
)  # fmt: skip
def test_network_policy_coverage(tmp_path, policies, missing):
    found = run(env_from_yaml(tmp_path, workload() + policies), "missing-network-policy")
    if missing is None:
        assert not found
    else:
        (f,) = found
        assert f" so {missing} traffic" in f.message and f.field == "spec.template.metadata.labels"


def test_network_policy_skips_jobs_and_severity(tmp_path):
    assert not run(env_from_yaml(tmp_path, workload("Job", api="batch/v1")), "missing-network-policy")
    (f,) = run(env_from_yaml(tmp_path, workload(), "development"), "missing-network-policy")
    assert f.severity == "warning"


LABELS = """
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels:
    app.kubernetes.io/name: shop
    app.kubernetes.io/instance: {instance}
    app.kubernetes.io/version: "1.0"
    app.kubernetes.io/component: backend
    app.kubernetes.io/part-of: platform
    app.kubernetes.io/managed-by: {managed}
"""


@pytest.mark.parametrize(
    ("instance", "managed", "expected"),
    [
        ("shop-production", "flux", []),
        ("shop-prod", "flux", []),  # an alias of the environment
        ("shop-staging", "flux", [("warning", 'metadata.labels["app.kubernetes.io/instance"]')]),
        ("shop-production", "helm", [("error", 'metadata.labels["app.kubernetes.io/managed-by"]')]),
        ('""', "flux", [("error", "metadata.labels")]),
    ],
)
def test_missing_labels(tmp_path, instance, managed, expected):
    found = run(env_from_yaml(tmp_path, LABELS.format(instance=instance, managed=managed)), "missing-labels")
    assert [(f.severity, f.field) for f in found] == expected


def test_missing_labels_on_any_kind_located_at_labels(tmp_path):
    ctx = env_from_yaml(
        tmp_path,
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: x\n",
    )
    (f,) = run(ctx, "missing-labels")
    assert "name, instance, version, component, part-of, managed-by" in f.message and f.origin.line == 4


@pytest.mark.parametrize(
    ("probe", "flagged"),
    [("httpGet: {port: 8080}", False), ("httpGet: {port: http}", False), ("tcpSocket: {port: '8080'}", False),
     # a number is probed whether or not the container declares it (issue 9); only a name must resolve
     ("httpGet: {port: 9090}", False), ("tcpSocket: {port: metrics}", True), ("grpc: {port: 9000}", False),
     ("httpGet: {port: metrics}", True), ("exec: {command: [true]}", False)],
)  # fmt: skip
def test_probe_port(tmp_path, probe, flagged):
    text = workload() + f"          readinessProbe: {{{probe}}}\n"
    found = run(env_from_yaml(tmp_path, text), "probe-port")
    assert bool(found) is flagged
    if found:
        assert (
            found[0].field.endswith(".readinessProbe." + probe.split(":")[0] + ".port")
            and found[0].origin.line == 12
        )  # the readinessProbe line


SERVICE = """
---
apiVersion: v1
kind: Service
metadata: {{name: api, namespace: {ns}}}
spec:
  selector: {selector}
  ports:
    - name: web
      port: 80
{target}"""


@pytest.mark.parametrize(
    ("ns", "selector", "target", "field"),
    [
        ("shop", "{app: api}", "      targetPort: http", None),
        ("shop", "{app: api, tier: web}", "      targetPort: 8080", None),
        ("shop", "{app: api}", "      targetPort: 9999", None),  # a number reaches the pod, declared or not
        ("shop", "{app: api}", "", None),  # defaults to port 80, a number
        ("shop", "{app: api}", "      targetPort: metrics", "spec.ports[web].targetPort"),  # a name must resolve
        ("shop", "{app: nope}", "      targetPort: http", "spec.selector"),
        ("other", "{app: api}", "      targetPort: http", "spec.selector"),
    ],
)
def test_service_selector(tmp_path, ns, selector, target, field):
    text = workload() + SERVICE.format(ns=ns, selector=selector, target=target + "\n" if target else "")
    found = run(env_from_yaml(tmp_path, text), "service-selector")
    assert [f.field for f in found] == ([field] if field else [])
    assert all(f.severity == "warning" for f in found)


ROUTE = """
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r, namespace: shop}}
spec:
  rules:
    - backendRefs:
        - {ref}
"""


@pytest.mark.parametrize(
    ("ref", "field"),
    [
        ("{name: api, port: 80}", None),
        ("{name: api}", None),
        ("{name: api, port: 8080}", "spec.rules[0].backendRefs[0].port"),
        ("{name: nope, port: 80}", "spec.rules[0].backendRefs[0].name"),
        ("{name: api, namespace: other, port: 80}", "spec.rules[0].backendRefs[0].name"),
        ("{name: bucket, kind: Backend, group: example.com}", None),
    ],
)
def test_route_backend(tmp_path, ref, field):
    text = workload() + SERVICE.format(ns="shop", selector="{app: api}", target="") + ROUTE.format(ref=ref)
    found = run(env_from_yaml(tmp_path, text), "route-backend")
    assert [f.field for f in found] == ([field] if field else [])
    if found:
        assert found[0].origin.line == text.lstrip("\n").splitlines().index("        - " + ref) + 1
