"""The fake GitHub itself: it must reject what GitHub rejects and flag what GitHub would not understand."""

from __future__ import annotations

from tests.fakegh import commentable_lines, operations

REPO_VARS = {"owner": "Codertocat", "repo": "Hello-World"}
HEAD = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"


def test_every_operation_of_the_subset_is_routable():
    assert len(operations()) == 45


def test_commentable_lines_follow_hunks():
    patch = "@@ -10,3 +10,4 @@ spec:\n a\n-b\n+c\n+d\n e\n\\ No newline at end of file"
    assert commentable_lines(patch) == {"RIGHT": {10, 11, 12, 13}, "LEFT": {10, 11, 12}}


async def _status(coro) -> int:
    try:
        await coro
    except Exception as exc:
        return exc.status_code
    return 200


async def test_more_than_50_annotations_rejected(gh, fakegh):
    ann = {"path": "a.yaml", "start_line": 1, "end_line": 1, "annotation_level": "warning", "message": "m"}
    data = {"name": "infra-review", "head_sha": HEAD, "output": {"title": "t", "summary": "s",
                                                                  "annotations": [ann] * 51}}
    assert await _status(gh.post("/repos/{owner}/{repo}/check-runs", REPO_VARS, data=data)) == 422
    data["output"]["annotations"] = [ann] * 50
    assert await _status(gh.post("/repos/{owner}/{repo}/check-runs", REPO_VARS, data=data)) == 200
    assert len(fakegh.rejections) == 1


async def test_review_with_one_anchor_outside_the_diff_is_rejected_whole(gh, fakegh):
    url = "/repos/{owner}/{repo}/pulls/{pull_number}/reviews"
    ok = {"path": "apps/web/deployment.yaml", "line": 3, "side": "RIGHT", "body": "fine"}
    bad = {**ok, "line": 40}
    data = {"commit_id": HEAD, "event": "COMMENT", "body": "b", "comments": [ok, bad]}
    assert await _status(gh.post(url, {**REPO_VARS, "pull_number": 2}, data=data)) == 422
    assert fakegh.reviews == [] and fakegh.review_comments == []
    data["comments"] = [ok]
    assert await _status(gh.post(url, {**REPO_VARS, "pull_number": 2}, data=data)) == 200
    assert len(fakegh.review_comments) == 1


async def test_long_bodies_and_bad_reactions_rejected(gh, fakegh):
    url = "/repos/{owner}/{repo}/issues/{issue_number}/comments"
    assert await _status(gh.post(url, {**REPO_VARS, "issue_number": 2}, data={"body": "x" * 65_537})) == 422
    assert await _status(gh.post(url, {**REPO_VARS, "issue_number": 2}, data={"body": "x" * 65_536})) == 200
    react = "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions"
    assert await _status(gh.post(react, {**REPO_VARS, "comment_id": 1}, data={"content": "thumbsup"})) == 422
    assert len(fakegh.rejections) == 2


async def test_invalid_requests_are_recorded_as_violations(gh, fakegh):
    await _status(gh.getitem("/repos/{owner}/{repo}/no-such-thing", REPO_VARS))
    await _status(gh.post("/repos/{owner}/{repo}/check-runs", REPO_VARS,
                          data={"name": "x", "head_sha": HEAD, "status": "completed"}))
    await _status(gh.getitem("/repos/{owner}/{repo}/pulls/{pull_number}/files?bogus=1",
                             {**REPO_VARS, "pull_number": 2}))
    found = list(fakegh.violations)
    fakegh.violations.clear()
    assert len(found) == 3
    assert "no such operation" in found[0] and "checks/create" in found[1] and "bogus" in found[2]
