"""Check-run and review bodies: GitHub's request schemas, its limits, and our comment rules."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from conftest_paths import OPENAPI
from openapi_schema_validator import OAS30WriteValidator
from test_publish_samples import DEPLOY, build_error, latest_tag, missing_probe, sample_report

from bot.model import Finding, Origin, ResourceId, Suggestion
from bot.publish.github import (
    MAX_OUTPUT_CHARS,
    check_run_complete,
    check_run_create,
    check_run_error,
    check_title,
    conclusion,
    marker,
    open_fingerprints,
    parse_fingerprint,
    review_payload,
    stale_comments,
    truncate,
)
from bot.publish.report import Report
from bot.review.anchors import parse_diff

OPERATIONS = {
    "checks/create": ("/repos/{owner}/{repo}/check-runs", "post"),
    "checks/update": ("/repos/{owner}/{repo}/check-runs/{check_run_id}", "patch"),
    "pulls/create-review": ("/repos/{owner}/{repo}/pulls/{pull_number}/reviews", "post"),
}


@pytest.fixture(scope="module")
def validators() -> dict[str, OAS30WriteValidator]:
    spec = json.loads(OPENAPI.read_text())
    out = {}
    for op, (path, method) in OPERATIONS.items():
        schema = dict(spec["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"])
        # checks/create's `discriminator` has no mapping and inline branches, which the validator would
        # resolve as `#/components/schemas/<status>`; the `oneOf` it annotates still applies.
        schema.pop("discriminator", None)
        out[op] = OAS30WriteValidator(schema)
    return out


def _assert_valid(validator: OAS30WriteValidator, body: dict) -> None:
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(body)]
    assert not errors, errors


def _many(n: int) -> list[Finding]:
    return [Finding("missing-labels", "warning", "production", f"missing label {i}", "add it",
                    resource=ResourceId("apps", "v1", "Deployment", "p", f"app{i}"),
                    origin=Origin(f"apps/app{i}.yaml", 1 + i % 7, 1 + i % 7)) for i in range(n)]


# --- check run -----------------------------------------------------------------------------


def test_create_payload(validators) -> None:
    body = check_run_create("f" * 40, 42, started_at="2026-01-02T03:04:05Z")
    _assert_valid(validators["checks/create"], body)
    assert body["name"] == "infra-review" and body["status"] == "in_progress"
    assert body["external_id"] == "42" and body["head_sha"] == "f" * 40


def test_schema_check_is_real(validators) -> None:
    bad = check_run_complete(sample_report(), 1)[0]
    bad["output"]["annotations"] = bad["output"]["annotations"] * 30
    assert not validators["checks/update"].is_valid(bad)
    assert not validators["checks/create"].is_valid({"name": "x", "head_sha": "y", "status": "completed"})


def test_complete_payload_validates_and_concludes(validators) -> None:
    bodies = check_run_complete(sample_report(), 7, completed_at="2026-01-02T03:04:05Z")
    assert len(bodies) == 1
    first = bodies[0]
    _assert_valid(validators["checks/update"], first)
    _assert_valid(validators["checks/create"], {**first, "head_sha": "a" * 40})
    assert first["conclusion"] == "failure" and first["external_id"] == "7"
    assert first["output"]["title"] == "3 new errors in production, staging (1 existing, 1 suppressed)"
    assert first["actions"] == [{"label": "Re-check", "identifier": "recheck",
                                 "description": "Run infra-review again on this commit"}]
    summary = first["output"]["summary"]
    assert "### production" in summary and "### staging" in summary and "kustomize v5.5.0" in summary
    assert "| `latest-tag` | error | 1 | 0 | 0 |" in summary
    assert "| `missing-probes` | warning | 0 | 1 | 0 |" in summary
    assert "| `hardcoded-secret` | error | 0 | 0 | 1 |" in summary
    assert "| `overlays/production/broken` | production | error | 0 |" in summary


def test_annotations_already_on_a_resumed_run_are_not_appended_again() -> None:
    many = Report([replace(latest_tag(), origin=Origin(file=f"apps/{i:03}/deployment.yaml", line=3))
                   for i in range(120)])
    fresh = [a for body in check_run_complete(many, 1) for a in body["output"]["annotations"]]
    assert [len(b["output"]["annotations"]) for b in check_run_complete(many, 1)] == [50, 50, 20]
    listed = [{**a, "blob_href": "https://github.com/o/r/blob/x/" + a["path"]} for a in fresh[:60]]  # as GitHub lists them
    resumed = check_run_complete(many, 1, already=listed)
    assert [len(b["output"]["annotations"]) for b in resumed] == [50, 10]
    assert [a for b in resumed for a in b["output"]["annotations"]] == fresh[60:]
    assert resumed[0]["status"] == "completed", "the run is completed again even with nothing left to append"
    assert check_run_complete(many, 1, already=fresh)[0]["output"]["annotations"] == []


def test_conclusions() -> None:
    warn_new = Report([missing_probe(new=True)])
    assert conclusion(warn_new) == "neutral" and check_title(warn_new) == "1 new warning in staging"
    existing_only = Report([latest_tag(new=False), missing_probe()])
    assert conclusion(existing_only) == "success"
    assert check_title(existing_only) == "No new findings (2 existing)"
    assert conclusion(existing_only, fail_on="all") == "failure"
    suppressed_only = Report([replace(latest_tag(), suppressed=True)])
    assert conclusion(suppressed_only) == "success" and check_title(suppressed_only) == "No findings (1 suppressed)"
    assert conclusion(Report([])) == "success"
    with pytest.raises(ValueError):
        conclusion(Report([]), fail_on="some")


def test_annotations_levels_and_what_is_located() -> None:
    anns = check_run_complete(sample_report(), 1)[0]["output"]["annotations"]
    assert [a["title"] for a in anns] == ["latest-tag (production)", "latest-tag (staging)",
                                          "missing-probes (staging) [existing]"]
    assert [a["annotation_level"] for a in anns] == ["failure", "failure", "notice"]
    assert anns[0] == {"path": DEPLOY, "start_line": 21, "end_line": 21, "annotation_level": "failure",
                       "title": "latest-tag (production)",
                       "message": "Deployment production/api, container api: image nginx:latest uses the "
                                  "mutable tag `latest`\nFix: Pin the image to a version tag or digest.",
                       "raw_details": "Suggested replacement for lines 21-21:\n        image: nginx:1.27.3\n"}
    all_mode = check_run_complete(Report([missing_probe()]), 1, fail_on="all")[0]["output"]["annotations"]
    assert all_mode[0]["annotation_level"] == "warning"


def test_120_annotations_make_three_requests_of_at_most_50(validators) -> None:
    bodies = check_run_complete(Report(_many(120)), 3)
    assert [len(b["output"]["annotations"]) for b in bodies] == [50, 50, 20]
    for body in bodies:
        _assert_valid(validators["checks/update"], body)
    assert "conclusion" in bodies[0] and all("conclusion" not in b for b in bodies[1:])
    assert all(b["output"]["summary"] == bodies[0]["output"]["summary"] for b in bodies)
    paths = [a["path"] for b in bodies for a in b["output"]["annotations"]]
    assert len(set(paths)) == 120


def test_summary_and_text_truncated_within_limit(validators) -> None:
    findings = [replace(f, message="x" * 400) for f in _many(2000)]
    for i, f in enumerate(findings):
        f.rule = f"rule-{i}"
    bodies = check_run_complete(Report(findings), 1)
    out = bodies[0]["output"]
    for key in ("summary", "text"):
        assert len(out[key]) <= MAX_OUTPUT_CHARS
        assert "truncated" in out[key].splitlines()[-1]
    _assert_valid(validators["checks/update"], bodies[0])
    assert truncate("short") == "short"
    cut = truncate("\n".join(["y" * 99] * 2000))
    assert len(cut) <= MAX_OUTPUT_CHARS and cut.endswith("for the full report._")
    assert all(line == "y" * 99 for line in cut.split("\n\n_")[0].splitlines())


def test_error_completion(validators) -> None:
    body = check_run_error(5, "kustomize timed out on overlays/production")
    _assert_valid(validators["checks/update"], body)
    assert body["conclusion"] == "failure" and "timed out" in body["output"]["summary"]


# --- review --------------------------------------------------------------------------------

BASE_DEPLOY = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
spec:
  template:
    spec:
      containers:
      - name: api
        image: nginx:1.27.3
        readinessProbe:
          httpGet:
            path: /ready
            port: 8080
        ports:
        - containerPort: 8080
"""
HEAD_DEPLOY = BASE_DEPLOY.replace("nginx:1.27.3", "nginx:latest").replace(
    "        readinessProbe:\n          httpGet:\n            path: /ready\n            port: 8080\n", "")


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def diff(tmp_path_factory: pytest.TempPathFactory):
    if not shutil.which("git"):
        pytest.skip("needs git")
    root = tmp_path_factory.mktemp("rev")
    _git(root, "init", "-q")
    _git(root, "config", "user.email", "t@example.invalid")
    _git(root, "config", "user.name", "t")
    (root / "base/api").mkdir(parents=True)
    (root / DEPLOY).write_text(BASE_DEPLOY)
    _git(root, "add", ".")
    _git(root, "commit", "-qm", "base")
    (root / DEPLOY).write_text(HEAD_DEPLOY)
    (root / "base/api/values.yaml").write_text("a: 1\nb: 2\nc: 3\n")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "head")
    out = subprocess.run(["git", "-C", str(root), "diff", "HEAD~1", "HEAD"], capture_output=True, text=True)
    return parse_diff(out.stdout)


IMAGE_LINE = HEAD_DEPLOY.splitlines().index("        image: nginx:latest") + 1
CONTAINER_LINE = IMAGE_LINE - 1


def _tag(env: str = "production", line: int = IMAGE_LINE) -> Finding:
    return replace(latest_tag(env), origin=Origin(DEPLOY, line, line),
                   suggestion=Suggestion(DEPLOY, line, line, "        image: nginx:1.27.3\n"))


def _probe() -> Finding:
    return replace(missing_probe(new=True), environment="production",
                   origin=Origin(DEPLOY, CONTAINER_LINE, CONTAINER_LINE, "enclosing"))


def test_review_payload_validates_and_anchors(validators, diff) -> None:
    report = Report([_tag(), _tag("staging"), _probe(), build_error()], head_sha="c" * 40)
    body = review_payload(report, diff, existing_fingerprints=[],
                          object_span=lambda f: (1, len(HEAD_DEPLOY.splitlines())))
    _assert_valid(validators["pulls/create-review"], body)
    assert body["event"] == "COMMENT" and body["commit_id"] == "c" * 40
    tag, probe = body["comments"]  # errors first
    assert all(c["side"] == "RIGHT" and c["path"] == DEPLOY and c["line"] == IMAGE_LINE for c in (tag, probe))
    assert "`latest-tag` · production, staging" in tag["body"]
    assert "```suggestion\n        image: nginx:1.27.3\n```" in tag["body"]
    assert parse_fingerprint(tag["body"]) == _tag().fingerprint
    assert open_fingerprints([tag]) == {_tag().fingerprint, _tag("staging").fingerprint}
    assert "`missing-probes`" in probe["body"] and "suggestion" not in probe["body"]
    assert "1 new finding outside the lines" in body["body"]


def test_removed_probe_next_to_an_edit_anchors_on_the_edit(diff) -> None:
    """git shows the probe removal and the image edit as one replacement block, so the comment sits
    on the replacement line; a pure deletion is covered in test_anchors."""
    span = (1, len(HEAD_DEPLOY.splitlines()))
    body = review_payload(Report([_probe()]), diff, [], object_span=lambda f: span)
    (comment,) = body["comments"]
    assert comment["line"] == IMAGE_LINE and IMAGE_LINE in diff.files[DEPLOY].added
    assert marker(_probe().fingerprint) in comment["body"]
    assert review_payload(Report([_probe()]), diff, []) is None  # no span: not anchored, nothing to say


def test_multi_line_suggestion_uses_start_line(validators, diff) -> None:
    f = replace(_probe(), origin=Origin("base/api/values.yaml", 2, 2),
                suggestion=Suggestion("base/api/values.yaml", 1, 2, "a: 10\nb: 20\n"))
    body = review_payload(Report([f]), diff, [])
    _assert_valid(validators["pulls/create-review"], body)
    (c,) = body["comments"]
    assert (c["start_line"], c["line"], c["start_side"], c["side"]) == (1, 2, "RIGHT", "RIGHT")
    assert "```suggestion\na: 10\nb: 20\n```" in c["body"]


def test_suggestion_outside_anchor_is_shown_not_suggested(diff) -> None:
    f = replace(_tag(), suggestion=Suggestion(DEPLOY, 1, 2, "apiVersion: apps/v1\nkind: Deployment\n"))
    (c,) = review_payload(Report([f]), diff, [])["comments"]
    assert c["line"] == IMAGE_LINE and "```suggestion" not in c["body"]
    assert "Suggested replacement for `base/api/deployment.yaml` lines 1-2" in c["body"]


def test_only_new_unsuppressed_and_not_already_posted(diff) -> None:
    old = replace(_tag(), new=False)
    hidden = replace(_tag("staging"), suppressed=True)
    assert review_payload(Report([old, hidden]), diff, []) is None
    report = Report([_tag(), _tag("staging")])
    first = review_payload(report, diff, [])
    posted = open_fingerprints(first["comments"])
    assert review_payload(report, diff, posted) is None
    partly = review_payload(report, diff, {_tag().fingerprint})
    (c,) = partly["comments"]
    assert parse_fingerprint(c["body"]) == _tag("staging").fingerprint and _tag().fingerprint not in c["body"]


def test_cap_summarises_overflow(validators, diff) -> None:
    findings = [replace(_tag(), rule=f"rule-{i}") for i in range(5)]
    body = review_payload(Report(findings), diff, [], cap=2)
    _assert_valid(validators["pulls/create-review"], body)
    assert len(body["comments"]) == 2
    assert "3 more comments not posted inline" in body["body"]
    assert body["body"].count("- **error** `rule-") == 3


def test_review_rejects_unknown_mode(diff) -> None:
    with pytest.raises(ValueError):
        review_payload(Report([_tag()]), diff, [], mode="all")


def test_stale_comments_spare_replied_and_current() -> None:
    gone, kept, replied = "1" * 16, "2" * 16, "3" * 16
    comments = [
        {"id": 1, "body": f"x\n{marker(gone)}", "in_reply_to_id": None},
        {"id": 2, "body": f"y\n{marker(kept)}"},
        {"id": 3, "body": f"z\n{marker(replied)}"},
        {"id": 4, "body": "thanks, will fix", "in_reply_to_id": 3},
        {"id": 5, "body": "a human comment"},
    ]
    assert stale_comments(comments, {kept}) == [1]
    assert parse_fingerprint("no marker") is None
