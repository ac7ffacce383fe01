"""Container-level rules: missing-resources, latest-tag, missing-probes, single-replica, env-defaults."""

from __future__ import annotations

import pytest
import yaml

from bot.review.run_rules import run_env_rules
from rules import get_rule
from rules.latest_tag import floating
from rules.testing import apply_suggestion, env_from_yaml, of_rule


def run(ctx, rule_id):
    rule = get_rule(rule_id)
    return list(rule.check(ctx, rule))


def deployment(container: str, extra_spec: str = "", kind: str = "Deployment", api: str = "apps/v1") -> str:
    body = "\n".join("        " + line for line in container.strip("\n").splitlines())
    return f"""
apiVersion: {api}
kind: {kind}
metadata:
  name: web
spec:
{extra_spec}  template:
    spec:
      containers:
{body}
"""


# --- missing-resources ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resources", "missing", "located"),
    [
        ("", ["requests.cpu", "requests.memory", "limits.cpu", "limits.memory"], "- name: api"),
        ("  resources: {}", ["requests.cpu", "requests.memory", "limits.cpu", "limits.memory"], "resources: {}"),
        ("  resources:\n    limits: {cpu: 1, memory: 1Gi}", [], None),  # requests default to the limits
        ("  resources:\n    limits: {memory: 1Gi}", ["requests.cpu", "limits.cpu"], "resources:"),
        (
            "  resources:\n    requests: [cpu, memory]\n    limits: {cpu: 1, memory: 1Gi}",
            ["requests.cpu", "requests.memory"],
            "requests: [cpu, memory]",
        ),
        ("  resources:\n    requests: {cpu: 1, memory: 1Gi}\n    limits: {memory: 1Gi}", ["limits.cpu"],
         "limits: {memory: 1Gi}"),
        ("  resources:\n    requests: {cpu: 1, memory: 1Gi}\n    limits: {cpu: 1, memory: 1Gi}", [], None),
    ],
)
def test_missing_resources_names_missing_keys(tmp_path, resources, missing, located):
    """Located where the first missing key belongs: its deepest existing ancestor."""
    ctx = env_from_yaml(tmp_path, deployment(f"- name: api\n  image: a:1\n{resources}"))
    found = run(ctx, "missing-resources")
    assert [m for f in found for m in missing if m in f.message] == missing
    assert len(found) == (1 if missing else 0)
    if found:
        assert ctx.read_lines("manifests.yaml")[found[0].origin.line - 1].strip() == located


def test_missing_resources_covers_init_containers_and_jobs(tmp_path):
    text = deployment("- name: main\n  image: a:1", kind="Job", api="batch/v1").replace(
        "      containers:",
        "      initContainers:\n        - name: setup\n          image: b:1\n      containers:",
    )
    found = run(env_from_yaml(tmp_path, text), "missing-resources")
    assert sorted(f.container for f in found) == ["main", "setup"]
    assert any(f.message.startswith("Init container 'setup'") for f in found)


def test_missing_resources_suggestion_is_valid_yaml_with_env_defaults(tmp_path):
    ctx = env_from_yaml(
        tmp_path, deployment("- name: api\n  image: a:1\n  ports: [{containerPort: 80}]"), "staging"
    )
    (f,) = run(ctx, "missing-resources")
    s = f.suggestion
    assert s and s.line == s.end_line == f.origin.line
    new = yaml.safe_load("\n".join(apply_suggestion(ctx.read_lines("manifests.yaml"), s)))
    c = new["spec"]["template"]["spec"]["containers"][0]
    assert c["resources"] == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"cpu": "200m", "memory": "512Mi"},
    }
    assert c["ports"] == [{"containerPort": 80}] and c["name"] == "api"


def test_missing_resources_suggestion_replaces_empty_block_and_skips_partial(tmp_path):
    ctx = env_from_yaml(tmp_path, deployment("- name: api\n  image: a:1\n  resources: {}"))
    (f,) = run(ctx, "missing-resources")
    new = yaml.safe_load("\n".join(apply_suggestion(ctx.read_lines("manifests.yaml"), f.suggestion)))
    assert new["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] == {
        "cpu": "500m",
        "memory": "1Gi",
    }
    ctx = env_from_yaml(tmp_path, deployment("- name: api\n  image: a:1\n  resources:\n    limits: {cpu: 1}"))
    assert run(ctx, "missing-resources")[0].suggestion is None


def test_no_suggestion_without_source_lines(tmp_path):
    ctx = env_from_yaml(tmp_path, deployment("- name: api\n  image: a:1"))
    ctx.read_lines = lambda _f: []
    assert run(ctx, "missing-resources")[0].suggestion is None


# --- latest-tag ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "flagged"),
    [("nginx", True), ("nginx:latest", True), ("nginx:LATEST", True), ("registry:5000/app", True),
     ("registry:5000/app:1.2", False), ("app@sha256:123456", False), ("app:latest@sha256:abc", False),
     ("ghcr.io/org/app:v1.0.0", False), ("localhost:5000/a/b", True)],
)  # fmt: skip
def test_latest_tag_image_parsing(image, flagged):
    assert bool(floating(image, ["latest"])) is flagged


def test_latest_tag_on_init_containers_with_severity_per_env(tmp_path):
    text = deployment("- name: api\n  image: app:1").replace(
        "      containers:",
        "      initContainers:\n        - name: migrate\n          image: app\n      containers:",
    )
    for env, severity in (("production", "error"), ("staging", "warning"), ("development", "notice")):
        (f,) = of_rule(run_env_rules(env_from_yaml(tmp_path, text, env)), "latest-tag")
        assert (f.container, f.severity) == ("migrate", severity)


def test_latest_tag_helmrelease_values(tmp_path):
    ctx = env_from_yaml(
        tmp_path,
        """
        apiVersion: helm.toolkit.fluxcd.io/v2
        kind: HelmRelease
        metadata: {name: r, namespace: flux-system}
        spec:
          values:
            image: {repository: registry/app, tag: latest}
            sidecars:
              - proxyImage: envoy:latest
            worker: {image: {repository: w}}
        """,
    )
    found = run(ctx, "latest-tag")
    assert sorted(f.field for f in found) == ["spec.values.image.tag", "spec.values.sidecars[0].proxyImage"]
    assert found[0].origin.line in (6, 8)


# --- missing-probes ----------------------------------------------------------------------


def test_probes_both_needed_startup_does_not_count(tmp_path):
    ctx = env_from_yaml(
        tmp_path,
        deployment(
            "- name: a\n  image: a:1\n  startupProbe: {tcpSocket: {port: 80}}\n  readinessProbe: {tcpSocket: {port: 80}}\n"
            "- name: b\n  image: b:1\n  livenessProbe: {tcpSocket: {port: 80}}\n  readinessProbe: {tcpSocket: {port: 80}}"
        ),
    )
    (f,) = run(ctx, "missing-probes")
    assert (
        f.container == "a"
        and "livenessProbe" in f.message
        and "readinessProbe" not in f.message.split("no ")[1]
    )


def test_probes_jobs_cronjobs_and_init_exempt(tmp_path):
    job = deployment("- name: a\n  image: a:1", kind="Job", api="batch/v1")
    assert not run(env_from_yaml(tmp_path, job), "missing-probes")
    cron = """
    apiVersion: batch/v1
    kind: CronJob
    metadata: {name: c}
    spec:
      schedule: "* * * * *"
      jobTemplate:
        spec:
          template:
            spec:
              containers: [{name: a, image: a:1}]
    """
    assert not run(env_from_yaml(tmp_path, cron), "missing-probes")
    pod = deployment(
        "- name: a\n  image: a:1\n  livenessProbe: {exec: {command: [x]}}\n  readinessProbe: {exec: {command: [x]}}"
    )
    pod = pod.replace("      containers:", "      initContainers: [{name: i, image: b:1}]\n      containers:")
    assert not run(env_from_yaml(tmp_path, pod), "missing-probes")


# --- single-replica and env-defaults replicas ---------------------------------------------

HPA = """
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {{name: web-hpa}}
spec:
  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: web}}
{min}  maxReplicas: 10
"""


@pytest.mark.parametrize(
    ("replicas", "hpa_min", "single_on", "env_on"),
    [
        (None, None, "Deployment", None),
        ("1", None, "Deployment", None),
        ("2", None, None, "Deployment"),
        ("3", None, None, None),
        ("5", "1", "HorizontalPodAutoscaler", None),
        (None, "", "HorizontalPodAutoscaler", None),
        ("1", "2", None, "HorizontalPodAutoscaler"),
        ("1", "3", None, None),
    ],
)
def test_replicas_in_production(tmp_path, replicas, hpa_min, single_on, env_on):
    text = deployment("- name: a\n  image: a:1", f"  replicas: {replicas}\n" if replicas else "")
    if hpa_min is not None:
        text += HPA.format(min=f"  minReplicas: {hpa_min}\n" if hpa_min else "")
    found = run_env_rules(env_from_yaml(tmp_path, text))
    assert [f.resource.kind for f in of_rule(found, "single-replica")] == ([single_on] if single_on else [])
    replica_env = [
        f for f in of_rule(found, "env-defaults") if f.field in ("spec.replicas", "spec.minReplicas")
    ]
    assert [f.resource.kind for f in replica_env] == ([env_on] if env_on else [])


ZERO_SCALER = """
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {{name: web}}
spec:
  minReplicas: 0
  maxReplicas: {max}
  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: web}}
  metrics:
  - type: {metric}
    external:
      metric: {{name: probe_success}}
      target: {{type: Value, value: "1"}}
"""


@pytest.mark.parametrize(
    ("metric", "max_replicas", "env", "expected"),
    [
        # home-ops' zeroscaler component: scale to zero while a dependency is down, one pod otherwise
        ("External", 1, "production", [("single-replica", "spec.maxReplicas")]),
        ("External", 3, "production", []),
        ("Object", 2, "staging", []),
        ("External", 1, "staging", [("env-defaults", "spec.maxReplicas")]),
        # minReplicas 0 on a CPU metric is no scale-to-zero (the API refuses it): judged on minReplicas
        ("Resource", 3, "production", [("single-replica", "spec.minReplicas")]),
    ],
)
def test_scale_to_zero_hpa_is_judged_on_the_pods_it_runs(tmp_path, metric, max_replicas, env, expected):
    text = deployment("- name: a\n  image: a:1") + ZERO_SCALER.format(max=max_replicas, metric=metric)
    found = [f for f in run_env_rules(env_from_yaml(tmp_path, text, env))
             if f.rule in ("single-replica", "env-defaults") and "replicas" in f.field.lower()]
    assert [(f.rule, f.field) for f in found] == expected
    for f in found:
        assert f.resource.kind == "HorizontalPodAutoscaler"
        if f.field == "spec.maxReplicas":
            assert "scales to zero by design" in f.message or "to zero on its metric by design" in f.message
            assert f.suggestion is not None and f.suggestion.text.strip().startswith("maxReplicas: ")


def test_replica_suggestions_replace_the_line(tmp_path):
    ctx = env_from_yaml(tmp_path, deployment("- name: a\n  image: a:1", "  replicas: 1  # one is enough\n"))
    (f,) = run(ctx, "single-replica")
    assert f.suggestion.text == "  replicas: 3  # one is enough"
    assert f.origin.line == f.suggestion.line == 6
    ctx = env_from_yaml(tmp_path, deployment("- name: a\n  image: a:1", "  replicas: 1\n"), "staging")
    (f,) = [f for f in run(ctx, "env-defaults") if f.field == "spec.replicas"]
    assert f.suggestion.text == "  replicas: 2" and f.severity == "warning"
    ctx = env_from_yaml(tmp_path, deployment("- name: a\n  image: a:1"))
    assert run(ctx, "single-replica")[0].suggestion is None  # unset: nothing to replace


# --- env-defaults resources and log level --------------------------------------------------


def test_env_defaults_compares_quantities_and_ignores_missing(tmp_path):
    text = deployment(
        "- name: a\n  image: a:1\n  resources:\n    requests: {cpu: 0.25, memory: 500Mi}\n    limits: {cpu: '1', memory: 1G}\n"
        "- name: b\n  image: b:1\n  resources:\n    limits: {memory: 2Gi}",
        "  replicas: 3\n",
    )
    found = run(env_from_yaml(tmp_path, text), "env-defaults")
    assert sorted((f.container, f.field.rsplit("resources.", 1)[1]) for f in found) == [
        ("a", "limits.memory"),  # 1G = 10^9 < 1Gi = 2^30
        ("a", "requests.memory"),  # 500Mi < 512Mi; cpu 0.25 == 250m is not below
    ]
    assert not run(env_from_yaml(tmp_path, text, "development"), "env-defaults")


def test_env_defaults_debug_log_level(tmp_path):
    text = deployment("- name: a\n  image: a:1\n  env: [{name: log_level, value: DEBUG}]", "  replicas: 3\n")
    text += (
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {LOG_LEVEL: debug, OTHER: debug}\n"
    )
    for env, count in (("production", 2), ("staging", 2), ("development", 0)):
        found = run(env_from_yaml(tmp_path, text, env), "env-defaults")
        assert len(found) == count, env
    assert {f.field for f in run(env_from_yaml(tmp_path, text), "env-defaults")} == {
        "spec.template.spec.containers[a].env[log_level].value",
        "data.LOG_LEVEL",
    }
