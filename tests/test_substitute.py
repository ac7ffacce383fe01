"""Flux postBuild substitution: envsubst forms, variable collection, and real manifests from the corpus."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest_paths import CORPUS, needs

from bot.render import substitute as sub
from bot.render.substitute import (
    Unresolved,
    Use,
    Vars,
    collect_vars,
    is_disabled,
    substitute_resources,
    substitute_text,
    trace_resources,
    trace_text,
)

in_corpus = needs(CORPUS, "the real-repository corpus")
HOME_OPS = CORPUS / "onedr0p__home-ops"
HUB_SPOKE = CORPUS / "fluxcd__flux2-hub-spoke-example"


def split_docs(text: str) -> list[str]:
    return [d for d in re.split(r"^---[ \t]*$\n?", text, flags=re.M) if d.strip()]


def load_manifests(*paths: Path) -> list[dict]:
    out = []
    for p in paths:
        out += [d for d in yaml.safe_load_all(p.read_text()) if isinstance(d, dict)]
    return out


def lookup_in(objs: list[dict]):
    def lookup(kind: str, name: str, namespace: str):
        for obj in objs:
            meta = obj.get("metadata") or {}
            if obj.get("kind") == kind and meta.get("name") == name:
                return obj
        return None

    return lookup


def no_lookup(kind, name, namespace):
    return None


# --- envsubst forms (cases from fluxcd/pkg envsubst/eval_test.go) ------------------------------


@pytest.mark.parametrize(
    ("values", "text", "expected"),
    [
        ({"v": "abcdEFGH28ij"}, "${v}", "abcdEFGH28ij"),
        ({"v": "abcdEFGH28ij"}, "${#v}", "12"),
        ({"v": "abcdEFGH28ij"}, "${v^}", "AbcdEFGH28ij"),
        ({"v": "abcdEFGH28ij"}, "${v^^}", "ABCDEFGH28IJ"),
        ({"v": "ABCDEFGH28IJ"}, "${v,}", "aBCDEFGH28IJ"),
        ({"v": "ABCDEFGH28IJ"}, "${v,,}", "abcdefgh28ij"),
        ({"p": "/home/bash/ideas/thoughts.for.today"}, "${p:11}", "ideas/thoughts.for.today"),
        ({"p": "/home/bash/ideas/thoughts.for.today"}, "${p:11:5}", "ideas"),
        ({"p": "abcdef"}, "${p:1:-1}", "bcde"),
        ({"p": "abcdef"}, "${p:-2}", "abcdef"),  # ':-' is the default operator, not a negative offset
        ({"s": "abcABC123ABCabc"}, "${s/%abc/XYZ}", "abcABC123ABCXYZ"),
        ({"s": "abcABC123ABCabc"}, "${s/#abc/XYZ}", "XYZABC123ABCabc"),
        ({"s": "abcABC123ABCabc"}, "${s//abc/xyz}", "xyzABC123ABCxyz"),
        ({"s": "abcABC123ABCabc"}, "${s/abc/xyz}", "xyzABC123ABCabc"),
        ({"s": "foo/bar/baz"}, r"${s//\//-}", "foo-bar-baz"),
        ({"s": "foo.bar"}, "${s/./}", "foobar"),
        ({"f": "bash.string.txt"}, "${f#*.}", "string.txt"),
        ({"f": "bash.string.txt"}, "${f##*.}", "txt"),
        ({"f": "path/to/file"}, "${f##*/}", "file"),  # the fork's '*' also matches '/'
        ({"f": "bash.string.txt"}, "${f%.*}", "bash.string"),
        ({"f": "bash.string.txt"}, "${f%%.*}", "bash"),
        ({"v": "abcdEFGH28ij"}, "${x=${v^^}}", "ABCDEFGH28IJ"),
    ],
)
def test_envsubst_functions_match_flux(values, text, expected):
    assert substitute_text(text, values) == (expected, [])


def test_dollar_var_without_braces_is_text():
    assert substitute_text("echo $HOME and $v", {"v": "x", "HOME": "/root"}) == ("echo $HOME and $v", [])


def test_escaping_double_dollar():
    assert substitute_text("a: $${VAR}", {"VAR": "x"}) == ("a: ${VAR}", [])
    out, unresolved = substitute_text("some text ${v}$${v$${v}$v${v}", {"v": "X"})
    assert out == "some text X${v${v}$vX" and unresolved == []
    assert substitute_text("$${x=${d}}", {"d": "foo"}) == ("${x=foo}", [])
    assert substitute_text("cost: $$5", {"v": "x"}) == ("cost: $5", [])


@pytest.mark.parametrize("op", [":=", ":-", "=", ":?", ":+"])
def test_defaults_used_when_unset_or_empty(op):
    assert substitute_text(f"${{V{op}dflt}}", {"other": "1"}) == ("dflt", [])
    assert substitute_text(f"${{V{op}dflt}}", {"V": ""}) == ("dflt", [])
    assert substitute_text(f"${{V{op}dflt}}", {"V": "set"}) == ("set", [])


def test_default_nests_one_expression_and_values_are_not_reexpanded():
    assert substitute_text("${A:=pre${B}-post}", {"B": "b"}) == ("preb-post", [])
    # a value that looks like an expression is inserted literally, never expanded again
    assert substitute_text("${A}", {"A": "${B}", "B": "no"}) == ("${B}", [])
    assert substitute_text("${A:=${B:=${C:=deep}}}", {"x": "1"}) == ("deep", [])
    assert substitute_text("${A:=}", {"x": "1"}) == ("", [])


def test_default_ends_at_first_closing_brace():
    assert substitute_text("${A:=a}b}", {"x": "1"}) == ("ab}", [])


def test_bare_dash_default_is_a_flux_syntax_error():
    # fluxcd/pkg envsubst/parse: after the name only ':', '=', ',', '^', '/', '#', '%' or '}' may follow
    out, unresolved = substitute_text("x: ${V-d}", {"V": "1"})
    assert out == "x: ${V-d}"
    assert unresolved == [Unresolved("V", 1, "syntax")]


def test_unresolved_left_as_is_and_reported_once_with_first_line():
    text = "a: ${X}\nb: ${Y:=y}\nc: ${X}\nd: ${Z^^}\ne: ${A:=${W}}\n"
    out, unresolved = substitute_text(text, {"Q": "1"})
    assert out == "a: ${X}\nb: y\nc: ${X}\nd: ${Z^^}\ne: ${A:=${W}}\n"
    assert unresolved == [Unresolved("X", 1), Unresolved("Z", 4), Unresolved("W", 5)]


def test_unclosed_expression_reported_as_syntax_rest_still_substituted():
    out, unresolved = substitute_text("a: ${\nb: ${B}\n", {"B": "bee"})
    assert out == "a: ${\nb: bee\n"
    assert unresolved == [Unresolved("", 1, "syntax")]


def test_values_lose_newlines_like_flux():
    assert substitute_text("k: ${V}", {"V": "a\nb\n"}) == ("k: ab", [])


def test_type_changes_after_reparse():
    text = 'spec:\n  replicas: ${REPLICAS}\n  paused: ${PAUSED:=false}\n  name: "${REPLICAS}"\n'
    out, _ = substitute_text(text, {"REPLICAS": "3"})
    obj = yaml.safe_load(out)
    assert obj["spec"] == {"replicas": 3, "paused": False, "name": "3"}


def test_uses_record_line_name_and_source():
    values = Vars()
    values.put("APP", "web", "substitute")
    values.put("TOKEN", "s3cr3t-value", "substituteFrom:Secret/creds")
    result = trace_text("a: ${APP}\nb: ${SIZE:=5Gi}\nc: ${TOKEN}\n", values)
    assert result.uses == [
        Use(1, "APP", "substitute"),
        Use(2, "SIZE", "default"),
        Use(3, "TOKEN", "substituteFrom:Secret/creds", sensitive=True),
    ]


def test_plain_dict_vars_count_as_substitute():
    assert trace_text("${A}", {"A": "1"}).uses == [Use(1, "A", "substitute")]


# --- bounds --------------------------------------------------------------------------------------


def test_too_many_substitutions_leaves_text_unchanged(monkeypatch):
    monkeypatch.setattr(sub, "MAX_SUBSTITUTIONS", 5)
    text = "${A}" * 6
    out, unresolved = substitute_text(text, {"A": "x"})
    assert out == text and unresolved == [Unresolved("", 1, "limit")]


def test_output_bound_stops_value_blowup(monkeypatch):
    monkeypatch.setattr(sub, "MAX_OUTPUT_CHARS", 1000)
    text = "${A}" * 200
    out, unresolved = substitute_text(text, {"A": "x" * 100})
    assert out == text and unresolved[0].reason == "limit"


def test_oversized_input_is_not_processed(monkeypatch):
    monkeypatch.setattr(sub, "MAX_TEXT_CHARS", 10)
    assert substitute_text("k: ${A} padding", {"A": "x"}) == ("k: ${A} padding", [Unresolved("", 1, "limit")])


def test_deep_nesting_is_bounded():
    text = "${A:=" * 40 + "x" + "}" * 40
    out, unresolved = substitute_text(text, {"B": "1"})
    assert out == text and unresolved[0].reason == "limit"


# --- resources -----------------------------------------------------------------------------------


DEPLOY = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: ${APP}\nspec:\n  replicas: ${N}\n"
DISABLED_CM = (
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: scripts\n  annotations:\n"
    "    kustomize.toolkit.fluxcd.io/substitute: disabled\ndata:\n  run.sh: echo ${APP}\n"
)
DISABLED_LABEL = DISABLED_CM.replace("annotations:", "labels:")
MENTIONS_KEY = (
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: doc\ndata:\n"
    "  note: 'kustomize.toolkit.fluxcd.io/substitute: disabled'\n  app: ${APP}\n"
)


def test_disabled_annotation_or_label_skips_resource():
    docs = [DEPLOY, DISABLED_CM, DISABLED_LABEL, MENTIONS_KEY]
    results = trace_resources(docs, {"APP": "web", "N": "2"})
    assert [r.skipped for r in results] == [False, True, True, False]
    assert results[1].text == DISABLED_CM and results[2].text == DISABLED_LABEL
    assert yaml.safe_load(results[3].text)["data"]["app"] == "web"
    assert is_disabled(DISABLED_CM) and not is_disabled(MENTIONS_KEY)


def test_substitute_resources_reports_per_resource():
    texts, unresolved = substitute_resources(
        [DEPLOY, DEPLOY.replace("${N}", "${N}\n  x: ${N}")], {"APP": "a"}
    )
    assert texts[0].splitlines()[3] == "  name: a"
    assert unresolved == [Unresolved("N", 6, "unset", 0), Unresolved("N", 6, "unset", 1)]


def test_no_variables_means_no_substitution_at_all():
    text = "a: ${A:=dflt}\nb: ${B}\n"
    (out,), unresolved = substitute_resources([text], {})
    assert out == text
    assert unresolved == [Unresolved("A", 1, "inactive", 0), Unresolved("B", 2, "inactive", 0)]
    (out,), _ = substitute_resources([text], {}, always=True)
    assert out == "a: dflt\nb: ${B}\n"


# --- collecting variables ------------------------------------------------------------------------


def cm(name, data):
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def secret(name, data=None, string_data=None, **extra):
    obj = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, **extra}
    if data is not None:
        obj["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    if string_data is not None:
        obj["stringData"] = string_data
    return obj


def test_precedence_later_refs_then_inline_substitute():
    objs = [cm("first", {"A": "1", "B": "1", "C": "1"}), secret("second", {"B": "2", "C": "2"})]
    postbuild = {
        "substitute": {"C": "3"},
        "substituteFrom": [{"kind": "ConfigMap", "name": "first"}, {"kind": "Secret", "name": "second"}],
    }
    values, problems = collect_vars(postbuild, lookup_in(objs), "flux-system")
    assert problems == []
    assert dict(values) == {"A": "1", "B": "2", "C": "3"}
    assert values.sources == {
        "A": "substituteFrom:ConfigMap/first",
        "B": "substituteFrom:Secret/second",
        "C": "substitute",
    }


def test_lookup_receives_kustomization_namespace():
    seen = []
    collect_vars(
        {"substituteFrom": [{"kind": "ConfigMap", "name": "x", "optional": True}]},
        lambda k, n, ns: seen.append((k, n, ns)),
        "apps",
    )
    assert seen == [("ConfigMap", "x", "apps")]


def test_optional_and_missing_refs():
    postbuild = {
        "substituteFrom": [
            {"kind": "ConfigMap", "name": "gone", "optional": True},
            {"kind": "Secret", "name": "needed"},
        ]
    }
    values, problems = collect_vars(postbuild, no_lookup)
    assert dict(values) == {}
    assert len(problems) == 1
    assert problems[0].ref == "postBuild.substituteFrom[1]" and "Secret/needed" in problems[0].message


def test_secret_data_is_base64_decoded_and_string_data_wins():
    obj = secret("s", {"USER": "admin", "PASS": "from-data"}, {"PASS": "from-string-data"})
    values, problems = collect_vars({"substituteFrom": [{"kind": "Secret", "name": "s"}]}, lookup_in([obj]))
    assert problems == []
    assert dict(values) == {"USER": "admin", "PASS": "from-string-data"}


def test_invalid_base64_names_the_key_not_the_value():
    obj = {"kind": "Secret", "metadata": {"name": "s"}, "data": {"TOKEN": "not*base64!value"}}
    values, problems = collect_vars({"substituteFrom": [{"kind": "Secret", "name": "s"}]}, lookup_in([obj]))
    assert "TOKEN" not in values
    assert "TOKEN" in problems[0].message and "not*base64" not in problems[0].message


def test_sops_encrypted_values_are_placeholders():
    obj = {
        "kind": "Secret",
        "metadata": {"name": "enc"},
        "stringData": {"DB_PASS": "ENC[AES256_GCM,data:q83x,iv:abc=,tag:def=,type:str]"},
        "sops": {"age": [], "version": "3.8.1"},
    }
    postbuild = {"substituteFrom": [{"kind": "Secret", "name": "enc"}]}
    values, problems = collect_vars(postbuild, lookup_in([obj]))
    assert problems == [] and dict(values) == {}
    assert values.encrypted == {"DB_PASS": "substituteFrom:Secret/enc"}
    texts, unresolved = substitute_resources(["pass: ${DB_PASS}\nalt: ${DB_PASS:=x}\n"], values)
    assert texts == ["pass: ${DB_PASS}\nalt: ${DB_PASS:=x}\n"]
    assert unresolved == [Unresolved("DB_PASS", 1, "encrypted", 0)]
    assert "q83x" not in repr(values)


def test_inline_substitute_overrides_an_encrypted_key():
    obj = {"kind": "Secret", "metadata": {"name": "enc"}, "data": {"K": "ENC[AES256_GCM,data:zz,type:str]"}}
    values, _ = collect_vars(
        {"substitute": {"K": "plain"}, "substituteFrom": [{"kind": "Secret", "name": "enc"}]},
        lookup_in([obj]),
    )
    assert dict(values) == {"K": "plain"} and values.encrypted == {}


def test_invalid_names_and_non_string_values_are_problems():
    values, problems = collect_vars({"substitute": {"my-var": "x", "N": 3, "OK": "y"}}, no_lookup)
    assert dict(values) == {"N": "3", "OK": "y"}
    refs = sorted(p.ref for p in problems)
    assert refs == ['postBuild.substitute["N"]', 'postBuild.substitute["my-var"]']


def test_secret_values_never_in_repr_or_problems():
    obj = secret("s", {"API_TOKEN": "ghp_abcdefghijklmnop"})
    values, _ = collect_vars({"substituteFrom": [{"kind": "Secret", "name": "s"}]}, lookup_in([obj]))
    assert values["API_TOKEN"] == "ghp_abcdefghijklmnop"
    assert "ghp_abcdefghijklmnop" not in repr(values) and "len=20" in repr(values)


# --- real manifests from the corpus --------------------------------------------------------------


def flux_ks(path: Path, name: str) -> dict:
    return next(
        d for d in load_manifests(path) if d["kind"] == "Kustomization" and d["metadata"]["name"] == name
    )


@in_corpus
def test_home_ops_atuin_backup_component():
    ks = flux_ks(HOME_OPS / "kubernetes/apps/default/atuin/ks.yaml", "atuin")
    values, problems = collect_vars(ks["spec"]["postBuild"], no_lookup, "default")
    assert problems == [] and dict(values) == {"APP": "atuin"}
    component = HOME_OPS / "kubernetes/components/kopiur/backup"
    docs = [(component / f).read_text() for f in ("pvc.yaml", "snapshotpolicy.yaml")]
    results = trace_resources(docs, values)
    assert all(not r.unresolved for r in results)
    pvc, policy = (yaml.safe_load(r.text) for r in results)
    assert pvc["metadata"]["name"] == "atuin" and pvc["spec"]["dataSourceRef"]["name"] == "atuin"
    assert pvc["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert (
        policy["spec"]["mover"]["securityContext"]["runAsUser"] == 1000
    )  # a string expression became an int
    assert [u.line for u in results[0].uses if u.name == "APP"] == [5, 12]  # the file starts with ---
    assert Use(8, "KOPIUR_ACCESSMODES", "default") in results[0].uses


@in_corpus
def test_home_ops_cloudflare_tunnel_secret_string_data():
    ks = flux_ks(HOME_OPS / "kubernetes/apps/network/cloudflare-tunnel/ks.yaml", "cloudflare-tunnel")
    objs = load_manifests(HOME_OPS / "bootstrap/kustomize/personal/network/secret.yaml")
    values, problems = collect_vars(ks["spec"]["postBuild"], lookup_in(objs), "flux-system")
    assert problems == [] and set(values) == {"CLOUDFLARE_TUNNEL_ID"}
    text = (HOME_OPS / "kubernetes/apps/network/cloudflare-tunnel/app/dnsendpoint.yaml").read_text()
    result = trace_resources([text], values)[0]
    target = yaml.safe_load(result.text)["spec"]["endpoints"][0]["targets"][0]
    assert target == "op://kubernetes/cloudflare/CLOUDFLARE_TUNNEL_ID.cfargotunnel.com"
    [use] = result.uses
    assert use.name == "CLOUDFLARE_TUNNEL_ID" and use.sensitive
    assert use.source == "substituteFrom:Secret/cloudflare-tunnel-id-secret"


@in_corpus
@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_home_ops_gatus_configmap_disabled_after_real_render():
    app = HOME_OPS / "kubernetes/apps/o11y/gatus-sidecar/app"
    rendered = subprocess.run(["kubectl", "kustomize", str(app)], capture_output=True, text=True, check=True)
    docs = split_docs(rendered.stdout)
    results = trace_resources(docs, {"GATUS_WEB_PORT": "8080"})
    kinds = [(yaml.safe_load(r.text)["kind"], r.skipped) for r in results]
    assert ("ConfigMap", True) in kinds and all(not skipped for kind, skipped in kinds if kind != "ConfigMap")
    configmap = next(r for r in results if r.skipped)
    assert "port: ${GATUS_WEB_PORT}" in yaml.safe_load(configmap.text)["data"]["config.yaml"]


@in_corpus
@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_hub_spoke_tenants_cluster_name():
    ks = flux_ks(HUB_SPOKE / "hub/staging.yaml", "tenants")
    values, problems = collect_vars(ks["spec"]["postBuild"], no_lookup, "staging")
    assert problems == []
    target = HUB_SPOKE / ks["spec"]["path"]
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(target)], capture_output=True, text=True, check=True
    )
    texts, unresolved = substitute_resources(split_docs(rendered.stdout), values)
    assert unresolved == []
    objs = [yaml.safe_load(t) for t in texts]
    assert {"Namespace"} <= {o["kind"] for o in objs}
    namespaced = [o for o in objs if o["kind"] == "ServiceAccount"]
    assert namespaced and all(o["metadata"]["namespace"] == "staging" for o in namespaced)
    assert "${" not in "".join(texts)
