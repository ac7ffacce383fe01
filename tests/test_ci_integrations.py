"""Where people meet a linter before an App: the GitHub Action (its script run as the runner runs it, inputs
as environment variables; no runner here) and the pre-commit hook (its entry run as pre-commit runs it)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest_paths import REPO

from bot.cli.demo import build_example_repo

CLI = f"{sys.executable} -m bot"


@pytest.fixture(scope="module")
def pr_repo(tmp_path_factory) -> Path:
    return build_example_repo(tmp_path_factory.mktemp("ci") / "repo")


def env(**extra: str) -> dict[str, str]:
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO), "HOME": "/nonexistent",
            "INFRA_REVIEW_INSTALLED": "1", "INFRA_REVIEW_CLI": CLI,
            "INFRA_REVIEW_CACHE": os.environ.get("INFRA_REVIEW_CACHE", "/tmp/infra-review-test-cache")}
    return {**base, **extra}


def action(cwd: Path, **inputs: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO / "ci" / "action.sh")], cwd=cwd, env=env(**inputs), capture_output=True,
                          text=True, timeout=600)


def test_the_action_is_a_composite_that_runs_the_script_and_uploads_sarif():
    spec = yaml.safe_load((REPO / "action.yml").read_text())
    assert spec["runs"]["using"] == "composite"
    assert set(spec["inputs"]) == {"path", "base", "fail-on", "sarif-file", "upload-sarif"}
    steps = spec["runs"]["steps"]
    assert any("ci/action.sh" in (s.get("run") or "") for s in steps)
    upload = next(s for s in steps if str(s.get("uses", "")).startswith("github/codeql-action/upload-sarif"))
    assert upload["with"]["sarif_file"] == "${{ inputs.sarif-file }}"
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "infra-review.yml").read_text())
    (job,) = workflow["jobs"].values()
    assert {"uses": "./", "with": {"path": "examples/repo", "fail-on": "never"}} in job["steps"]


def test_the_action_writes_sarif_annotates_new_errors_and_fails_on_them(pr_repo, tmp_path):
    sarif = tmp_path / "out.sarif"
    out = action(pr_repo, INPUT_PATH=".", INPUT_BASE="main", INPUT_SARIF_FILE=str(sarif))
    assert out.returncode == 1, out.stderr
    results = json.loads(sarif.read_text())["runs"][0]["results"]
    assert len(results) >= 10 and any(r["ruleId"] == "latest-tag" for r in results)
    annotations = [line for line in out.stdout.splitlines() if line.startswith("::error ")]
    assert any("file=overlays/production/api/kustomization.yaml" in a and "line=12" in a for a in annotations)


def test_fail_on_never_reports_without_failing_and_a_bad_value_is_refused(pr_repo, tmp_path):
    out = action(pr_repo, INPUT_BASE="main", INPUT_FAIL_ON="never", INPUT_SARIF_FILE=str(tmp_path / "a.sarif"))
    assert out.returncode == 0 and "::error " in out.stdout
    bad = action(pr_repo, INPUT_FAIL_ON="sometimes")
    assert bad.returncode == 2 and "fail-on must be new, all or never" in bad.stderr


def test_without_a_base_every_finding_counts(pr_repo, tmp_path):
    out = action(pr_repo, INPUT_FAIL_ON="all", INPUT_SARIF_FILE=str(tmp_path / "b.sarif"))
    assert out.returncode == 1


def test_the_pre_commit_hook_fails_only_on_what_the_uncommitted_change_adds(tmp_path):
    (hook,) = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "infra-review" and hook["pass_filenames"] is False and hook["language"] == "python"
    assert hook["files"] == r"\.(ya?ml)$"
    root = build_example_repo(tmp_path / "repo")
    entry = shlex.split(hook["entry"])
    assert entry[0] == "infra-review"
    argv = [*shlex.split(CLI), *entry[1:]]

    def run() -> subprocess.CompletedProcess:
        return subprocess.run(argv, cwd=root, env=env(), capture_output=True, text=True, timeout=600)

    clean = run()
    assert clean.returncode == 0, clean.stdout + clean.stderr  # existing findings never block a commit
    deployment = root / "base/worker/deployment.yaml"
    deployment.write_text(deployment.read_text().replace("worker:1.4.2", "worker:latest"))
    changed = run()
    assert changed.returncode == 1 and "latest-tag" in changed.stdout
    assert " warning " not in changed.stdout, "--quiet: the errors and the summary"
