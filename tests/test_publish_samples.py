"""Shared sample data for the publisher tests, and the tests of the report model and JSON output."""

from __future__ import annotations

import json

from bot.model import Finding, Origin, ResourceId, Suggestion
from bot.publish.jsonout import render_json, to_json
from bot.publish.report import Report, RuleInfo, TargetStatus, summarize

RULES = {
    "latest-tag": RuleInfo("latest-tag", "Image tag is mutable", "A mutable tag makes rollouts unrepeatable.",
                           "Pin the image to a version tag or digest.",
                           {"production": "error", "staging": "error", "development": "warning"}),
    "missing-probes": RuleInfo("missing-probes", "Container has no readiness/liveness probe",
                               "Without probes traffic reaches pods that are not ready.",
                               "Add readinessProbe and livenessProbe.",
                               {"production": "error", "staging": "warning", "development": None}),
    "hardcoded-secret": RuleInfo("hardcoded-secret", "Secret value in the repository",
                                 "Plain secrets leak through git history.", "Encrypt with SOPS.",
                                 {"production": "error", "staging": "error", "development": "error"}),
}
API = ResourceId("apps", "v1", "Deployment", "production", "api")
DEPLOY = "base/api/deployment.yaml"


def latest_tag(env: str = "production", severity: str = "error", new: bool = True) -> Finding:
    return Finding(
        "latest-tag", severity, env, "image nginx:latest uses the mutable tag `latest`",
        "Pin the image to a version tag or digest.", target=f"overlays/{env}/api",
        resource=ResourceId("apps", "v1", "Deployment", env, "api"), container="api",
        field="spec.template.spec.containers[api].image", origin=Origin(DEPLOY, 21, 21),
        suggestion=Suggestion(DEPLOY, 21, 21, "        image: nginx:1.27.3\n"), new=new)


def missing_probe(new: bool = False) -> Finding:
    return Finding("missing-probes", "warning", "staging", "container api has no readinessProbe",
                   "Add a readinessProbe.", target="overlays/staging/api",
                   resource=ResourceId("apps", "v1", "Deployment", "staging", "api"), container="api",
                   field="spec.template.spec.containers[api].readinessProbe",
                   origin=Origin(DEPLOY, 18, 18, "enclosing"), new=new)


def suppressed_secret() -> Finding:
    return Finding("hardcoded-secret", "error", "production", "env DB_PASSWORD is a literal (hunt…, 12 chars)",
                   "Use secretKeyRef.", target="overlays/production/api", resource=API, container="api",
                   field="spec.template.spec.containers[api].env[DB_PASSWORD].value",
                   origin=Origin(DEPLOY, 30, 30), suppressed=True, suppression_reason="test fixture only")


def build_error() -> Finding:
    return Finding("build-error", "error", "production", "kustomize build failed: accumulating resources",
                   "Fix the kustomization.", target="overlays/production/broken")


def sample_report(findings: list[Finding] | None = None) -> Report:
    return Report(
        findings=findings if findings is not None else
        [latest_tag(), latest_tag("staging"), missing_probe(), suppressed_secret(), build_error()],
        targets=[TargetStatus("overlays/production/api", "production", "ok", 5),
                 TargetStatus("overlays/staging/api", "staging", "ok", 5),
                 TargetStatus("overlays/production/broken", "production", "error", 0)],
        tool_version="0.1.0", kustomize_version="v5.5.0", rules=RULES, head_sha="a" * 40)


def test_summary_leaves_suppressed_out_of_severity_counts() -> None:
    s = summarize(sample_report().findings)
    assert (s.errors, s.warnings, s.notices, s.new, s.suppressed) == (3, 1, 0, 3, 1)


def test_json_has_exactly_the_documented_shape() -> None:
    doc = to_json(sample_report())
    assert list(doc) == ["version", "tool", "targets", "findings", "summary", "notes"]
    assert doc["version"] == 1
    assert doc["tool"] == {"name": "infra-review", "version": "0.1.0", "kustomize": "v5.5.0", "helm": ""}
    assert doc["targets"][2] == {"path": "overlays/production/broken", "environment": "production",
                                 "status": "error", "resources": 0}
    assert doc["summary"] == {"errors": 3, "warnings": 1, "notices": 0, "new": 3, "suppressed": 1}
    keys = ["rule", "severity", "environment", "target", "resource", "container", "field", "file", "line",
            "end_line", "message", "remediation", "suggestion", "new", "suppressed", "fingerprint"]
    assert all(list(f) == keys for f in doc["findings"])


def test_json_findings_are_finding_to_json_and_nothing_else() -> None:
    report = sample_report()
    doc = json.loads(render_json(report))
    by_fp = {f.fingerprint: f.to_json() for f in report.findings}
    assert len(doc["findings"]) == len(report.findings)
    assert all(item == by_fp[item["fingerprint"]] for item in doc["findings"])
    assert doc["findings"][0]["environment"] == "production"  # production first
    no_file = next(f for f in doc["findings"] if f["rule"] == "build-error")
    assert no_file["file"] is None and no_file["line"] is None
