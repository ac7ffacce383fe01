"""A HelmRelease parsed into Flux's model, and its values merged as helm-controller merges them."""

from __future__ import annotations

import base64
import hashlib

import pytest

from bot.render.values import Layer, merge_maps, merge_release_values, set_path, typed_value
from bot.repo.manifest import CrossRef, helm_release, source


def cm(name: str, **data: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "apps"}, "data": data}


def lookup_in(*objects: dict):
    index = {(o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objects}
    return lambda kind, ns, name: index.get((kind, ns, name))


def test_release_name_namespace_and_defaults_follow_flux():
    hr = helm_release("web", "apps", {"chart": {"spec": {"chart": "web", "sourceRef": {"kind": "HelmRepository",
                                                                                      "name": "charts"}}}})
    assert (hr.release_name, hr.release_namespace, hr.include_crds) == ("web", "apps", True)
    assert hr.source == CrossRef("HelmRepository", "charts", "apps")
    hr = helm_release("web", "flux-system", {"targetNamespace": "shop", "install": {"crds": "Skip"},
                                             "chartRef": {"kind": "OCIRepository", "name": "web"}})
    assert (hr.release_name, hr.release_namespace, hr.include_crds) == ("shop-web", "shop", False)
    assert hr.source == CrossRef("OCIRepository", "web", "flux-system")
    assert helm_release("web", "apps", {"releaseName": "storefront"}).release_name == "storefront"


def test_a_long_release_name_is_shortened_as_helm_controller_does():
    name = "a-very-long-target-namespace-name-for-the-shop-frontend"
    hr = helm_release("frontend-release", "apps", {"targetNamespace": name})
    full = f"{name}-frontend-release"
    assert hr.release_name == full[:40] + "-" + hashlib.sha256(full.encode()).hexdigest()[:12]
    assert len(hr.release_name) == 53


def test_a_field_of_the_wrong_type_is_a_problem_and_left_out():
    hr = helm_release("web", "apps", {"values": "replicaCount: 3", "releaseName": "web"})
    assert hr.values == {} and [p.field for p in hr.problems] == ["spec.values"]


def test_sources_are_typed():
    assert source("HelmRepository", "r", "ns", {"url": "oci://ghcr.io/x", "type": "oci"}).is_oci
    oci = source("OCIRepository", "r", "ns", {"url": "oci://ghcr.io/x/web", "ref": {"semver": ">=1.0.0"}})
    assert (oci.url, oci.semver, oci.tag) == ("oci://ghcr.io/x/web", ">=1.0.0", "")
    chart = source("HelmChart", "c", "ns", {"chart": "./charts/web", "sourceRef": {"kind": "GitRepository",
                                                                                  "name": "flux-system"}})
    assert chart.template.source == CrossRef("GitRepository", "flux-system", "ns")
    assert source("Bucket", "b", "ns", {}) is None


def test_values_from_in_order_then_spec_values_last():
    hr = helm_release("web", "apps", {
        "valuesFrom": [{"kind": "ConfigMap", "name": "base"}, {"kind": "ConfigMap", "name": "env", "valuesKey": "v"}],
        "values": {"image": {"tag": "1.2.3"}},
    })
    merged = merge_release_values(hr, lookup_in(
        cm("base", **{"values.yaml": "replicaCount: 1\nimage: {repository: web, tag: '1.0'}\nresources: {a: 1}"}),
        cm("env", v="replicaCount: 3\nresources: small")))
    assert merged.values == {"replicaCount": 3, "image": {"repository": "web", "tag": "1.2.3"}, "resources": "small"}
    assert not merged.problems
    assert merged.setter(("replicaCount",)) == (Layer("valuesFrom", 1), ("replicaCount",))
    assert merged.setter(("image", "tag")) == (Layer("values"), ("image", "tag"))
    assert merged.setter(("image", "repository")) == (Layer("valuesFrom", 0), ("image", "repository"))
    assert merged.setter(("resources", "a")) == (Layer("valuesFrom", 1), ("resources",))


def test_target_path_sets_the_raw_value_and_spec_values_still_win():
    hr = helm_release("web", "apps", {
        "valuesFrom": [{"kind": "ConfigMap", "name": "tags", "valuesKey": "tag", "targetPath": "image.tag"},
                       {"kind": "ConfigMap", "name": "tags", "valuesKey": "count", "targetPath": "replicaCount"},
                       {"kind": "ConfigMap", "name": "tags", "valuesKey": "quoted", "targetPath": "port"}],
        "values": {"image": {"repository": "web"}, "replicaCount": 5},
    })
    merged = merge_release_values(hr, lookup_in(cm("tags", tag="1.4.0", count="2", quoted='"8080"')))
    assert merged.values == {"image": {"repository": "web", "tag": "1.4.0"}, "replicaCount": 5, "port": "8080"}
    assert merged.setter(("image", "tag"))[0] == Layer("valuesFrom", 0)
    assert merged.setter(("replicaCount",))[0] == Layer("values")
    assert hr.values == {"image": {"repository": "web"}, "replicaCount": 5}, "the HelmRelease is not changed"


def test_missing_sources_are_fatal_unless_optional():
    hr = helm_release("web", "apps", {"valuesFrom": [
        {"kind": "ConfigMap", "name": "gone"},
        {"kind": "ConfigMap", "name": "gone-too", "optional": True},
        {"kind": "ConfigMap", "name": "there", "valuesKey": "missing"},
        {"kind": "Bucket", "name": "x"},
    ]})
    merged = merge_release_values(hr, lookup_in(cm("there", other="a: 1")))
    assert [(p.ref.index, p.fatal) for p in merged.problems] == [(0, True), (1, False), (2, True), (3, True)]
    assert merged.problems[0].message == "ConfigMap apps/gone is not defined in this repository"
    assert merged.problems[2].message == "ConfigMap apps/there has no key 'missing'"


def test_secrets_are_decoded_and_encrypted_ones_are_unknown_not_missing():
    secret = {"kind": "Secret", "metadata": {"name": "s", "namespace": "apps"},
              "data": {"values.yaml": base64.b64encode(b"password: hunter2\n").decode()}}
    string_data = {"kind": "Secret", "metadata": {"name": "t", "namespace": "apps"},
                   "stringData": {"values.yaml": "user: app"}, "data": {"values.yaml": "eA=="}}
    sops = {"kind": "Secret", "metadata": {"name": "u", "namespace": "apps"},
            "data": {"values.yaml": "ENC[AES256_GCM,data:abc]"}, "sops": {"version": "3.8"}}
    hr = helm_release("web", "apps", {"valuesFrom": [{"kind": "Secret", "name": n} for n in ("s", "t", "u")]})
    merged = merge_release_values(hr, lookup_in(secret, string_data, sops))
    assert merged.values == {"password": "hunter2", "user": "app"}
    (problem,) = merged.problems
    assert (problem.unknown, problem.fatal, problem.ref.name) == (True, False, "u")


def test_a_values_key_that_is_not_a_mapping_is_an_error():
    hr = helm_release("web", "apps", {"valuesFrom": [{"kind": "ConfigMap", "name": "c"}]})
    for text in ("- a\n- b\n", "a: [unclosed\n"):
        (problem,) = merge_release_values(hr, lookup_in(cm("c", **{"values.yaml": text}))).problems
        assert problem.fatal and "values.yaml" in problem.message


@pytest.mark.parametrize(("raw", "expected"), [
    ("3", 3), ("-4", -4), ("007", "007"), ("0", 0), ("true", True), ("FALSE", False), ("null", None),
    ("1.5", "1.5"), ("v1", "v1"),
])
def test_set_values_are_typed_like_helm(raw, expected):
    assert typed_value(raw) == expected


def test_set_path_follows_helms_set_syntax():
    values: dict = {"a": {"keep": 1}}
    assert set_path(values, r"a.b\.c", "x") == ("a", "b.c")
    assert set_path(values, "list[2].name", "'007'") == ("list", "2", "name")
    assert set_path(values, "ports", "{80,443}") == ("ports",)
    assert values == {"a": {"keep": 1, "b.c": "x"}, "list": [None, None, {"name": "007"}], "ports": [80, 443]}
    with pytest.raises(ValueError, match="has no value"):
        set_path({}, "a", "x,y")
    with pytest.raises(ValueError, match="between every two dots"):
        set_path({}, "a..b", "x")


def test_merge_maps_is_helms():
    assert merge_maps({"a": {"b": 1, "c": 2}, "d": 1}, {"a": {"b": 3}, "d": {"e": 1}}) == \
        {"a": {"b": 3, "c": 2}, "d": {"e": 1}}
