"""The worker: supersession mid-review, failures completed via `fail`, restarts, GitHub trouble mid-run."""

from __future__ import annotations

import asyncio

from bot.app.worker import JobCancelled, TooManyAttempts
from bot.queue import Job, JobState
from bot.queue.sqlite import SqliteQueue
from tests.conftest import check_run_review, eventually, load_payload

NEW_HEAD = "f" * 40


async def test_newer_push_supersedes_running_review(make_bot, fakegh):
    started, release = asyncio.Event(), asyncio.Event()
    published = []

    async def slow_review(job, gh):
        if job.head_sha != NEW_HEAD:
            started.set()
            await release.wait()
            published.append(job.head_sha)
        else:
            await check_run_review(job, gh)
            published.append(job.head_sha)

    bot = await make_bot(slow_review)
    await bot.send("pull_request", load_payload("pull_request", "opened.payload.json"))
    await asyncio.wait_for(started.wait(), 5)
    push = load_payload("pull_request", "synchronize.payload.json")
    push["pull_request"]["head"]["sha"] = NEW_HEAD
    fakegh.repos["Codertocat/Hello-World"].pulls[2].head_sha = NEW_HEAD  # the push, as GitHub reports it
    await bot.send("pull_request", push)
    await bot.settle()
    # the newer job may finish before the stale one's worker notices
    await eventually(lambda: bot.failed, what="the stale review to be stopped")
    release.set()
    assert published == [NEW_HEAD], "a superseded head must never be published"
    [(stale, exc)] = bot.failed
    assert isinstance(exc, JobCancelled) and exc.state is JobState.SUPERSEDED and stale.head_sha != NEW_HEAD
    states = {j.head_sha: j.state for j in await bot.queue.jobs()}
    assert states == {stale.head_sha: JobState.SUPERSEDED, NEW_HEAD: JobState.DONE}
    assert [c.body["head_sha"] for c in fakegh.calls("checks/create")] == [NEW_HEAD]


async def test_review_error_is_handed_to_fail(make_bot, fakegh):
    async def broken(job, gh):
        await gh.post("/repos/{owner}/{repo}/check-runs", {"owner": job.owner, "repo": job.name},
                      data={"name": "infra-review", "head_sha": job.head_sha, "status": "in_progress"})
        raise RuntimeError("kustomize exploded")

    async def complete_with_explanation(job, gh, exc):
        run_id = next(iter(fakegh.check_runs))
        await gh.patch("/repos/{owner}/{repo}/check-runs/{check_run_id}",
                       {"owner": job.owner, "repo": job.name, "check_run_id": run_id},
                       data={"conclusion": "failure", "output": {"title": "review failed", "summary": str(exc)}})

    bot = await make_bot(broken, complete_with_explanation)
    await bot.send("pull_request", load_payload("pull_request", "opened.payload.json"))
    await bot.settle()
    [(job, exc)] = bot.failed
    assert isinstance(exc, RuntimeError)
    [run] = fakegh.check_runs.values()
    assert run["status"] == "completed" and run["output"]["summary"] == "kustomize exploded"
    [stored] = await bot.queue.jobs()
    assert stored.state is JobState.FAILED


async def test_restart_resumes_unfinished_job(make_bot, settings, fakegh):
    path = settings.queue_url.removeprefix("sqlite:///")
    before = SqliteQueue(path)
    await before.open()
    await before.enqueue(Job(installation_id=1, repo="Codertocat/Hello-World", pr_number=2,
                             head_sha="ec26c3e57ca3a959ca5aad62de7213c562f8c821", reason="pull_request.opened",
                             delivery_id="before-crash"))
    await before.claim()
    await before.close()
    bot = await make_bot()
    await bot.settle()
    [job] = bot.reviewed
    assert (job.delivery_id, job.attempt) == ("before-crash", 2)
    assert len(fakegh.calls("checks/create")) == 1


async def test_job_past_its_attempts_is_failed_not_rerun(make_bot, settings):
    path = settings.queue_url.removeprefix("sqlite:///")
    before = SqliteQueue(path)
    await before.open()
    await before.enqueue(Job(installation_id=1, repo="Codertocat/Hello-World", pr_number=2, head_sha="a" * 40,
                             reason="pull_request.opened", delivery_id="d", attempt=3))
    await before.claim()
    await before.close()
    bot = await make_bot()
    await bot.settle()
    assert bot.reviewed == []
    [(_, exc)] = bot.failed
    assert isinstance(exc, TooManyAttempts)


async def test_502s_and_secondary_rate_limit_mid_review(make_bot, fakegh, fake_time):
    fakegh.fail("pulls/list-files", status=502, times=2)
    fakegh.secondary_rate_limit("checks/update", retry_after=42)
    bot = await make_bot()
    await bot.send("pull_request", load_payload("pull_request", "opened.payload.json"))
    await bot.settle()
    assert bot.failed == []
    assert [r.status for r in fakegh.calls("pulls/list-files")] == [502, 502, 200]
    assert [r.status for r in fakegh.calls("checks/update")] == [403, 200]
    assert 42 in fake_time.sleeps
    [run] = fakegh.check_runs.values()
    assert run["conclusion"] == "success"


async def test_a_job_whose_claim_was_lost_is_left_to_its_next_attempt(make_bot, settings, fakegh):
    """The job went back to the queue under the worker (a replica whose lease ran out): the worker stops
    its review without completing the check run or recording an outcome; the next attempt does both."""
    started, release = asyncio.Event(), asyncio.Event()

    async def first_attempt_hangs(job, gh):
        if job.attempt == 1:
            started.set()
            await release.wait()
        await check_run_review(job, gh)

    bot = await make_bot(first_attempt_hangs)
    await bot.send("pull_request", load_payload("pull_request", "opened.payload.json"))
    await asyncio.wait_for(started.wait(), 5)
    other = SqliteQueue(settings.queue_url.removeprefix("sqlite:///"))
    await other.open()
    assert await other.recover() == 1
    await other.close()
    await bot.settle()
    assert bot.failed == []
    assert [j.attempt for j in bot.reviewed] == [1, 2]
    [stored] = await bot.queue.jobs()
    assert stored.state is JobState.DONE
    [run] = fakegh.check_runs.values()
    assert run["conclusion"] == "success"


async def test_finished_work_is_pruned_periodically_past_retention(make_bot, settings):
    from dataclasses import replace

    bot = await make_bot(settings_override=replace(settings, queue_retention=0), prune_interval=0.05)
    await bot.send("pull_request", load_payload("pull_request", "opened.payload.json"), delivery="d-1")
    await bot.settle()

    async def pruned() -> bool:
        return not await bot.queue.jobs()

    await eventually(pruned, what="the finished job to be pruned")
    assert await bot.queue.jobs() == []
    assert (await bot.send("pull_request", load_payload("pull_request", "opened.payload.json"),
                           delivery="d-1")).status == 202, "past retention a delivery id is forgotten"


class CountingQueue(SqliteQueue):
    """Counts the worker's prune passes, so a test can wait for some to have run."""

    prunes = 0

    async def prune(self, retention: float) -> int:
        self.prunes += 1
        return await super().prune(retention)


async def test_within_retention_finished_work_stays_and_redeliveries_are_recognised(make_bot, settings):
    queue = CountingQueue(settings.queue_url.removeprefix("sqlite:///"))
    bot = await make_bot(prune_interval=0.05, queue=queue)
    payload = load_payload("pull_request", "opened.payload.json")
    await bot.send("pull_request", payload, delivery="d-1")
    await bot.settle()
    after = queue.prunes
    await eventually(lambda: queue.prunes >= after + 3, what="three prune passes over the finished job")
    assert [j.state for j in await bot.queue.jobs()] == [JobState.DONE]
    again = await bot.send("pull_request", payload, delivery="d-1")
    assert (again.status, (await again.json())["status"]) == (200, "duplicate")
