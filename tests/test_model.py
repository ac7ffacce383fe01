import pytest

from bot.model import Finding, Origin, ResourceId, format_path, get_path, parse_path


@pytest.mark.parametrize(
    "text",
    [
        "spec.template.spec.containers[api].image",
        'metadata.labels["app.kubernetes.io/name"]',
        "spec.ports[0].port",
        'metadata.annotations["a\\"b"]',
    ],
)
def test_path_round_trip(text):
    assert format_path(parse_path(text)) == text


def test_path_segments():
    assert parse_path("spec.containers[api].ports[1]") == ("spec", "containers", ("name", "api"), "ports", 1)
    with pytest.raises(ValueError):
        parse_path("spec..x[")


def test_get_path_selects_by_name_and_index():
    obj = {"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}}
    assert get_path(obj, "spec.containers[b].image") == "y"
    assert get_path(obj, "spec.containers[0].image") == "x"
    assert get_path(obj, "spec.containers[c].image") is None


def test_fingerprint_ignores_line_but_not_identity():
    rid = ResourceId("apps", "v1", "Deployment", "prod", "api")
    a = Finding("latest-tag", "error", "production", "m", "r", resource=rid, container="api",
                field="spec.template.spec.containers[api].image", origin=Origin("a.yaml", 3))
    b = Finding("latest-tag", "error", "production", "m2", "r", resource=rid, container="api",
                field="spec.template.spec.containers[api].image", origin=Origin("a.yaml", 30))
    c = Finding("latest-tag", "error", "staging", "m", "r", resource=rid, container="api",
                field="spec.template.spec.containers[api].image", origin=Origin("a.yaml", 3))
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert a.to_json()["line"] == 3 and a.to_json()["resource"] == {"kind": "Deployment", "namespace": "prod", "name": "api"}


def test_resource_id_from_object():
    rid = ResourceId.of({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}}, "default")
    assert (rid.group, rid.version, rid.namespace) == ("apps", "v1", "default")
    assert ResourceId.of({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}).group == ""
