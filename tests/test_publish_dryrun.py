from __future__ import annotations

from test_publish_samples import DEPLOY, latest_tag, sample_report

from bot.publish.dryrun import render_dry_run
from bot.publish.github import marker
from bot.review.anchors import from_pr_files

PATCH = "@@ -19,5 +19,5 @@ spec:\n       containers:\n       - name: api\n-        image: nginx:1.27.3\n" \
        "+        image: nginx:latest\n         ports:\n         - containerPort: 8080\n"


def test_prints_check_run_and_review_comments() -> None:
    diff = from_pr_files([{"filename": DEPLOY, "status": "modified", "patch": PATCH}])
    stale = {"id": 99, "body": f"old\n{marker('0' * 16)}"}
    out = render_dry_run(sample_report(), diff, pr_number=3, existing_comments=[stale])
    assert "== check run `infra-review`: failure ==" in out
    assert "title: 3 new errors in production, staging (1 existing, 1 suppressed)" in out
    assert "### production" in out
    assert f"  {DEPLOY}:21 failure latest-tag (production): Deployment production/api" in out
    assert "annotations (3, in 1 request):" in out
    assert "== review (COMMENT, 1 inline comments) ==" in out
    assert f"--- {DEPLOY}:21" in out and "```suggestion" in out
    assert "would delete 1 stale comment(s): 99" in out


def test_no_review_when_everything_was_already_said() -> None:
    diff = from_pr_files([{"filename": DEPLOY, "status": "modified", "patch": PATCH}])
    posted = [{"id": 1, "body": marker(latest_tag().fingerprint) + marker(latest_tag("staging").fingerprint)}]
    out = render_dry_run(sample_report(), diff, existing_comments=posted)
    assert "== review: none (nothing new to say) ==" in out
    assert "would delete" not in out
