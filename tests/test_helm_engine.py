"""Helm's own engine behind bot.render.helm: what it renders, what it says when a chart is broken, and
the limits it runs under (a chart is untrusted code for a template engine)."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import helm_python
import pytest

from bot.render.helm import (
    BinaryHelm,
    SdkHelm,
    TemplateRequest,
    chart_relative,
    find_helm,
    split_sources,
    where,
)


def make_chart(root: Path, name: str = "web", templates: dict[str, str] | None = None, values: str = "") -> Path:
    """A chart as `helm create` makes it, with `templates` added (or replacing files)."""
    root.mkdir(parents=True, exist_ok=True)
    helm_python.Chart.create(name, root)
    chart = root / name
    for rel, text in (templates or {}).items():
        (chart / "templates" / rel).write_text(textwrap.dedent(text))
    if values:
        (chart / "values.yaml").write_text(textwrap.dedent(values))
    return chart


@pytest.fixture(scope="module")
def sdk() -> SdkHelm:
    engine = find_helm()
    if not isinstance(engine, SdkHelm):
        engine = SdkHelm(version="test")
    return engine


def kinds(manifests) -> list[str]:
    import yaml

    return [d["kind"] for _p, text in manifests for d in yaml.safe_load_all(text) if d]


def test_find_helm_reports_the_sdk_version_when_no_binary_is_set(monkeypatch):
    if shutil.which("helm"):
        pytest.skip("a helm binary is on PATH: find_helm prefers it")
    monkeypatch.delenv("HELM_BIN", raising=False)
    find_helm.cache_clear()
    engine = find_helm()
    assert isinstance(engine, SdkHelm)
    assert engine.version.startswith("v4.") and "Helm SDK v4" in str(engine)


def test_helm_bin_that_is_not_a_program_says_what_to_do(monkeypatch):
    from bot.render.helm import HelmMissing

    find_helm.cache_clear()
    with pytest.raises(HelmMissing, match="HELM_BIN='/no/such/helm' is not an executable"):
        find_helm("/no/such/helm")


def test_templates_a_folder_and_an_archive_with_values_name_and_namespace(tmp_path, sdk):
    chart = make_chart(tmp_path)
    archive = Path(helm_python.package(chart, destination=tmp_path))
    folder, packed = sdk.template([
        TemplateRequest(chart, {"replicaCount": 3}, "shop-web", "shop"),
        TemplateRequest(archive, {"image": {"tag": "2.0.1"}}, "other", "team"),
    ])
    assert folder.ok and packed.ok
    assert [p for p, _ in folder.manifests][:1] == ["web/templates/deployment.yaml"]
    assert "NOTES.txt" not in " ".join(p for p, _ in folder.manifests)
    deployment = dict(folder.manifests)["web/templates/deployment.yaml"]
    assert "name: shop-web" in deployment and "replicas: 3" in deployment
    assert 'image: "nginx:2.0.1"' in dict(packed.manifests)["web/templates/deployment.yaml"]
    assert {"Deployment", "Service", "ServiceAccount"} <= set(kinds(folder.manifests))


def test_lookup_finds_nothing_and_capabilities_are_the_configured_ones(tmp_path, sdk):
    chart = make_chart(tmp_path, templates={"probe.yaml": """\
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: probe
        data:
          found: {{ (lookup "v1" "Secret" "kube-system" "") | len | quote }}
          kube: {{ .Capabilities.KubeVersion.Version | quote }}
          monitoring: {{ .Capabilities.APIVersions.Has "monitoring.coreos.com/v1" | quote }}
          release: {{ .Release.Name }}/{{ .Release.Namespace }}/{{ .Release.IsInstall }}
        """})
    (result,) = sdk.template([TemplateRequest(chart, {}, "r", "apps", kube_version="1.30.2",
                                              api_versions=("monitoring.coreos.com/v1",))])
    text = dict(result.manifests)["web/templates/probe.yaml"]
    assert 'found: "0"' in text
    assert 'kube: "v1.30.2"' in text and 'monitoring: "true"' in text
    assert "release: r/apps/true" in text


def test_a_template_error_names_the_template_and_line_and_spares_the_batch(tmp_path, sdk):
    good = make_chart(tmp_path / "a")
    bad = make_chart(tmp_path / "b", "broken", templates={"bad.yaml": "a: 1\nb: {{ .Values.nope.deeper }}\n"})
    ok, broken = sdk.template([TemplateRequest(good, {}, "a", "ns"), TemplateRequest(bad, {}, "b", "ns")])
    assert ok.ok
    assert not broken.ok and not broken.stopped
    assert (broken.error_file, broken.error_line) == ("broken/templates/bad.yaml", 2)
    assert "nil pointer evaluating interface {}.deeper" in broken.error and "\n" not in broken.error


def test_a_missing_dependency_fails_as_helm_template_does(tmp_path, sdk):
    chart = make_chart(tmp_path)
    with (chart / "Chart.yaml").open("a") as f:
        f.write("dependencies:\n- name: redis\n  version: 1.0.0\n  repository: https://charts.example.com\n")
    (result,) = sdk.template([TemplateRequest(chart, {}, "r", "ns")])
    assert not result.ok and "missing in charts/ directory: redis" in result.error


def test_an_invalid_release_name_is_refused_as_helm_template_does(tmp_path, sdk):
    chart = make_chart(tmp_path)
    (result,) = sdk.template([TemplateRequest(chart, {}, "Not_A_Name", "ns")])
    assert not result.ok and "release name" in result.error.lower()


@pytest.mark.slow
def test_a_chart_that_exhausts_memory_or_time_fails_alone(tmp_path):
    engine = SdkHelm(timeout=2)
    good = make_chart(tmp_path / "a")
    hog = make_chart(tmp_path / "b", "hog", templates={"hog.yaml": "{{ range until 100000000 }}{{ end }}\n"})
    spin = make_chart(tmp_path / "c", "spin", templates={
        "spin.yaml": "{{ range until 100000 }}{{ range until 100000 }}{{ end }}{{ end }}\n"})
    ok, out_of_memory, timed_out = engine.template([
        TemplateRequest(good, {}, "a", "ns"), TemplateRequest(hog, {}, "b", "ns"), TemplateRequest(spin, {}, "c", "ns")])
    assert ok.ok
    assert not out_of_memory.ok and "ran out of memory (limit 2 GiB)" in out_of_memory.error
    assert not timed_out.ok and timed_out.stopped
    assert "timed out after 2s" in timed_out.error and "INFRA_REVIEW_HELM_TIMEOUT" in timed_out.error


def test_lint_reports_errors_with_the_chart_file_and_line(tmp_path, sdk):
    chart = make_chart(tmp_path, templates={"bad.yaml": "a: 1\nb: {{ .Values.nope.deeper }}\n"})
    result = sdk.lint(chart, {})
    assert result.ok
    errors = [m for m in result.messages if m.severity == "error"]
    assert errors and errors[0].path == "templates/bad.yaml" and errors[0].line == 2
    assert any(m.severity == "info" and m.path == "Chart.yaml" and "icon" in m.message for m in result.messages)


def test_lint_of_a_clean_chart_has_no_errors_or_warnings(tmp_path, sdk):
    result = sdk.lint(make_chart(tmp_path), {})
    assert result.ok and not [m for m in result.messages if m.severity in ("error", "warning")]


@pytest.mark.parametrize(("error", "expected"), [
    ('template: web/templates/x.yaml:12:20: executing "web/templates/x.yaml" at <.Values.a>: nil', ("web/templates/x.yaml", 12)),
    ("web/templates/x.yaml:3:1 executing ...", ("web/templates/x.yaml", 3)),
    ("parse error at (web/templates/_helpers.tpl:7): unexpected EOF", ("web/templates/_helpers.tpl", 7)),
    ("YAML parse error on web/templates/x.yaml: error converting YAML to JSON", ("web/templates/x.yaml", 0)),
    ("values don't meet the specifications of the schema(s)", ("", 0)),
])
def test_where_reads_the_file_and_line_from_helms_sentences(error, expected):
    assert where(error) == expected


def test_chart_relative_drops_the_chart_name_only():
    assert chart_relative("web/templates/x.yaml") == "templates/x.yaml"
    assert chart_relative("web/charts/db/templates/x.yaml") == "charts/db/templates/x.yaml"
    assert chart_relative("web/values.yaml") == "values.yaml"
    assert chart_relative("Chart.yaml") == "Chart.yaml"


def test_split_sources_reads_helm_template_output():
    text = "---\n# Source: web/templates/a.yaml\nkind: A\n---\n# Source: web/templates/b.yaml\nkind: B\n"
    assert split_sources(text) == [("web/templates/a.yaml", "kind: A\n"), ("web/templates/b.yaml", "kind: B\n")]


def test_the_binary_and_the_sdk_agree_where_a_binary_is_present(tmp_path, sdk):
    path = shutil.which("helm")
    if not path:
        pytest.skip("no helm binary on PATH: only the SDK engine is available here")
    chart = make_chart(tmp_path)
    request = TemplateRequest(chart, {"replicaCount": 2}, "r", "ns")
    (binary,) = BinaryHelm(path).template([request])
    (library,) = sdk.template([request])
    assert binary.ok and library.ok
    assert sorted(kinds(binary.manifests)) == sorted(kinds(library.manifests))
