"""The CRD schemas vendored in bot/validate/crds/ (bot/validate/vendor_crds.py): present, compilable, and
strict enough to catch a misspelt field while accepting the objects people write."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot.validate.vendor_crds import strip_descriptions

CRDS = Path(__file__).resolve().parent.parent / "bot" / "validate" / "crds"

try:
    import jsonschema_rs

    def errors(schema: dict[str, Any], obj: dict[str, Any]) -> list[str]:
        return [str(e) for e in jsonschema_rs.validator_for(schema).iter_errors(obj)]
except ImportError:  # pragma: no cover - jsonschema-rs is the engine bot/validate uses
    from jsonschema import Draft202012Validator

    def errors(schema: dict[str, Any], obj: dict[str, Any]) -> list[str]:
        return [e.message for e in Draft202012Validator(schema).iter_errors(obj)]


def load(name: str) -> dict[str, Any]:
    return json.loads((CRDS / name).read_text(encoding="utf-8"))


FLUX_KEYS = {
    "source.toolkit.fluxcd.io/v1|GitRepository", "source.toolkit.fluxcd.io/v1|OCIRepository",
    "source.toolkit.fluxcd.io/v1|HelmRepository", "source.toolkit.fluxcd.io/v1|HelmChart",
    "source.toolkit.fluxcd.io/v1|Bucket", "source.toolkit.fluxcd.io/v1|ExternalArtifact",
    "kustomize.toolkit.fluxcd.io/v1|Kustomization", "helm.toolkit.fluxcd.io/v2|HelmRelease",
    "notification.toolkit.fluxcd.io/v1beta3|Alert", "notification.toolkit.fluxcd.io/v1beta3|Provider",
    "notification.toolkit.fluxcd.io/v1|Receiver", "image.toolkit.fluxcd.io/v1|ImageRepository",
    "image.toolkit.fluxcd.io/v1|ImagePolicy", "image.toolkit.fluxcd.io/v1|ImageUpdateAutomation",
}
GATEWAY_KEYS = {
    "gateway.networking.k8s.io/v1|Gateway", "gateway.networking.k8s.io/v1beta1|Gateway",
    "gateway.networking.k8s.io/v1|GatewayClass", "gateway.networking.k8s.io/v1beta1|GatewayClass",
    "gateway.networking.k8s.io/v1|HTTPRoute", "gateway.networking.k8s.io/v1beta1|HTTPRoute",
    "gateway.networking.k8s.io/v1|GRPCRoute",
    "gateway.networking.k8s.io/v1|ReferenceGrant", "gateway.networking.k8s.io/v1beta1|ReferenceGrant",
    "gateway.networking.k8s.io/v1|TCPRoute", "gateway.networking.k8s.io/v1alpha2|TCPRoute",
    "gateway.networking.k8s.io/v1|TLSRoute", "gateway.networking.k8s.io/v1alpha2|TLSRoute",
    "gateway.networking.k8s.io/v1alpha3|TLSRoute",
    "gateway.networking.k8s.io/v1|UDPRoute", "gateway.networking.k8s.io/v1alpha2|UDPRoute",
}


@pytest.fixture(scope="module")
def schemas() -> dict[str, dict[str, Any]]:
    return {**load("flux.json")["schemas"], **load("gateway-api.json")["schemas"]}


def schema_of(schemas: dict[str, dict[str, Any]], obj: dict[str, Any]) -> dict[str, Any]:
    return schemas[f"{obj['apiVersion']}|{obj['kind']}"]


@pytest.mark.parametrize(("name", "keys", "tag"), [
    ("flux.json", FLUX_KEYS, "v2.9.4"),
    ("gateway-api.json", GATEWAY_KEYS, "v1.6.1"),
])
def test_files_load_with_expected_kinds(name: str, keys: set[str], tag: str) -> None:
    doc = load(name)
    assert set(doc) == {"source", "schemas"}
    assert tag in doc["source"] and "\n" not in doc["source"]
    assert keys <= set(doc["schemas"]), keys - set(doc["schemas"])
    for key, schema in doc["schemas"].items():
        api_version, _, kind = key.partition("|")
        assert "/" in api_version and kind, key
        assert schema["type"] == "object" and schema["additionalProperties"] is False, key
        assert schema == strip_descriptions(schema), f"{key} still has descriptions"


def test_every_schema_compiles(schemas: dict[str, dict[str, Any]]) -> None:
    for key, schema in schemas.items():
        errors(schema, {})  # builds the validator: every pattern is a regex the engine takes
        assert key


def test_a_field_named_description_survives(schemas: dict[str, dict[str, Any]]) -> None:
    gateway_class = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
                     "metadata": {"name": "internal"},
                     "spec": {"controllerName": "example.com/gateway-controller", "description": "internal"}}
    assert errors(schema_of(schemas, gateway_class), gateway_class) == []


KUSTOMIZATION = {
    "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
    "metadata": {"name": "apps", "namespace": "flux-system"},
    "spec": {
        "interval": "10m", "retryInterval": "1m", "timeout": "5m", "path": "./apps/production",
        "prune": True, "wait": True,
        "sourceRef": {"kind": "GitRepository", "name": "flux-system"},
        "dependsOn": [{"name": "infrastructure"}],
        "postBuild": {"substitute": {"cluster": "prod"},
                      "substituteFrom": [{"kind": "ConfigMap", "name": "cluster-vars"}]},
        "patches": [{"patch": "- op: add\n  path: /metadata/labels/x\n  value: y",
                     "target": {"kind": "Deployment"}}],
    },
}
HELMRELEASE = {
    "apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
    "metadata": {"name": "podinfo", "namespace": "apps"},
    "spec": {
        "interval": "30m", "releaseName": "podinfo", "targetNamespace": "apps",
        "chart": {"spec": {"chart": "podinfo", "version": ">=6.0.0 <7.0.0", "interval": "12h",
                           "sourceRef": {"kind": "HelmRepository", "name": "podinfo",
                                         "namespace": "flux-system"}}},
        "install": {"remediation": {"retries": 3}},
        "upgrade": {"remediation": {"retries": 3, "remediateLastFailure": True}},
        "values": {"replicaCount": 2, "ingress": {"enabled": True, "hosts": [{"host": "podinfo.example.com"}]}},
        "valuesFrom": [{"kind": "ConfigMap", "name": "podinfo-values", "valuesKey": "values.yaml"}],
    },
}
GITREPOSITORY = {
    "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
    "metadata": {"name": "flux-system", "namespace": "flux-system"},
    "spec": {"interval": "1m", "url": "ssh://git@github.com/example/fleet",
             "ref": {"branch": "main"}, "secretRef": {"name": "flux-system"},
             "ignore": "/*\n!/deploy\n"},
}
OCIREPOSITORY = {
    "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "OCIRepository",
    "metadata": {"name": "podinfo", "namespace": "flux-system"},
    "spec": {"interval": "5m", "url": "oci://ghcr.io/stefanprodan/manifests/podinfo",
             "ref": {"semver": ">=6.0.0"}, "provider": "generic"},
}
HELMREPOSITORY = {
    "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "HelmRepository",
    "metadata": {"name": "podinfo", "namespace": "flux-system"},
    "spec": {"interval": "1h", "url": "https://stefanprodan.github.io/podinfo"},
}
ALERT = {
    "apiVersion": "notification.toolkit.fluxcd.io/v1beta3", "kind": "Alert",
    "metadata": {"name": "slack", "namespace": "flux-system"},
    "spec": {"providerRef": {"name": "slack"}, "eventSeverity": "error",
             "eventSources": [{"kind": "Kustomization", "name": "*"}, {"kind": "HelmRelease", "name": "*"}]},
}
PROVIDER = {
    "apiVersion": "notification.toolkit.fluxcd.io/v1beta3", "kind": "Provider",
    "metadata": {"name": "slack", "namespace": "flux-system"},
    "spec": {"type": "slack", "channel": "alerts", "secretRef": {"name": "slack-url"}},
}
IMAGEPOLICY = {
    "apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImagePolicy",
    "metadata": {"name": "podinfo", "namespace": "flux-system"},
    "spec": {"imageRepositoryRef": {"name": "podinfo"}, "policy": {"semver": {"range": "6.x"}}},
}
HTTPROUTE = {
    "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
    "metadata": {"name": "podinfo", "namespace": "apps"},
    "spec": {
        "parentRefs": [{"name": "public", "namespace": "gateways", "sectionName": "https"}],
        "hostnames": ["podinfo.example.com"],
        "rules": [{
            "matches": [{"path": {"type": "PathPrefix", "value": "/api"},
                         "headers": [{"name": "x-canary", "value": "true"}]}],
            "filters": [{"type": "RequestHeaderModifier",
                         "requestHeaderModifier": {"add": [{"name": "x-via", "value": "gw"}]}}],
            "backendRefs": [{"name": "podinfo", "port": 9898, "weight": 90},
                            {"name": "podinfo-canary", "port": 9898, "weight": 10}],
        }],
    },
}
GATEWAY = {
    "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
    "metadata": {"name": "public", "namespace": "gateways"},
    "spec": {"gatewayClassName": "cilium", "listeners": [
        {"name": "http", "protocol": "HTTP", "port": 80},
        {"name": "https", "protocol": "HTTPS", "port": 443, "hostname": "*.example.com",
         "tls": {"mode": "Terminate", "certificateRefs": [{"name": "wildcard-tls"}]},
         "allowedRoutes": {"namespaces": {"from": "All"}}},
    ]},
}
GRPCROUTE = {
    "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GRPCRoute",
    "metadata": {"name": "echo", "namespace": "apps"},
    "spec": {"parentRefs": [{"name": "public", "namespace": "gateways"}],
             "rules": [{"matches": [{"method": {"service": "echo.Echo", "method": "Ping"}}],
                        "backendRefs": [{"name": "echo", "port": 50051}]}]},
}
REFERENCEGRANT = {
    "apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
    "metadata": {"name": "from-gateways", "namespace": "certs"},
    "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": "gateways"}],
             "to": [{"group": "", "kind": "Secret"}]},
}
TCPROUTE = {
    "apiVersion": "gateway.networking.k8s.io/v1alpha2", "kind": "TCPRoute",
    "metadata": {"name": "postgres", "namespace": "db"},
    "spec": {"parentRefs": [{"name": "public", "namespace": "gateways", "sectionName": "pg"}],
             "rules": [{"backendRefs": [{"name": "postgres", "port": 5432}]}]},
}
VALID = [KUSTOMIZATION, HELMRELEASE, GITREPOSITORY, OCIREPOSITORY, HELMREPOSITORY, ALERT, PROVIDER, IMAGEPOLICY,
         HTTPROUTE, GATEWAY, GRPCROUTE, REFERENCEGRANT, TCPROUTE, {**TCPROUTE, "apiVersion": "gateway.networking.k8s.io/v1"}]


@pytest.mark.parametrize("obj", VALID, ids=lambda o: f"{o['apiVersion']}|{o['kind']}")
def test_typical_objects_validate(schemas: dict[str, dict[str, Any]], obj: dict[str, Any]) -> None:
    assert errors(schema_of(schemas, obj), obj) == []


def _with(obj: dict[str, Any], path: str, value: Any = None, rename: str | None = None) -> dict[str, Any]:
    """A deep copy of `obj` with the field at dotted `path` set to `value`, or renamed to `rename`."""
    out = json.loads(json.dumps(obj))
    *parents, last = path.split(".")
    node = out
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if rename is not None:
        node[rename] = node.pop(last)
    else:
        node[last] = value
    return out


BROKEN = [
    ("kustomization spec.intervall", _with(KUSTOMIZATION, "spec.interval", rename="intervall")),
    ("helmrelease chart.spec.sourceref", _with(HELMRELEASE, "spec.chart.spec.sourceRef", rename="sourceref")),
    ("helmrelease interval not a duration", _with(HELMRELEASE, "spec.interval", "30 minutes")),
    ("gitrepository ref.branches", _with(GITREPOSITORY, "spec.ref.branch", rename="branches")),
    ("kustomization sourceRef kind", _with(KUSTOMIZATION, "spec.sourceRef.kind", "GitRepo")),
    ("httproute backendRefs port as string", _with(HTTPROUTE, "spec.rules.0.backendRefs.0.port", "http")),
    ("httproute parentRef typo", _with(HTTPROUTE, "spec.parentRefs.0.sectionName", rename="section")),
    ("httproute path type", _with(HTTPROUTE, "spec.rules.0.matches.0.path.type", "Prefix")),
    ("gateway gatewayClassName typo", _with(GATEWAY, "spec.gatewayClassName", rename="className")),
    ("top-level typo", {**GITREPOSITORY, "specs": {}}),
]


@pytest.mark.parametrize(("why", "obj"), BROKEN, ids=[why for why, _ in BROKEN])
def test_mistakes_are_rejected(schemas: dict[str, dict[str, Any]], why: str, obj: dict[str, Any]) -> None:
    assert errors(schema_of(schemas, obj), obj), why


def test_gateway_hostname_address(schemas: dict[str, dict[str, Any]]) -> None:
    """A `oneOf` branch only adds constraints: the branch listing only `type` must not forbid `value`."""
    obj = _with(GATEWAY, "spec.addresses", [{"type": "Hostname", "value": "lb.example.com"}])
    assert errors(schema_of(schemas, obj), obj) == []
