"""HelmReleases rendered the way Flux's helm-controller renders them, end to end through `check`:
every chart source kind, the values order, post-renderers, where each finding on chart output is
located, the fetch policy, and what a release that cannot be rendered says."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import helm_python
import pytest
from helm_python.registry import repo_index_generate
from loopback import Folder
from registry_fixture import RunningRegistry, push_chart
from trees import flux_kustomization, line_of, write

from bot.config import Config, parse_config
from bot.model import Finding
from bot.publish.report import Report
from bot.render.build import DiskCache
from bot.review.pipeline import run_check

pytest_plugins = ["registry_fixture"]  # the `registry` fixture


def check(root: Path, config: Config | None = None) -> Report:
    text = (root / ".github" / "infra-review.yml")
    return run_check(root, None, config or parse_config(text.read_text() if text.is_file() else None),
                     cache=DiskCache(None))


def of(report: Report, rule: str) -> list[Finding]:
    return [f for f in report.findings if f.rule == rule]


CHART_VALUES = """\
    replicaCount: 1
    image:
      repository: ghcr.io/example/app
      tag: "1.0.0"
    logLevel: info
    resources: {}
    """
DEPLOYMENT = """\
    apiVersion: apps/v1
    kind: Deployment
    metadata:
      name: {{ .Release.Name }}
      labels:
        app.kubernetes.io/name: app
    spec:
      replicas: {{ .Values.replicaCount }}
      selector:
        matchLabels:
          app.kubernetes.io/name: app
      template:
        metadata:
          labels:
            app.kubernetes.io/name: app
        spec:
          containers:
            - name: app
              image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"
              env:
                - name: LOG_LEVEL
                  value: {{ .Values.logLevel | quote }}
              resources:
                {{- toYaml .Values.resources | nindent 16 }}
    """


def chart_files(folder: str = "charts/app", deployment: str = DEPLOYMENT, values: str = CHART_VALUES) -> dict[str, str]:
    return {f"{folder}/Chart.yaml": "apiVersion: v2\nname: app\nversion: 1.0.0\n",
            f"{folder}/values.yaml": values, f"{folder}/templates/deployment.yaml": deployment}


def release(*spec: str, name: str = "app", namespace: str = "apps") -> str:
    """A HelmRelease whose spec is the parts given (each dedented on its own)."""
    body = "".join(textwrap.dedent(part) for part in spec)
    return textwrap.dedent(f"""\
        apiVersion: helm.toolkit.fluxcd.io/v2
        kind: HelmRelease
        metadata:
          name: {name}
          namespace: {namespace}
        spec:
          interval: 10m
        """) + textwrap.indent(body, "  ")


LOCAL = """\
    chart:
      spec:
        chart: ./charts/app
        sourceRef:
          kind: GitRepository
          name: flux-system
          namespace: flux-system
    """


def repo(tmp_path: Path, files: dict[str, str], resources: tuple[str, ...] = ("release.yaml",)) -> Path:
    """A production cluster whose `apps` Kustomization applies `deploy/` (the given resources)."""
    listed = "".join(f"- {r}\n" for r in resources)
    return write(tmp_path, {"clusters/production/apps.yaml": flux_kustomization("./deploy"),
                            "deploy/kustomization.yaml": f"resources:\n{listed}", **files})


def lines(root: Path, rel: str) -> list[str]:
    return (root / rel).read_text().splitlines()


# --- a chart in the repository ---------------------------------------------------------------------

def test_a_chart_in_the_repository_is_judged_and_located_at_the_values_that_set_it(tmp_path):
    root = repo(tmp_path, {**chart_files(), "deploy/release.yaml": release(LOCAL, """\
        values:
          replicaCount: 1
          image:
            tag: latest
        """)})
    report = check(root)
    (replicas,) = of(report, "single-replica")
    assert str(replicas.resource) == "Deployment/apps/app"
    assert (replicas.origin.file, replicas.origin.line) == ("deploy/release.yaml", line_of(root, "deploy/release.yaml",
                                                                                         "replicaCount: 1"))
    assert replicas.suggestion is not None and replicas.suggestion.text.strip() == "replicaCount: 3"
    (tag,) = of(report, "latest-tag")
    assert (tag.origin.file, tag.origin.line) == ("deploy/release.yaml", line_of(root, "deploy/release.yaml", "tag: latest"))
    assert "values key `image.tag`" in tag.message
    # No limits: where adding them fixes it is the chart's template (the team owns the chart).
    (resources,) = [f for f in of(report, "missing-resources") if f.container == "app"]
    assert resources.origin.file == "charts/app/templates/deployment.yaml"
    assert any("1 HelmRelease: 1 rendered" in n for n in report.notes)


def test_a_value_from_the_charts_values_yaml_is_located_there(tmp_path):
    root = repo(tmp_path, {**chart_files(values=CHART_VALUES.replace('tag: "1.0.0"', "tag: latest")),
                           "deploy/release.yaml": release(LOCAL, "values: {replicaCount: 3}\n")})
    (tag,) = of(check(root), "latest-tag")
    assert (tag.origin.file, tag.origin.line) == ("charts/app/values.yaml", 4)


def test_values_files_replace_the_charts_values_and_are_located(tmp_path):
    root = repo(tmp_path, {**chart_files(), "deploy/values-prod.yaml": "replicaCount: 1\nimage: {tag: \"2.0.0\"}\n",
                           "deploy/release.yaml": release(LOCAL.replace(
                               "chart: ./charts/app", "chart: ./charts/app\n"
                               "        valuesFiles: [charts/app/values.yaml, deploy/values-prod.yaml]"))})
    (replicas,) = of(check(root), "single-replica")
    assert (replicas.origin.file, replicas.origin.line) == ("deploy/values-prod.yaml", 1)


def test_values_from_a_generated_configmap_come_before_spec_values_and_are_located(tmp_path):
    root = repo(tmp_path, {
        **chart_files(),
        "deploy/kustomization.yaml": textwrap.dedent("""\
            resources: [release.yaml]
            configMapGenerator:
              - name: app-values
                namespace: apps
                files: [values.yaml=app-values.yaml]
            generatorOptions: {disableNameSuffixHash: true}
            """),
        "deploy/app-values.yaml": "replicaCount: 1\nlogLevel: debug\nimage: {tag: \"3.0.0\"}\n",
        "deploy/release.yaml": release(LOCAL, """\
            valuesFrom:
              - kind: ConfigMap
                name: app-values
            values:
              image: {tag: "3.1.0"}
            """),
    }, resources=())
    report = check(root)
    (replicas,) = of(report, "single-replica")
    # Traced through the generator into the file it read, to the line.
    assert (replicas.origin.file, replicas.origin.line) == ("deploy/app-values.yaml", 1)
    deployment = next(ro for r in report_rendered(root) for ro in r.applied if ro.kind == "Deployment")
    assert deployment.value("spec.template.spec.containers[app].image") == "ghcr.io/example/app:3.1.0"
    assert deployment.value("spec.template.spec.containers[app].env[LOG_LEVEL].value") == "debug"


def report_rendered(root: Path):
    from bot.review.pipeline import check_repository, make_model

    config = Config.default()
    return check_repository(make_model(root, config), config, cache=DiskCache(None)).rendered


def test_a_valuesfrom_configmap_written_in_the_repository_is_located_at_its_line(tmp_path):
    root = repo(tmp_path, {
        **chart_files(),
        "deploy/values.yaml": textwrap.dedent("""\
            apiVersion: v1
            kind: ConfigMap
            metadata:
              name: app-values
              namespace: apps
            data:
              values.yaml: |
                logLevel: info
                replicaCount: 1
            """),
        "deploy/release.yaml": release(LOCAL, "valuesFrom: [{kind: ConfigMap, name: app-values}]\n"),
    }, resources=("release.yaml", "values.yaml"))
    (replicas,) = of(check(root), "single-replica")
    assert (replicas.origin.file, replicas.origin.line) == ("deploy/values.yaml", 9)


def test_a_missing_valuesfrom_source_is_a_chart_error_and_an_optional_one_is_not(tmp_path):
    root = repo(tmp_path, {**chart_files(), "deploy/release.yaml": release(LOCAL, """\
        valuesFrom:
          - kind: Secret
            name: absent
        """)})
    (error,) = of(check(root), "chart-error")
    assert "Secret apps/absent is not defined in this repository" in error.message
    assert (error.origin.file, error.severity) == ("deploy/release.yaml", "error")
    assert error.origin.line == line_of(root, "deploy/release.yaml", "- kind: Secret")
    (root / "deploy/release.yaml").write_text(release(LOCAL, "valuesFrom: [{kind: Secret, name: absent, "
                                                                "optional: true}]\nvalues: {replicaCount: 3}\n"))
    report = check(root)
    assert not of(report, "chart-error") and any("1 rendered" in n for n in report.notes)


def test_a_template_error_is_a_chart_error_naming_the_template_line(tmp_path):
    broken = DEPLOYMENT.replace("{{ .Values.replicaCount }}", "{{ .Values.scale.replicas }}")
    root = repo(tmp_path, {**chart_files(deployment=broken), "deploy/release.yaml": release(LOCAL)})
    (error,) = of(check(root), "chart-error")
    assert "`charts/app/templates/deployment.yaml` line 8" in error.message
    assert "nil pointer evaluating interface {}.replicas" in error.message
    assert (error.origin.file, error.origin.line) == ("deploy/release.yaml", line_of(root, "deploy/release.yaml", "chart:"))


def test_a_chart_folder_outside_the_repository_is_refused(tmp_path):
    outside = tmp_path / "outside"
    write(outside, chart_files("app"))
    root = repo(tmp_path / "repo", {"deploy/release.yaml": release(LOCAL.replace("./charts/app", "../outside/app"))})
    (error,) = of(check(root), "chart-error")
    assert "outside" in error.message and not (root / "charts").exists()
    (root / "charts").mkdir()
    (root / "charts" / "app").symlink_to(outside / "app")
    (root / "deploy/release.yaml").write_text(release(LOCAL))
    (error,) = of(check(root), "chart-error")
    assert "resolves through a symlink outside the repository root" in error.message


def test_post_renderers_patch_and_retag_the_charts_output(tmp_path):
    root = repo(tmp_path, {**chart_files(), "deploy/release.yaml": release(LOCAL, """\
        values: {replicaCount: 3}
        postRenderers:
          - kustomize:
              patches:
                - target: {kind: Deployment}
                  patch: |
                    - op: replace
                      path: /spec/replicas
                      value: 1
              images:
                - name: ghcr.io/example/app
                  newTag: latest
        """)})
    report = check(root)
    assert of(report, "single-replica") and of(report, "latest-tag")


def test_release_name_target_namespace_and_suspend_are_flux_s(tmp_path):
    root = repo(tmp_path, {**chart_files(), "deploy/release.yaml": release(LOCAL, """\
        targetNamespace: shop
        values: {replicaCount: 3}
        """)})
    deployment = next(ro for r in report_rendered(root) for ro in r.applied if ro.kind == "Deployment")
    assert str(deployment.id) == "Deployment/shop/shop-app"
    (root / "deploy/release.yaml").write_text(release(LOCAL, "suspend: true\nvalues: {replicaCount: 1}\n"))
    report = check(root)
    assert not of(report, "single-replica") and any("1 not rendered (suspended)" in n for n in report.notes)


# --- charts from elsewhere ---------------------------------------------------------------------------

def package(tmp_path: Path, version: str = "1.0.0", values: str = CHART_VALUES) -> Path:
    src = write(tmp_path / f"src-{version}", chart_files("app", values=values))
    (src / "app/Chart.yaml").write_text(f"apiVersion: v2\nname: app\nversion: {version}\n")
    out = tmp_path / "served"
    out.mkdir(exist_ok=True)
    return Path(helm_python.package(src / "app", destination=out))


@pytest.fixture
def chart_repo(tmp_path) -> Iterator[Folder]:
    archive = package(tmp_path)
    package(tmp_path, "1.1.0")
    server = Folder(archive.parent)
    repo_index_generate(archive.parent)  # relative archive URLs, as `helm repo index` writes them
    yield server
    server.close()


HELM_REPOSITORY = """\
    apiVersion: source.toolkit.fluxcd.io/v1
    kind: HelmRepository
    metadata:
      name: charts
      namespace: apps
    spec:
      interval: 1h
      url: {url}
    """
FROM_REPOSITORY = textwrap.dedent("""\
    chart:
      spec:
        chart: app
        version: "{version}"
        sourceRef:
          kind: HelmRepository
          name: charts
    """)


def fetched_repo(tmp_path: Path, url: str, allow: str, spec: str, source: str = HELM_REPOSITORY) -> Path:
    return repo(tmp_path / "repo", {
        ".github/infra-review.yml": f"fetch: {{allow: [{allow!r}]}}\n",
        "deploy/source.yaml": textwrap.dedent(source).format(url=url),
        "deploy/release.yaml": release(spec),
    }, resources=("source.yaml", "release.yaml"))


def test_a_chart_from_a_chart_repository_is_fetched_and_its_range_resolved(tmp_path, chart_repo):
    root = fetched_repo(tmp_path, chart_repo.url, chart_repo.url,
                        FROM_REPOSITORY.format(version="~1.0") + "values:\n  replicaCount: 1\n")
    report = check(root)
    (replicas,) = of(report, "single-replica")
    assert (replicas.origin.file, replicas.origin.line) == ("deploy/release.yaml", line_of(root, "deploy/release.yaml",
                                                                                         "replicaCount: 1"))
    assert "/index.yaml" in chart_repo.paths and "/app-1.0.0.tgz" in chart_repo.paths
    # A vendor chart's labels are not the team's to fix: missing-labels is off for its output by default.
    assert not [f for f in of(report, "missing-labels") if f.resource and f.resource.name == "app"]
    # An absent field is fixed through the values key the chart reads (`resources: {}` in its values.yaml).
    (resources,) = [f for f in of(report, "missing-resources") if f.container == "app"]
    assert (resources.origin.file, resources.origin.line) == ("deploy/release.yaml",
                                                              line_of(root, "deploy/release.yaml", "values:"))
    assert "`resources` here in the HelmRelease's `spec.values`" in resources.message
    # The suggestion writes production's sizing there, and the HelmRelease still parses.
    import yaml

    from rules.testing import apply_suggestion

    assert resources.suggestion is not None
    fixed = yaml.safe_load("\n".join(apply_suggestion(lines(root, "deploy/release.yaml"), resources.suggestion)))
    assert fixed["spec"]["values"] == {"replicaCount": 1, "resources": {
        "requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "500m", "memory": "1Gi"}}}


def test_a_chart_repository_on_a_private_address_without_allow_is_refused_without_a_connection(tmp_path, chart_repo):
    root = fetched_repo(tmp_path, chart_repo.url, "https://elsewhere.example/", FROM_REPOSITORY.format(version="1.0.0"))
    before = chart_repo.connections
    report = check(root)
    (notice,) = of(report, "chart-unavailable")
    assert notice.severity == "notice" and "refused" in notice.message and chart_repo.connections == before
    assert not of(report, "chart-error")


def test_offline_the_chart_is_unavailable_and_the_static_tag_check_still_runs(tmp_path, chart_repo):
    root = fetched_repo(tmp_path, chart_repo.url, chart_repo.url,
                        FROM_REPOSITORY.format(version="1.0.0") + "values: {image: {tag: latest}}\n")
    (root / ".github/infra-review.yml").write_text("fetch: {enabled: false}\n")
    report = check(root)
    (notice,) = of(report, "chart-unavailable")
    assert "offline" in notice.message
    (tag,) = of(report, "latest-tag")
    assert str(tag.resource) == "HelmRelease/apps/app"  # judged on the HelmRelease's own values


def test_a_chart_from_an_oci_registry_by_helmrepository_and_ocirepository(tmp_path, registry: RunningRegistry):
    archive = package(tmp_path, "2.0.0").read_bytes()
    digest = push_chart(registry.url, "team/app", "2.0.0", archive, "app", "2.0.0")
    oci_repository = """\
        apiVersion: source.toolkit.fluxcd.io/v1
        kind: HelmRepository
        metadata: {{name: charts, namespace: apps}}
        spec: {{type: oci, interval: 1h, url: "{url}"}}
        """
    root = fetched_repo(tmp_path, f"{registry.oci}/team", f"{registry.oci}/team",
                        FROM_REPOSITORY.format(version="2.x") + "values: {replicaCount: 1}\n", oci_repository)
    assert of(check(root), "single-replica")
    by_digest = """\
        apiVersion: source.toolkit.fluxcd.io/v1beta2
        kind: OCIRepository
        metadata: {{name: app, namespace: apps}}
        spec: {{interval: 1h, url: "{url}", ref: {{digest: "DIGEST"}}}}
        """.replace("DIGEST", digest)
    root = fetched_repo(tmp_path / "b", f"{registry.oci}/team/app", f"{registry.oci}/team",
                        "chartRef: {kind: OCIRepository, name: app}\nvalues: {replicaCount: 1}\n", by_digest)
    report = check(root)
    assert of(report, "single-replica") and any("1 rendered" in n for n in report.notes)


# --- rules that could not see inside charts -----------------------------------------------------------

def test_a_service_selecting_a_charts_pods_is_judged_once_the_chart_is_rendered(tmp_path):
    root = repo(tmp_path, {**chart_files(), "deploy/release.yaml": release(LOCAL, "values: {replicaCount: 3}\n"),
                           "deploy/service.yaml": textwrap.dedent("""\
                               apiVersion: v1
                               kind: Service
                               metadata: {name: other, namespace: apps}
                               spec:
                                 selector: {app.kubernetes.io/name: nothing-has-this}
                                 ports: [{port: 80}]
                               """)}, resources=("release.yaml", "service.yaml"))
    assert of(check(root), "service-selector")


def test_vendor_chart_rules_can_be_turned_back_on(tmp_path, chart_repo):
    root = fetched_repo(tmp_path, chart_repo.url, chart_repo.url, FROM_REPOSITORY.format(version="1.0.0"))
    (root / ".github/infra-review.yml").write_text(f"fetch: {{allow: [{chart_repo.url!r}]}}\n"
                                                   "helm: {vendor_charts: {skip_rules: []}}\n")
    assert [f for f in of(check(root), "missing-labels") if f.resource and f.resource.name == "app"]


def test_no_helm_engine_makes_every_release_unavailable_with_what_to_do(tmp_path, monkeypatch):
    from bot.render import helm

    root = repo(tmp_path, {**chart_files(), "deploy/release.yaml": release(LOCAL)})
    helm.find_helm.cache_clear()
    monkeypatch.setenv("HELM_BIN", "/no/such/helm")
    try:
        (notice,) = of(check(root), "chart-unavailable")
    finally:
        helm.find_helm.cache_clear()
    assert "HELM_BIN" in notice.message


# --- which targets a change affects -------------------------------------------------------------------

def test_a_change_to_what_a_release_reads_affects_exactly_its_target(tmp_path):
    from bot.review.pipeline import make_model

    root = write(tmp_path, {
        **chart_files(),
        "clusters/production/apps.yaml": flux_kustomization("./deploy"),
        "clusters/production/other.yaml": flux_kustomization("./other", name="other"),
        "clusters/production/sources.yaml": flux_kustomization("./sources", name="sources"),
        "deploy/kustomization.yaml": "resources: [release.yaml, vendor.yaml]\n",
        "deploy/release.yaml": release(LOCAL.replace("chart: ./charts/app", "chart: ./charts/app\n"
                                                     "        valuesFiles: [values/prod.yaml]"),
                                       "valuesFrom: [{kind: ConfigMap, name: app-values}]\n"),
        "deploy/vendor.yaml": release(FROM_REPOSITORY.format(version="1.0.0"), name="vendor"),
        "values/prod.yaml": "replicaCount: 3\n",
        "sources/kustomization.yaml": "resources: [repository.yaml, values.yaml]\n",
        "sources/repository.yaml": textwrap.dedent(HELM_REPOSITORY).format(url="https://charts.example.com"),
        "sources/values.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app-values, namespace: apps}\n"
                               "data: {values.yaml: 'logLevel: info'}\n",
        "other/kustomization.yaml": "resources: [cm.yaml]\n",
        "other/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: unrelated}\n",
    })
    model = make_model(root, Config.default())

    def affected(*paths: str) -> set[str]:
        return {t.path for t in model.affected(paths)}

    assert affected("charts/app/templates/deployment.yaml") == {"deploy"}
    assert affected("charts/app/values.yaml") == {"deploy"}
    assert affected("values/prod.yaml") == {"deploy"}
    assert affected("sources/repository.yaml") == {"deploy", "sources"}
    assert affected("sources/values.yaml") == {"deploy", "sources"}
    assert affected("other/cm.yaml") == {"other"}
    assert affected("charts/other/Chart.yaml") == set()


def test_build_flux_prints_what_each_release_installs_and_says_why_one_is_not(tmp_path):
    from trees import run_bot

    root = repo(tmp_path, {**chart_files(), "deploy/release.yaml": release(LOCAL, "values: {replicaCount: 2}\n"),
                           "deploy/broken.yaml": release(LOCAL.replace("./charts/app", "./charts/none"), name="broken")},
                resources=("release.yaml", "broken.yaml"))
    out = run_bot("build", str(root / "deploy"), "--flux", cwd=root)
    assert out.returncode == 1
    assert "# HelmRelease apps/app: release app in apps, chart `charts/app` (in this repository)" in out.stdout
    assert "kind: Deployment" in out.stdout and "replicas: 2" in out.stdout
    assert "HelmRelease apps/broken not rendered (error)" in out.stderr and "no Chart.yaml" in out.stderr
    plain = run_bot("build", str(root / "deploy"), cwd=root)
    assert plain.returncode == 0 and "kind: Deployment" not in plain.stdout


# --- helm lint ---------------------------------------------------------------------------------------

def test_helm_lint_of_a_chart_in_the_repository_reports_at_the_template_line(tmp_path):
    broken = DEPLOYMENT.replace("      labels:\n", "      labels: {{ .Values.nope.deeper }}\n", 1)
    root = repo(tmp_path, {**chart_files(deployment=broken), "deploy/release.yaml": release(LOCAL)})
    report = check(root)
    (lint,) = of(report, "chart-lint")
    assert (lint.origin.file, lint.origin.line, lint.severity) == ("charts/app/templates/deployment.yaml", 5, "error")
    assert "`helm lint charts/app` reports an error" in lint.message and "nil pointer" in lint.message
    # The release itself fails the same way: a chart-error at the HelmRelease.
    assert of(report, "chart-error")


def test_helm_lint_in_a_review_covers_the_charts_the_change_touched(tmp_path):
    from bot.review.pipeline import check_repository, make_model

    broken = DEPLOYMENT.replace("      labels:\n", "      labels: {{ .Values.nope.deeper }}\n", 1)
    root = write(tmp_path, {**chart_files(deployment=broken), **chart_files("charts/other")})
    config = Config.default()
    model = make_model(root, config)
    linted = check_repository(model, config, targets=[], changed=frozenset({"charts/other/values.yaml"}),
                              cache=DiskCache(None))
    assert not of_side(linted, "chart-lint")
    linted = check_repository(model, config, targets=[], changed=frozenset({"charts/app/values.yaml"}),
                              cache=DiskCache(None))
    assert [f.origin.file for f in of_side(linted, "chart-lint")] == ["charts/app/templates/deployment.yaml"]


def of_side(side, rule: str) -> list[Finding]:
    return [f for f in side.findings if f.rule == rule]


def test_a_fetched_charts_own_default_is_located_where_the_release_overrides_it(tmp_path, chart_repo):
    root = fetched_repo(tmp_path, chart_repo.url, chart_repo.url,
                        FROM_REPOSITORY.format(version="1.0.0") + "values:\n  logLevel: info\n")
    (replicas,) = of(check(root), "single-replica")
    assert (replicas.origin.file, replicas.origin.line) == ("deploy/release.yaml",
                                                            line_of(root, "deploy/release.yaml", "values:"))
    assert replicas.origin.via == "chart-default"
    assert "the chart's default: override it with `replicaCount` here in the HelmRelease's `spec.values`" \
        in replicas.message


def test_a_charts_test_hooks_are_not_installed_unless_tests_are_enabled(tmp_path):
    hook = """\
        apiVersion: v1
        kind: Pod
        metadata:
          name: "{{ .Release.Name }}-test-{{ randAlphaNum 5 | lower }}"
          annotations:
            helm.sh/hook: test
        spec:
          containers:
            - name: curl
              image: curlimages/curl
        """
    files = {**chart_files(), "charts/app/templates/tests/curl.yaml": hook}
    root = repo(tmp_path, {**files, "deploy/release.yaml": release(LOCAL, "values: {replicaCount: 3}\n")})
    assert not [f for f in check(root).findings if f.resource and f.resource.kind == "Pod"]
    (root / "deploy/release.yaml").write_text(release(LOCAL, "test: {enable: true}\nvalues: {replicaCount: 3}\n"))
    assert [f for f in of(check(root), "latest-tag") if f.resource and f.resource.kind == "Pod"]


def test_managed_by_helm_is_right_on_chart_output_and_wrong_elsewhere(tmp_path):
    labelled = DEPLOYMENT.replace("        app.kubernetes.io/name: app\n    spec:",
                                  "        app.kubernetes.io/name: app\n        app.kubernetes.io/managed-by: Helm\n    spec:", 1)
    plain = textwrap.dedent("""\
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: plain
          namespace: apps
          labels: {app.kubernetes.io/managed-by: Helm}
        """)
    root = repo(tmp_path, {**chart_files(deployment=labelled), "deploy/release.yaml": release(LOCAL),
                           "deploy/plain.yaml": plain}, resources=("release.yaml", "plain.yaml"))
    deployment = next(ro for r in report_rendered(root) for ro in r.applied if ro.kind == "Deployment")
    assert deployment.labels["app.kubernetes.io/managed-by"] == "Helm"
    said = [f for f in of(check(root), "missing-labels") if "managed by 'Helm'" in f.message]
    assert [str(f.resource) for f in said] == ["ConfigMap/apps/plain"]


def test_helms_output_is_reused_from_the_render_cache_until_what_it_reads_changes(tmp_path, monkeypatch):
    from bot.render import helm

    root = repo(tmp_path / "repo", {**chart_files(), "deploy/release.yaml": release(LOCAL, "values: {replicaCount: 1}\n")})
    cache_dir = tmp_path / "cache"

    def checked() -> Report:
        return run_check(root, None, Config.default(), cache=DiskCache(cache_dir))

    assert of(checked(), "single-replica")
    calls: list[int] = []
    real = helm.SdkHelm.template

    def counting(self, requests, stop=None):
        calls.append(len(requests))
        return real(self, requests, stop)

    linted: list[Path] = []
    real_lint = helm.SdkHelm.lint

    def counting_lint(self, chart, values, kube_version=helm.DEFAULT_KUBE_VERSION, stop=None):
        linted.append(chart)
        return real_lint(self, chart, values, kube_version, stop)

    monkeypatch.setattr(helm.SdkHelm, "template", counting)
    monkeypatch.setattr(helm.SdkHelm, "lint", counting_lint)
    assert of(checked(), "single-replica") and calls == [] and linted == []
    (root / "charts/app/templates/deployment.yaml").write_text(
        (root / "charts/app/templates/deployment.yaml").read_text().replace("replicas:", "replicas: 3 #"))
    report = checked()
    assert calls == [1] and len(linted) == 1 and not of(report, "single-replica")
