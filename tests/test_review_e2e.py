"""The real App end to end: a signed real webhook in, the example pull request reviewed against the
fake GitHub (tarballs and `pulls/list-files` patches made from the example repo with git), the fake's
recorded requests out."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bot.app.review import Reviewer, fail, head_is_current, review
from bot.publish.github import MAX_ANNOTATIONS, marker, parse_fingerprints
from tests.conftest import eventually, load_payload
from tests.example_pr import CONFIG, NUMBER, REPO, opened, rerequested, seed_example
from tests.fakegh import FakeGitHub, commentable_lines


def ours(fakegh: FakeGitHub) -> list[dict]:
    return [c for c in fakegh.review_comments if parse_fingerprints(c["body"])]


async def test_example_pull_request_is_reviewed_end_to_end(make_bot, fakegh, example, fake_time):
    pull = seed_example(fakegh, example)
    bot = await make_bot(review, fail)
    started = time.monotonic()
    assert (await bot.send("pull_request", opened(example))).status == 202
    await bot.settle(timeout=60)
    first_run = list(fakegh.requests)
    completed_at = next(r.at for r in first_run if r.operation_id == "checks/update"
                        and r.body.get("status") == "completed")
    assert not bot.failed and fakegh.rejections == []

    [create] = fakegh.calls("checks/create")
    assert create.body["status"] == "in_progress" and create.body["head_sha"] == pull.head_sha
    assert create.body["external_id"] == str(NUMBER)
    updates = fakegh.calls("checks/update")
    assert updates[0].body["status"] == "completed" and updates[0].body["conclusion"] == "failure"
    title = updates[0].body["output"]["title"]
    assert "error" in title and "production" in title, title
    assert all(len(u.body["output"].get("annotations", [])) <= MAX_ANNOTATIONS for u in updates)
    # What the pull request changes in each environment leads the summary; the diffs are in the text.
    summary = updates[0].body["output"]["summary"].splitlines()
    assert summary[2].startswith("- production: ") and "Deployment/worker: replicas 3 → 1" in summary[2]
    text = updates[0].body["output"]["text"]
    assert "<details><summary>production · overlays/production · Deployment/worker: replicas 3 → 1" in text
    assert "fake-staging-pw-0000" not in text and "DB_PASSWORD" in text, "the secret's value is masked"
    (kept,) = await bot.queue.recent()
    assert kept.summary["conclusion"] == "failure" and kept.summary["findings"] >= 9
    assert kept.summary["check_run_url"] == run_url(fakegh) is not None and kept.summary["seconds"] > 0
    [run] = fakegh.check_runs.values()
    assert run["status"] == "completed"
    annotated = {(a["path"], a["annotation_level"]) for a in fakegh.annotations[run["id"]]}
    assert ("overlays/production/worker/patch-deployment.yaml", "failure") in annotated
    assert ("overlays/staging/web/kustomization.yaml", "notice") in annotated  # existing LOG_LEVEL=debug

    [posted] = fakegh.calls("pulls/create-review")
    assert posted.body["event"] == "COMMENT" and posted.body["commit_id"] == pull.head_sha
    comments = posted.body["comments"]
    patches = {f["filename"]: f["patch"] for f in example["files"]}
    for c in comments:
        assert c["line"] in commentable_lines(patches[c["path"]])["RIGHT"], c
        assert parse_fingerprints(c["body"]), c["body"]
    where = {(c["path"], c["line"]): c["body"] for c in comments}
    assert "`single-replica`" in where[("overlays/production/worker/patch-deployment.yaml", 6)]
    assert "`hardcoded-secret`" in where[("overlays/staging/api/patch-deployment.yaml", 13)]
    assert "fake-staging-pw-0000" not in posted.body["body"] + "".join(where.values())
    # The removed `limits:` block: the finding's own line (the container, :14) is outside the hunk
    # (20-22); the comment sits on the changed line of the same object instead.
    removed_limits = where[("overlays/production/web/patch-deployment.yaml", 22)]
    assert "`missing-resources`" in removed_limits and "limits.cpu" in removed_limits
    # The readinessProbe deleted in base/api: the production finding's own line is the container in
    # the (unchanged) production patch; the comment sits where the probe was deleted in the base,
    # another document of the same object.
    probes = [(p, n) for (p, n), body in where.items() if "`missing-probes`" in body]
    assert probes and all(n in commentable_lines(patches[p])["RIGHT"] for p, n in probes)
    deleted_probe = where[("base/api/deployment.yaml", 38)]
    assert "`missing-probes`" in deleted_probe and "production" in deleted_probe

    by_op = Counter(r.operation_id for r in first_run)
    api = sum(n for op, n in by_op.items() if op != "codeload")
    token = by_op["apps/create-installation-access-token"]
    budget = 10 + len(fakegh.annotations[run["id"]]) // 50
    print(f"\nGitHub API requests for one review: {api} ({token} installation token, kept for the hour) "
          f"+ {by_op['codeload']} tarball downloads; budget {budget} besides the token: {dict(by_op)}")
    assert api - token <= budget, dict(by_op)
    print(f"webhook -> completed check run against the fake GitHub: {completed_at - started:.2f} s wall; "
          f"virtual waits (mutation pacing, not slept in tests): {sum(fake_time.sleeps):.1f} s")

    # A re-run of the same head (the Re-run button) says nothing twice.
    count = len(ours(fakegh))
    assert (await bot.send("check_run", rerequested(example))).status == 202
    await bot.settle(timeout=60)
    assert len(bot.reviewed) == 2 and not bot.failed
    assert len(fakegh.calls("pulls/create-review")) == 1
    again = Counter(r.operation_id for r in fakegh.requests[len(first_run):])
    assert not again["apps/create-installation-access-token"], "the token is reused, not asked for per review"
    assert len(ours(fakegh)) == count
    assert not fakegh.calls("pulls/delete-review-comment")
    assert [r["status"] for r in fakegh.check_runs.values()] == ["completed", "completed"]


async def test_stale_comment_of_ours_is_deleted_unless_answered(make_bot, fakegh, example):
    seed_example(fakegh, example)
    pull = fakegh.repos[REPO].pulls[NUMBER]
    gone = "<!-- infra-review:fp=00000000deadbeef -->"
    stale = fakegh._add_review_comment(pull, {"path": "base/web/configmap.yaml", "line": 9, "body": f"old\n{gone}"},
                                       None, fakegh.bot_user())
    answered = fakegh._add_review_comment(pull, {"path": "base/web/configmap.yaml", "line": 9,
                                                 "body": f"older\n{gone}"}, None, fakegh.bot_user())
    fakegh._add_review_comment(pull, {"path": "base/web/configmap.yaml", "line": 9, "body": "why?",
                                      "in_reply_to": answered["id"]}, None)
    bot = await make_bot(review, fail)
    await bot.send("pull_request", opened(example))
    await bot.settle(timeout=60)
    deleted = [r.path.rsplit("/", 1)[1] for r in fakegh.calls("pulls/delete-review-comment")]
    assert deleted == [str(stale["id"])]


async def test_broken_config_completes_the_check_run_as_failure_naming_the_key(make_bot, fakegh, example):
    seed_example(fakegh, example, config=b"fail_on: sometimes\n")
    bot = await make_bot(review, fail)
    await bot.send("pull_request", opened(example))
    await bot.settle(timeout=60)
    [update] = fakegh.calls("checks/update")
    assert update.body["conclusion"] == "failure"
    assert "fail_on" in update.body["output"]["title"] and "fail_on" in update.body["output"]["summary"]
    assert CONFIG in update.body["output"]["summary"]
    assert not fakegh.calls("pulls/create-review") and not fakegh.calls("repos/download-tarball-archive")


async def test_a_superseded_job_never_publishes(make_bot, fakegh, example):
    pull = seed_example(fakegh, example)
    newer = "f" * 40

    async def pushed_meanwhile(job, gh):
        pull.head_sha = newer  # a push landed while we rendered; its webhook is not processed yet
        return await head_is_current(job, gh)

    reviewer = Reviewer(is_current=pushed_meanwhile)
    bot = await make_bot(reviewer.review, reviewer.fail)
    await bot.send("pull_request", opened(example))
    await bot.settle(timeout=60)
    [update] = fakegh.calls("checks/update")
    assert update.body["conclusion"] == "neutral" and newer in update.body["output"]["summary"]
    assert not update.body["output"].get("annotations")
    assert not fakegh.calls("pulls/create-review") and not fakegh.calls("pulls/list-review-comments")


async def test_a_failing_review_never_leaves_the_check_run_in_progress(make_bot, fakegh, example):
    seed_example(fakegh, example)
    fakegh.fail("repos/compare-commits", status=404, message="Not Found")
    bot = await make_bot(review, fail)
    await bot.send("pull_request", opened(example))
    await bot.settle(timeout=60)
    assert len(bot.failed) == 1
    [run] = fakegh.check_runs.values()
    assert run["status"] == "completed" and run["conclusion"] == "failure"
    assert "could not complete" in run["output"]["title"] and "compare" not in run["output"]["title"]
    assert "stopped" in run["output"]["summary"]


async def test_cancelled_review_is_completed_neutral_with_the_new_head(make_bot, fakegh, example):
    """The worker cancels a review whose PR got a newer head; `fail` completes its run as superseded."""
    pull = seed_example(fakegh, example)
    from bot.app.server import CTX
    from bot.queue.base import Job

    release = asyncio.Event()
    reviewer = Reviewer()

    async def slow_review(job, gh):
        real_check = reviewer.is_current

        async def wait_then_check(j, g):
            await release.wait()
            return await real_check(j, g)
        reviewer.is_current = wait_then_check
        await reviewer.review(job, gh)

    bot = await make_bot(slow_review, reviewer.fail)
    await bot.send("pull_request", opened(example))
    ctx = bot.app[CTX]
    await rendering(fakegh)
    newer = "e" * 40
    pull.head_sha = newer
    await ctx.queue.enqueue(Job(installation_id=1, repo=REPO, pr_number=NUMBER, head_sha=newer,
                                reason="pull_request.synchronize", delivery_id="d-newer"))
    await eventually(lambda: bot.failed, what="the worker to stop the superseded review")
    release.set()
    fakegh.repos[REPO].trees[newer] = example["head"]
    await bot.settle(timeout=60)
    first = next(r for r in fakegh.check_runs.values() if r["head_sha"] == example["head_sha"])
    assert first["status"] == "completed" and first["conclusion"] == "neutral"
    assert newer in first["output"]["summary"]
    posted = fakegh.calls("pulls/create-review")
    assert all(r.body["commit_id"] == newer for r in posted)


async def test_502s_and_a_secondary_rate_limit_during_the_real_review(make_bot, fakegh, example, fake_time):
    """GitHub misbehaves while the real review publishes: the tarball and the check-run update get
    502s, the review is hit by a secondary rate limit. The review still completes exactly once."""
    seed_example(fakegh, example)
    fakegh.fail("repos/download-tarball-archive", times=1)
    fakegh.fail("checks/update", times=2)
    fakegh.secondary_rate_limit("pulls/create-review", retry_after=42)
    bot = await make_bot(review, fail)
    await bot.send("pull_request", opened(example))
    await bot.settle(timeout=60)
    assert not bot.failed and fakegh.rejections == []
    [run] = fakegh.check_runs.values()
    assert run["status"] == "completed" and run["conclusion"] == "failure"
    assert len(fakegh.calls("pulls/create-review")) == 2, "one rate-limited attempt, one that landed"
    assert len([c for c in fakegh.review_comments if parse_fingerprints(c["body"])]) > 0
    assert 42 in fake_time.sleeps, "the Retry-After of the secondary rate limit is honoured"


def gated(reviewer: Reviewer, release: asyncio.Event):
    """The real review, held just before it asks GitHub whether its head is still current."""
    real_check = reviewer.is_current

    async def wait_then_check(job, gh):
        await release.wait()
        return await real_check(job, gh)

    reviewer.is_current = wait_then_check
    return reviewer.review


async def rendering(fakegh: FakeGitHub) -> None:
    for _ in range(500):
        if fakegh.calls("checks/create") and fakegh.calls("repos/download-tarball-archive"):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the review never started")


async def handled(bot) -> None:
    for _ in range(500):
        if await bot.queue.next_delivery() is None:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the delivery was never handled")


def head_runs(fakegh: FakeGitHub, sha: str) -> list[dict]:
    return [r for r in fakegh.check_runs.values() if r["head_sha"] == sha]


async def test_a_late_event_for_an_older_commit_never_supersedes_the_head(make_bot, fakegh, example):
    """A redelivered `synchronize` of an older commit arrives while the head is being reviewed. GitHub
    says which head is current: the head's review goes on and completes with its real conclusion."""
    seed_example(fakegh, example)
    release = asyncio.Event()
    reviewer = Reviewer()
    bot = await make_bot(gated(reviewer, release), reviewer.fail)
    await bot.send("pull_request", opened(example))
    await rendering(fakegh)
    late = load_payload("pull_request", "synchronize.payload.json")
    assert late["pull_request"]["head"]["sha"] != example["head_sha"]
    assert (await bot.send("pull_request", late)).status == 202
    await handled(bot)
    release.set()
    await bot.settle(timeout=60)
    assert [j.head_sha for j in bot.reviewed] == [example["head_sha"]]
    [run] = head_runs(fakegh, example["head_sha"])
    assert (run["status"], run["conclusion"]) == ("completed", "failure")
    assert len(fakegh.calls("pulls/create-review")) == 1
    assert not head_runs(fakegh, late["pull_request"]["head"]["sha"])


async def test_a_run_is_never_completed_as_superseded_by_its_own_commit(make_bot, fakegh, example):
    """Whatever stops a review of the commit that is still the head, its run is not `neutral`: a
    neutral required check would let the pull request merge unreviewed."""
    from bot.app.server import CTX
    from bot.queue.base import Job

    seed_example(fakegh, example)
    release = asyncio.Event()
    reviewer = Reviewer()
    bot = await make_bot(gated(reviewer, release), reviewer.fail)
    await bot.send("pull_request", opened(example))
    await rendering(fakegh)
    await bot.app[CTX].queue.enqueue(Job(installation_id=1, repo=REPO, pr_number=NUMBER, head_sha="0" * 40,
                                         reason="pull_request.synchronize", delivery_id="d-stale"))
    await eventually(lambda: bot.failed, what="the worker to stop the superseded review")
    release.set()
    await bot.settle(timeout=60)
    for _ in range(500):  # the stopped job's run is completed after its queue entry left `running`
        if all(r["status"] == "completed" for r in head_runs(fakegh, example["head_sha"])):
            break
        await asyncio.sleep(0.02)
    [run] = head_runs(fakegh, example["head_sha"])
    assert run["status"] == "completed" and run["conclusion"] == "failure", run["output"]["title"]
    assert example["head_sha"][:7] not in run["output"]["title"]
    assert "/recheck" in run["output"]["summary"]
    assert not fakegh.calls("pulls/create-review")


def fingerprints_anyone_can_compute(example: dict, tmp_path: Path) -> set[str]:
    """What a PR author learns by running the CLI on their own branch: every finding's fingerprint."""
    from bot.config import Config
    from bot.review.pipeline import run_check

    for side in ("head", "base"):
        for path, data in example[side].items():
            (tmp_path / side / path).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / side / path).write_bytes(data)
    report = run_check(tmp_path / "head", tmp_path / "base", Config.default())
    return {f.fingerprint for f in report.findings}


async def test_markers_in_comments_the_app_did_not_write_count_for_nothing(make_bot, fakegh, example, tmp_path):
    """The PR author plants one comment holding every fingerprint marker, and another bot and a human
    quote a marker of a finding that is gone: the App still comments on every new finding, and deletes
    none of them."""
    pull = seed_example(fakegh, example)
    forged = "\n".join(marker(fp) for fp in sorted(fingerprints_anyone_can_compute(example, tmp_path)))
    where = {"path": "base/web/configmap.yaml", "line": 9}
    planted = [
        fakegh._add_review_comment(pull, {**where, "body": f"nothing to see\n{forged}"}, None,
                                   fakegh.user(pull.author)),
        fakegh._add_review_comment(pull, {**where, "body": f"quoting\n{marker('00000000deadbeef')}"}, None,
                                   fakegh.user("someone")),
        fakegh._add_review_comment(pull, {**where, "body": f"beep\n{marker('00000000deadbeef')}"}, None,
                                   fakegh.user("other-app[bot]", "Bot")),
    ]
    bot = await make_bot(review, fail)
    await bot.send("pull_request", opened(example))
    await bot.settle(timeout=60)
    [posted] = fakegh.calls("pulls/create-review")
    said = {fp for c in posted.body["comments"] for fp in parse_fingerprints(c["body"])}
    assert said and said <= set(parse_fingerprints(forged)), "every finding commented despite the forgery"
    assert not fakegh.calls("pulls/delete-review-comment")
    assert all(c in fakegh.review_comments for c in [{"pull": NUMBER, **p} for p in planted])
    again = rerequested(example)
    await bot.send("check_run", again)
    await bot.settle(timeout=60)
    assert len(fakegh.calls("pulls/create-review")) == 1, "its own comments do count: nothing said twice"


def run_url(fakegh: Any) -> str | None:
    """The html_url GitHub gave the (one) check run."""
    (run,) = fakegh.check_runs.values()
    return fakegh._check_run_json(run).get("html_url")
