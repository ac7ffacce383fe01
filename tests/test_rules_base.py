"""Shared rule machinery: kinds, paths, quantities, the finding helper, the registry, suppression."""

from __future__ import annotations

from decimal import Decimal

import pytest

from bot.config import parse_config
from bot.review.run_rules import run_env_rules
from rules import all_rules, get_rule
from rules.base import containers, is_workload, parse_quantity, workloads
from rules.testing import env_from_yaml, of_rule

POD = """
apiVersion: {api}
kind: {kind}
metadata:
  name: w
spec:
{body}
"""

TEMPLATE = """
  template:
    spec:
      initContainers:
        - name: init
          image: busybox:1.36
      containers:
        - name: api
          image: app:1.0
"""


@pytest.mark.parametrize(
    ("api", "kind", "prefix"),
    [
        ("apps/v1", "Deployment", "spec.template.spec"),
        ("apps/v1", "StatefulSet", "spec.template.spec"),
        ("apps/v1", "DaemonSet", "spec.template.spec"),
        ("apps/v1", "ReplicaSet", "spec.template.spec"),
        ("batch/v1", "Job", "spec.template.spec"),
    ],
)
def test_workload_pod_spec_paths(tmp_path, api, kind, prefix):
    ctx = env_from_yaml(tmp_path, POD.format(api=api, kind=kind, body=TEMPLATE))
    (pod,) = workloads(ctx.objects)
    assert pod.path == prefix
    paths = [(c.path, c.init) for c in containers(pod)]
    assert paths == [(f"{prefix}.containers[api]", False), (f"{prefix}.initContainers[init]", True)]
    lines = ctx.read_lines("manifests.yaml")
    assert lines[ctx.objects[0].origin(paths[0][0]).line - 1].strip() == "- name: api"


def test_cronjob_and_pod_paths(tmp_path):
    cron = "  jobTemplate:\n    spec:\n" + "\n".join(
        "    " + line for line in TEMPLATE.strip("\n").splitlines()
    )
    ctx = env_from_yaml(
        tmp_path,
        POD.format(api="batch/v1", kind="CronJob", body=cron)
        + "---\n"
        + POD.format(api="v1", kind="Pod", body="  containers:\n    - name: api\n      image: a:1"),
    )
    paths = sorted(p.path for p in workloads(ctx.objects))
    assert paths == ["spec", "spec.jobTemplate.spec.template.spec"]


@pytest.mark.parametrize(
    ("api", "kind", "expected"),
    [("v1", "Deployment", False), ("apps.openshift.io/v1", "DeploymentConfig", False), ("apps/v1beta1", "Deployment", True),
     ("extensions/v1beta1", "DaemonSet", True), ("v1", "Pod", True), ("apps/v1", "Pod", False)],
)  # fmt: skip
def test_only_real_groups_are_workloads(tmp_path, api, kind, expected):
    ctx = env_from_yaml(tmp_path, POD.format(api=api, kind=kind, body=TEMPLATE))
    assert is_workload(ctx.objects[0]) is expected


@pytest.mark.parametrize(
    ("text", "value"),
    [("100m", "0.1"), ("0.5", "0.5"), (0.05, "0.05"), ("128Mi", str(128 * 2**20)), ("1Gi", str(2**30)),
     ("1G", "1000000000"), ("1e3", "1000"), ("1E3", "1000"), ("2E", "2000000000000000000"), (104857600, "104857600"),
     ("1k", "1000"), (".5", "0.5")],
)  # fmt: skip
def test_quantities(text, value):
    assert parse_quantity(text) == Decimal(value)


@pytest.mark.parametrize("bad", ["", "abc", "10 Mi", "1Mb", None, True, [], "1.2.3"])
def test_bad_quantities(bad):
    assert parse_quantity(bad) is None


def test_registry_has_every_catalogue_id_with_metadata():
    ids = [r.id for r in all_rules()]
    assert ids[:3] == ["hardcoded-secret", "sops-coverage", "missing-resources"]
    assert set(ids) == {
        "hardcoded-secret", "sops-coverage", "missing-resources", "latest-tag", "missing-probes", "single-replica",
        "env-defaults", "missing-network-policy", "missing-labels", "direct-apply", "flux-config", "build-error",
        "probe-port", "service-selector", "route-backend", "remote-unchecked", "chart-error", "chart-unavailable",
        "chart-lint", "invalid-manifest", "pod-security",
    }  # fmt: skip
    for rule in all_rules():
        assert rule.title and rule.rationale and rule.remediation
        assert set(rule.severity) == {"production", "staging", "development"}
        assert (rule.check is None) == (rule.scope == "repo")
    assert get_rule("single-replica").severity == {
        "production": "error",
        "staging": None,
        "development": None,
    }
    with pytest.raises(KeyError, match="nope"):
        get_rule("nope")


DEPLOY = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  namespace: shop
  annotations:
    infra-review.io/ignore: "{ann}"
spec:
  replicas: 1
  template:
    metadata:
      labels: {{app: api}}
    spec:
      containers:
        - name: api
          image: app:latest
"""


def test_finding_helper_fills_everything(tmp_path):
    ctx = env_from_yaml(tmp_path, DEPLOY.format(ann="x: y"), environment="staging")
    (f,) = of_rule(run_env_rules(ctx), "latest-tag")
    assert (f.severity, f.environment, f.container) == ("warning", "staging", "api")
    assert f.field == "spec.template.spec.containers[api].image"
    assert (f.origin.file, f.origin.line) == ("manifests.yaml", 16)
    assert str(f.resource) == "Deployment/shop/api"
    assert "staging" in f.message and "app:latest" in f.message


def test_suppression_with_reason(tmp_path):
    ctx = env_from_yaml(tmp_path, DEPLOY.format(ann="latest-tag, single-replica: vendor image, canary"))
    found = run_env_rules(ctx)
    (tag,) = of_rule(found, "latest-tag")
    (rep,) = of_rule(found, "single-replica")
    assert tag.suppressed and rep.suppressed and tag.suppression_reason == "vendor image, canary"
    assert not any(f.suppressed for f in of_rule(found, "missing-probes"))


def test_suppression_without_reason_does_not_suppress_and_says_so(tmp_path):
    ctx = env_from_yaml(tmp_path, DEPLOY.format(ann="latest-tag"))
    (tag,) = of_rule(run_env_rules(ctx), "latest-tag")
    assert not tag.suppressed and "without a reason" in tag.message


def test_suppression_on_pod_template_and_forbidden_by_config(tmp_path):
    text = DEPLOY.format(ann="n: n").replace(
        "      labels: {app: api}",
        "      labels: {app: api}\n      annotations:\n        infra-review.io/ignore: 'latest-tag: pinned by digest in prod'",
    )
    ctx = env_from_yaml(tmp_path, text)
    assert of_rule(run_env_rules(ctx), "latest-tag")[0].suppressed
    config = parse_config("forbid_suppression: [latest-tag]")
    (tag,) = of_rule(run_env_rules(ctx, config), "latest-tag")
    assert not tag.suppressed and "forbids" in tag.message


def test_config_severity_overrides_and_ignore(tmp_path):
    ctx = env_from_yaml(tmp_path, DEPLOY.format(ann="x: y"))
    config = parse_config(
        "rules:\n  latest-tag: {severity: {prod: notice}}\n  missing-labels: off\n  single-replica:\n    severity: warning\n"
    )
    found = run_env_rules(ctx, config)
    assert [f.severity for f in of_rule(found, "latest-tag")] == ["notice"]
    assert not of_rule(found, "missing-labels")
    assert [f.severity for f in of_rule(found, "single-replica")] == ["warning"]
    assert not run_env_rules(ctx, parse_config("ignore: ['*.yaml']"))


def test_single_replica_runs_only_where_enabled(tmp_path):
    ctx = env_from_yaml(tmp_path, DEPLOY.format(ann="x: y"), environment="staging")
    assert not of_rule(run_env_rules(ctx), "single-replica")
    config = parse_config("rules:\n  single-replica: {severity: {staging: error}}")
    assert of_rule(run_env_rules(ctx, config), "single-replica")[0].severity == "error"
