"""`infra-review review` local mode on the example repository: the dry run of the App's review."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from bot.__main__ import main
from bot.cli.demo import BASE_BRANCH, PR_BRANCH, build_example_repo
from bot.cli.review import changed_paths
from bot.model import Finding, Origin
from bot.review.anchors import anchor, parse_diff
from bot.review.spans import object_spans


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return build_example_repo(tmp_path_factory.mktemp("cli-review") / "shop")


def test_prints_the_check_run_and_the_comments_it_would_post(repo, capsys):
    rc = main(["review", "--repo", str(repo), "--base", BASE_BRANCH, "--head", PR_BRANCH])
    out = capsys.readouterr().out
    assert rc == 1
    assert "== check run `infra-review`: failure ==" in out
    title = next(line for line in out.splitlines() if line.startswith("title: "))
    assert " new errors, 1 new warning in production, staging, development (2 existing)" in title
    assert "| `overlays/staging/cache` | staging | ok |" in out
    assert "overlays/staging/web/kustomization.yaml:17 notice env-defaults (staging) [existing]" in out
    assert "== review (COMMENT," in out
    assert "--- overlays/production/worker/patch-deployment.yaml:6" in out and "```suggestion" in out
    assert "--- overlays/production/web/patch-deployment.yaml:22" in out  # removed limits, anchored on the hunk
    assert "--- overlays/staging/api/patch-deployment.yaml:13" in out
    assert "fake-staging-pw-0000" not in out
    assert out.count("<!-- infra-review:fp=") >= 5


def test_json_format_holds_the_payloads(repo, capsys):
    rc = main(["review", "--repo", str(repo), "--base", BASE_BRANCH, "--head", PR_BRANCH, "--format", "json"])
    data = json.loads(capsys.readouterr().out)
    assert rc == 1
    assert data["check_run"][0]["conclusion"] == "failure"
    lines = {(c["path"], c["line"]) for c in data["review"]["comments"]}
    assert ("overlays/production/api/kustomization.yaml", 12) in lines, "the newTag line sets the tag"


def test_no_change_means_success_and_no_review(repo, capsys):
    rc = main(["review", "--repo", str(repo), "--base", BASE_BRANCH, "--head", BASE_BRANCH])
    out = capsys.readouterr().out
    assert rc == 0
    assert "== check run `infra-review`: success ==" in out
    assert "== review: none (nothing new to say) ==" in out


def test_unknown_revision_is_a_usage_error(repo, capsys):
    assert main(["review", "--repo", str(repo), "--base", "nope", "--head", PR_BRANCH]) == 2
    assert "infra-review review:" in capsys.readouterr().err


def test_renamed_files_count_under_both_names():
    assert changed_paths("M\ta.yaml\nR090\told/x.yaml\tnew/x.yaml\nA\tb.yaml\n") == {
        "a.yaml", "old/x.yaml", "new/x.yaml", "b.yaml"}


def test_deleted_probe_is_anchored_where_it_was_deleted(repo, tmp_path):
    """A finding on the container line of base/api (18) is outside the diff (hunk 36-38): its
    object's span lets the comment sit on the line bordering the deleted readinessProbe."""
    diff = parse_diff(subprocess.run(["git", "-C", str(repo), "diff", f"{BASE_BRANCH}...{PR_BRANCH}"],
                                     capture_output=True, text=True, check=True).stdout)
    finding = Finding("missing-probes", "error", "production", "no readinessProbe", "add one",
                      origin=Origin("base/api/deployment.yaml", 18, 18, "enclosing"))
    spans = object_spans(repo, [finding])
    start, end = spans[id(finding)]
    assert start == 1 and end >= 38
    assert anchor(finding, diff) is None
    assert anchor(finding, diff, spans[id(finding)]) == 38


def test_serve_runs_the_app_with_the_real_review(monkeypatch):
    import bot.app.cli
    import bot.app.review

    seen = {}

    def fake_serve(host, port, *, review, fail, with_worker=True, public_url=None):
        seen.update(host=host, port=port, review=review, fail=fail)
        return 0

    monkeypatch.setattr(bot.app.cli, "serve", fake_serve)
    assert main(["serve", "--host", "127.0.0.1", "--port", "9000"]) == 0
    assert seen == {"host": "127.0.0.1", "port": 9000, "review": bot.app.review.review, "fail": bot.app.review.fail}
