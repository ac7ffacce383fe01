"""`infra-review check` as a user runs it: exit codes, the JSON contract, SARIF, workflow commands."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import jsonschema
import pytest
from conftest_paths import REPO, SARIF_SCHEMA
from trees import run_bot

from bot.cli.demo import build_example_repo

EXAMPLE = REPO / "examples" / "repo"


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return run_bot("check", *args, cwd=cwd or REPO)


@pytest.fixture(scope="module")
def pr_repo(tmp_path_factory) -> Path:
    """The example as a git repository: `main`, and the pull request checked out on top."""
    return build_example_repo(tmp_path_factory.mktemp("gitops") / "repo")


def test_json_contract_against_a_git_base(pr_repo):
    out = cli(str(pr_repo), "--base", "main", "--format", "json")
    assert out.returncode == 1, out.stderr
    doc = json.loads(out.stdout)
    assert set(doc) == {"version", "tool", "targets", "findings", "summary", "notes"} and doc["version"] == 1
    assert doc["tool"]["name"] == "infra-review" and doc["tool"]["kustomize"]
    assert {"path", "environment", "status", "resources"} == set(doc["targets"][0])
    keys = {"rule", "severity", "environment", "target", "resource", "container", "field", "file", "line",
            "end_line", "message", "remediation", "suggestion", "new", "suppressed", "fingerprint"}
    assert all(set(f) == keys for f in doc["findings"])
    new = {(f["rule"], f["environment"]) for f in doc["findings"] if f["new"]}
    old = {(f["rule"], f["environment"]) for f in doc["findings"] if not f["new"]}
    assert {("latest-tag", "production"), ("single-replica", "production"), ("hardcoded-secret", "staging"),
            ("missing-resources", "production"), ("direct-apply", "staging")} <= new
    assert ("env-defaults", "staging") in old
    latest = next(f for f in doc["findings"] if f["rule"] == "latest-tag")
    line = (pr_repo / latest["file"]).read_text().splitlines()[latest["line"] - 1]
    assert "latest" in line, "the finding points at the line that sets the tag"
    assert "fake-staging-pw-0000" not in out.stdout, "a secret value is never echoed"
    summary = doc["summary"]
    assert summary["new"] == sum(f["new"] and not f["suppressed"] for f in doc["findings"])


def test_existing_findings_alone_do_not_fail(pr_repo):
    out = cli(str(pr_repo), "--base", "pull-request", "--format", "json")
    doc = json.loads(out.stdout)
    assert out.returncode == 0 and not any(f["new"] for f in doc["findings"])
    assert cli(str(pr_repo), "--base", "pull-request", "--fail-on", "all").returncode == 1


def test_sarif_validates_against_the_official_schema(pr_repo):
    out = cli(str(pr_repo), "--base", "main", "--format", "sarif")
    schema = json.loads(SARIF_SCHEMA.read_text())
    doc = json.loads(out.stdout)
    jsonschema.validate(doc, schema)
    results = doc["runs"][0]["results"]
    assert results and all(r["locations"][0]["physicalLocation"]["region"]["startLine"] >= 1
                           for r in results if r.get("locations"))


def test_github_workflow_commands(pr_repo):
    out = cli(str(pr_repo), "--base", "main", "--format", "github")
    assert "::error file=overlays/production/worker/patch-deployment.yaml,line=6" in out.stdout


def test_text_report_is_grouped_and_summarised(pr_repo):
    out = cli(str(pr_repo), "--base", "main")
    lines = out.stdout.splitlines()
    assert "overlays/production/worker/" in lines and "\x1b[" not in out.stdout, "no colour off a terminal"
    assert "NEW" in out.stdout and "existing" in out.stdout
    assert any(line.split()[:3] == ["rule", "severity", "new"] for line in lines), "the per-rule count table"
    assert out.stdout.strip().splitlines()[-1].startswith(tuple("0123456789"))


def test_plain_manifests_are_one_environment(tmp_path):
    (tmp_path / "app.yaml").write_text((EXAMPLE / "base/api/deployment.yaml").read_text().replace("1.4.2", "latest"))
    prod = json.loads(cli(str(tmp_path), "--format", "json").stdout)
    dev = json.loads(cli(str(tmp_path), "--format", "json", "--env", "development").stdout)
    sev = {f["environment"]: f["severity"] for f in prod["findings"] + dev["findings"] if f["rule"] == "latest-tag"}
    assert sev == {"production": "error", "development": "notice"}


def test_a_broken_overlay_is_a_finding_not_a_crash(tmp_path):
    (tmp_path / "overlays/production").mkdir(parents=True)
    (tmp_path / "overlays/production/kustomization.yaml").write_text("resources:\n- missing.yaml\n")
    out = cli(str(tmp_path), "--format", "json")
    doc = json.loads(out.stdout)
    assert out.returncode == 1
    (err,) = [f for f in doc["findings"] if f["rule"] == "build-error"]
    assert err["file"] == "overlays/production/kustomization.yaml" and err["line"] == 2


@pytest.mark.parametrize("args, words", [
    (["/nonexistent/repo"], "no such file"),
    (["{repo}", "--base", "no-such-ref"], "not a directory nor a git revision"),
    (["{repo}", "--config", "/nonexistent.yml"], "no such file"),
])
def test_usage_errors_exit_2_and_say_what_to_do(pr_repo, args, words):
    out = cli(*[a.format(repo=pr_repo) for a in args])
    assert out.returncode == 2 and words in out.stderr


def test_broken_config_names_the_key(pr_repo, tmp_path):
    cfg = tmp_path / "cfg.yml"
    cfg.write_text("rules:\n  latest-tag:\n    severty: error\n")
    out = cli(str(pr_repo), "--config", str(cfg))
    assert out.returncode == 2 and "severty" in out.stderr
