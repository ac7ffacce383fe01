"""The command line where people work: filters (`--rule`, `--skip-rule`, `--min-severity`,
`--new-only`, `--quiet`), `--output FILE`, `--fail-on never`, and the rule catalogue (`rules`,
`explain`)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import jsonschema
import pytest
from conftest_paths import SARIF_SCHEMA
from trees import run_bot

from bot.cli.demo import build_example_repo
from rules import all_rules


@pytest.fixture(scope="module")
def pr_repo(tmp_path_factory) -> Path:
    """The example as a git repository: `main`, and the pull request checked out on top."""
    return build_example_repo(tmp_path_factory.mktemp("gitops") / "repo")


def findings(out: subprocess.CompletedProcess) -> list[dict]:
    assert out.returncode in (0, 1), out.stderr
    return json.loads(out.stdout)["findings"]


def test_rule_and_skip_rule_choose_what_is_reported_and_decides(pr_repo):
    only = findings(run_bot("check", str(pr_repo), "--base", "main", "--format", "json", "--rule", "latest-tag"))
    assert only and {f["rule"] for f in only} == {"latest-tag"}
    every = findings(run_bot("check", str(pr_repo), "--base", "main", "--format", "json"))
    skipped = findings(run_bot("check", str(pr_repo), "--base", "main", "--format", "json",
                               "--skip-rule", "latest-tag", "--skip-rule", "missing-probes"))
    assert {f["rule"] for f in skipped} == {f["rule"] for f in every} - {"latest-tag", "missing-probes"}
    notices = run_bot("check", str(pr_repo), "--base", "main", "--rule", "env-defaults", "--format", "json")
    assert notices.returncode == 0, "the only env-defaults finding is an existing warning: nothing fails"


def test_min_severity_and_new_only(pr_repo):
    errors = findings(run_bot("check", str(pr_repo), "--base", "main", "--format", "json", "--min-severity", "error"))
    assert errors and {f["severity"] for f in errors} == {"error"}
    new = findings(run_bot("check", str(pr_repo), "--base", "main", "--format", "json", "--new-only"))
    assert new and all(f["new"] for f in new)


def test_an_unknown_rule_id_is_a_usage_error_with_the_list(pr_repo):
    out = run_bot("check", str(pr_repo), "--rule", "lates-tag")
    assert out.returncode == 2 and "unknown rule id lates-tag" in out.stderr and "latest-tag" in out.stderr


def test_quiet_says_the_errors_and_the_summary(pr_repo):
    out = run_bot("check", str(pr_repo), "--base", "main", "--quiet")
    assert out.returncode == 1
    assert " error " in out.stdout and " warning " not in out.stdout and "note:" not in out.stdout
    assert out.stdout.rstrip().splitlines()[-1].startswith("9 new errors")


def test_output_writes_the_format_to_a_file_and_the_summary_to_stdout(pr_repo, tmp_path):
    sarif = tmp_path / "infra-review.sarif"
    out = run_bot("check", str(pr_repo), "--base", "main", "--format", "sarif", "--output", str(sarif))
    assert out.returncode == 1
    assert out.stdout.strip().endswith(f"sarif written to {sarif}") and "new error" in out.stdout
    doc = json.loads(sarif.read_text())
    if SARIF_SCHEMA.is_file():  # the SARIF 2.1.0 schema, from ../shared
        jsonschema.validate(doc, json.loads(SARIF_SCHEMA.read_text()))
    rules = doc["runs"][0]["tool"]["driver"]["rules"]
    assert all(r["helpUri"].startswith("https://") and "docs/rules.md#" in r["helpUri"] for r in rules)
    unwritable = run_bot("check", str(pr_repo), "--output", str(tmp_path / "no" / "such" / "dir" / "x.json"))
    assert unwritable.returncode == 2 and "give a writable file" in unwritable.stderr


def test_fail_on_never_reports_and_exits_zero(pr_repo):
    out = run_bot("check", str(pr_repo), "--base", "main", "--fail-on", "never")
    assert out.returncode == 0 and "new error" in out.stdout


def test_rules_lists_every_rule_with_its_severities():
    text = run_bot("rules")
    assert text.returncode == 0
    for rule in all_rules():
        assert rule.id in text.stdout
    assert "single-replica" in text.stdout and "error / off / off" in text.stdout
    doc = json.loads(run_bot("rules", "--format", "json").stdout)
    assert [r["id"] for r in doc] == [r.id for r in all_rules()]
    latest = next(r for r in doc if r["id"] == "latest-tag")
    assert latest["severity"] == {"production": "error", "staging": "warning", "development": "notice"}
    assert latest["params"] == {"forbidden_tags": ["latest"], "pinned_tags": []}


def test_explain_says_why_how_to_fix_and_the_parameters():
    out = run_bot("explain", "latest-tag")
    assert out.returncode == 0
    for part in ("latest-tag: Image without a fixed version", "Why:", "Fix:", "forbidden_tags: [\"latest\"]",
                 "docs/rules.md#latest-tag-image-without-a-fixed-version"):
        assert part in out.stdout
    missing = run_bot("explain", "no-such-rule")
    assert missing.returncode == 2 and "pod-security" in missing.stderr
