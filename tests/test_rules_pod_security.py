"""pod-security: what Pod Security admission refuses where a namespace enforces a level, and the gap to
each environment's target elsewhere; located at the line that set the value, through a base, a patch,
a Flux postBuild substitution and a chart; with the missing settings suggested."""

from __future__ import annotations

import textwrap
from pathlib import Path

import yaml
from trees import flux_kustomization, line_of, write

from bot.config import parse_config
from bot.model import Finding
from bot.publish.report import Report
from bot.render.build import DiskCache
from bot.review.pipeline import run_check
from rules.testing import apply_suggestion

DEPLOYMENT = textwrap.dedent("""\
    apiVersion: apps/v1
    kind: Deployment
    metadata:
      name: api
      namespace: shop
    spec:
      replicas: 3
      selector:
        matchLabels: {app: api}
      template:
        metadata:
          labels: {app: api}
        spec:
          containers:
            - name: api
              image: ghcr.io/example/api:1.4.2
    """)
CONTAINER = "          "  # the indentation of the container's keys in DEPLOYMENT
POD = "      "  # and of the pod spec's


def namespace(level: str | None, version: str | None = None) -> str:
    labels = {}
    if level:
        labels["pod-security.kubernetes.io/enforce"] = level
    if version:
        labels["pod-security.kubernetes.io/enforce-version"] = version
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": labels}})


def repo(tmp_path: Path, env: str, deployment: str, level: str | None = None, version: str | None = None,
         config: str = "") -> Path:
    return write(tmp_path, {
        f"clusters/{env}/apps.yaml": flux_kustomization(f"./overlays/{env}"),
        "base/kustomization.yaml": "resources: [deployment.yaml]\n",
        "base/deployment.yaml": deployment,
        f"overlays/{env}/kustomization.yaml": "resources: [../../base, namespace.yaml]\n",
        f"overlays/{env}/namespace.yaml": namespace(level, version),
        ".github/infra-review.yml": config or "ignore: []\n",
    })


def check(root: Path) -> Report:
    return run_check(root, None, parse_config((root / ".github/infra-review.yml").read_text()), cache=DiskCache(None))


def pod_security(report: Report) -> list[Finding]:
    return [f for f in report.findings if f.rule == "pod-security"]



def test_a_privileged_container_in_an_enforcing_namespace_is_an_error_at_its_line(tmp_path):
    deployment = DEPLOYMENT + CONTAINER + "securityContext: {privileged: true}\n"
    root = repo(tmp_path, "development", deployment, level="baseline")
    (f,) = pod_security(check(root))
    assert f.severity == "error" and f.field == "spec.template.spec.containers[api].securityContext.privileged"
    assert (f.origin.file, f.origin.line) == ("base/deployment.yaml", line_of(root, "base/deployment.yaml", "privileged"))
    assert "(`privileged`)" in f.message and "enforces the baseline Pod Security Standard" in f.message
    assert "admission refuses every pod its controller creates" in f.message


def test_production_is_judged_against_restricted_and_the_missing_settings_are_suggested(tmp_path):
    root = repo(tmp_path, "production", DEPLOYMENT)
    root.joinpath("overlays/production/kustomization.yaml").write_text(
        "resources: [../../base, namespace.yaml]\npatches:\n  - path: patch.yaml\n")
    root.joinpath("overlays/production/patch.yaml").write_text(textwrap.dedent("""\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: api, namespace: shop}
        spec:
          template:
            spec:
              containers:
                - name: api
                  resources: {limits: {cpu: 500m, memory: 1Gi}, requests: {cpu: 250m, memory: 512Mi}}
        """))
    found = pod_security(check(root))
    (f,) = found
    assert f.severity == "warning" and f.container == "api"
    for control in ("allowprivilegeescalation", "runasnonroot", "seccompprofile_restricted", "capabilities_restricted"):
        assert f"(`{control}`)" in f.message
    assert "Production should meet the restricted Pod Security Standard" in f.message
    assert f.suggestion is not None and f.suggestion.file == "overlays/production/patch.yaml"
    fixed = yaml.safe_load("\n".join(apply_suggestion((root / f.suggestion.file).read_text().splitlines(), f.suggestion)))
    assert fixed["spec"]["template"]["spec"]["containers"][0]["securityContext"] == {
        "allowPrivilegeEscalation": False, "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"},
        "capabilities": {"drop": ["ALL"]}}


def test_a_restricted_pod_meets_production_and_staging_is_judged_against_baseline(tmp_path):
    pod = f"{POD}securityContext: {{runAsNonRoot: true, seccompProfile: {{type: RuntimeDefault}}}}\n{POD}containers:"
    deployment = DEPLOYMENT.replace(f"{POD}containers:", pod) + (
        f"{CONTAINER}securityContext: {{allowPrivilegeEscalation: false, capabilities: {{drop: [ALL]}}}}\n")
    assert not pod_security(check(repo(tmp_path / "p", "production", deployment)))
    host_path = DEPLOYMENT + f"{POD}volumes:\n{POD}  - name: logs\n{POD}    hostPath: {{path: /var/log}}\n"
    (f,) = pod_security(check(repo(tmp_path / "s", "staging", host_path)))
    assert f.severity == "notice" and "(`hostpathvolumes`)" in f.message
    assert f.field == "spec.template.spec.volumes[logs].hostPath"


def test_the_enforced_version_decides_which_controls_apply(tmp_path):
    deployment = DEPLOYMENT.replace(f"{POD}containers:", f"{POD}hostUsers: false\n{POD}containers:") + (
        CONTAINER + "securityContext: {procMount: Unmasked}\n")
    assert not pod_security(check(repo(tmp_path / "new", "development", deployment, "baseline", "v1.35")))
    (f,) = pod_security(check(repo(tmp_path / "old", "development", deployment, "baseline", "v1.33")))
    assert "(`procmount`)" in f.message and f.severity == "error"


def test_a_flux_substitution_that_turns_on_host_networking_is_found_at_the_variable(tmp_path):
    deployment = DEPLOYMENT.replace(f"{POD}containers:", f"{POD}hostNetwork: ${{HOST_NETWORK}}\n{POD}containers:")
    root = repo(tmp_path, "development", deployment, level="baseline")
    flux = root / "clusters/development/apps.yaml"
    flux.write_text(flux.read_text() + "  postBuild:\n    substitute:\n      HOST_NETWORK: \"true\"\n")
    (f,) = pod_security(check(root))
    assert "(`hostnamespaces`)" in f.message
    assert (f.origin.file, f.origin.line) == ("clusters/development/apps.yaml",
                                              line_of(root, "clusters/development/apps.yaml", "HOST_NETWORK"))


def test_chart_output_is_judged_in_its_namespace(tmp_path):
    root = write(tmp_path, {
        "clusters/development/apps.yaml": flux_kustomization("./deploy"),
        "deploy/kustomization.yaml": "resources: [namespace.yaml, release.yaml]\n",
        "deploy/namespace.yaml": namespace("baseline"),
        "deploy/release.yaml": textwrap.dedent("""\
            apiVersion: helm.toolkit.fluxcd.io/v2
            kind: HelmRelease
            metadata: {name: app, namespace: shop}
            spec:
              interval: 10m
              chart:
                spec:
                  chart: ./charts/app
                  sourceRef: {kind: GitRepository, name: flux-system, namespace: flux-system}
            """),
        "charts/app/Chart.yaml": "apiVersion: v2\nname: app\nversion: 1.0.0\n",
        "charts/app/values.yaml": "hostNetwork: true\n",
        "charts/app/templates/deployment.yaml": textwrap.dedent("""\
            apiVersion: apps/v1
            kind: Deployment
            metadata: {name: app}
            spec:
              selector: {matchLabels: {app: app}}
              template:
                metadata: {labels: {app: app}}
                spec:
                  hostNetwork: {{ .Values.hostNetwork }}
                  containers:
                    - {name: app, image: "ghcr.io/example/app:1.0.0"}
            """),
        ".github/infra-review.yml": "ignore: []\n",
    })
    (f,) = pod_security(check(root))
    assert f.severity == "error" and "(`hostnamespaces`)" in f.message
    assert (f.origin.file, f.origin.line) == ("charts/app/values.yaml", 1)


def test_the_target_per_environment_is_a_parameter(tmp_path):
    config = "rules:\n  pod-security:\n    params: {target: {production: baseline}}\n"
    assert not pod_security(check(repo(tmp_path, "production", DEPLOYMENT, config=config)))
