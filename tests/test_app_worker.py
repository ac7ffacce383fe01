"""The worker: supersession mid-review, failures retried then completed via `fail`, restarts, draining,
GitHub trouble mid-run."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from bot.app.auth import TokenCache
from bot.app.context import AppContext
from bot.app.handlers import build_router
from bot.app.server import WORKER
from bot.app.worker import JobCancelled, TooManyAttempts, Worker, retry_delay
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


async def test_the_last_review_failure_is_handed_to_fail(make_bot, settings, fakegh):
    async def broken(job, gh):
        await gh.post("/repos/{owner}/{repo}/check-runs", {"owner": job.owner, "repo": job.name},
                      data={"name": "infra-review", "head_sha": job.head_sha, "status": "in_progress"})
        raise RuntimeError("kustomize exploded")

    async def complete_with_explanation(job, gh, exc):
        run_id = next(iter(fakegh.check_runs))
        await gh.patch("/repos/{owner}/{repo}/check-runs/{check_run_id}",
                       {"owner": job.owner, "repo": job.name, "check_run_id": run_id},
                       data={"conclusion": "failure", "output": {"title": "review failed", "summary": str(exc)}})

    bot = await make_bot(broken, complete_with_explanation, settings_override=replace(settings, max_failures=1))
    await bot.send("pull_request", load_payload("pull_request", "opened.payload.json"))
    await bot.settle()
    [(job, exc)] = bot.failed
    assert isinstance(exc, RuntimeError)
    [run] = fakegh.check_runs.values()
    assert run["status"] == "completed" and run["output"]["summary"] == "kustomize exploded"
    [stored] = await bot.queue.jobs()
    assert stored.state is JobState.FAILED
    [letter] = await bot.queue.dead_letters()
    assert (letter.job.id, letter.failures, letter.error) == (stored.id, 1, "RuntimeError: kustomize exploded")


async def retrying_bot(make_bot, settings, review, max_failures: int = 3):
    """A bot whose failed reviews are retried at once."""
    bot = await make_bot(review, settings_override=replace(settings, max_failures=max_failures))
    bot.app[WORKER].retry_base = 0.0
    return bot


async def test_a_failing_review_is_retried_then_given_up_as_a_dead_letter(make_bot, settings):
    async def broken(job, gh):
        raise RuntimeError(f"kustomize exploded on run {job.claims}")

    bot = await retrying_bot(make_bot, settings, broken)
    await bot.send("pull_request", load_payload("pull_request", "opened.payload.json"))
    await bot.settle()
    assert [(j.failures, j.claims, j.attempt, j.resumed) for j in bot.reviewed] == [
        (0, 1, 1, False), (1, 2, 1, True), (2, 3, 1, True)]
    [(job, exc)] = bot.failed
    assert str(exc) == "kustomize exploded on run 3", "fail runs once, with the last failure"
    [letter] = await bot.queue.dead_letters()
    assert (letter.failures, letter.error, letter.job.state) == (3, "RuntimeError: kustomize exploded on run 3",
                                                                 JobState.FAILED)
    assert bot.app[WORKER].metrics.value("infra_review_jobs_finished_total", outcome="retried") == 2


async def test_a_review_that_fails_once_is_done_on_its_retry_without_fail(make_bot, settings, fakegh):
    async def flaky(job, gh):
        if job.failures == 0:
            raise ConnectionError("GitHub went away")
        await check_run_review(job, gh)

    bot = await retrying_bot(make_bot, settings, flaky)
    await bot.send("pull_request", load_payload("pull_request", "opened.payload.json"))
    await bot.settle()
    assert bot.failed == [] and len(bot.reviewed) == 2
    [stored] = await bot.queue.jobs()
    assert (stored.state, stored.failures) == (JobState.DONE, 1)
    assert await bot.queue.dead_letters() == []


async def test_a_review_failing_after_its_job_was_superseded_is_not_retried(make_bot, settings):
    async def superseded_then_broken(job, gh):
        if job.head_sha != NEW_HEAD:
            await bot.queue.enqueue(replace(job, head_sha=NEW_HEAD, id=None, delivery_id="push"))
            raise RuntimeError("kustomize exploded")

    bot = await retrying_bot(make_bot, settings, superseded_then_broken)
    await bot.send("pull_request", load_payload("pull_request", "opened.payload.json"))
    await bot.settle()
    [(stale, exc)] = bot.failed
    assert isinstance(exc, JobCancelled) and exc.state is JobState.SUPERSEDED
    assert [(j.head_sha == NEW_HEAD, j.state, j.failures) for j in await bot.queue.jobs()] == [
        (False, JobState.SUPERSEDED, 0), (True, JobState.DONE, 0)]


def test_retries_back_off_from_thirty_seconds_to_fifteen_minutes():
    assert [retry_delay(n) for n in (1, 2, 3, 5, 6, 20)] == [30, 60, 120, 480, 900, 900]
    assert retry_delay(4, base=0.0) == 0


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
    """The job went back to the queue under the worker (a replica whose lease ran out; played here by
    another handle on the store): the worker stops its review without completing the check run or
    recording an outcome; the next run does both."""
    started, release = asyncio.Event(), asyncio.Event()

    async def first_run_hangs(job, gh):
        if job.claims == 1:
            started.set()
            await release.wait()
        await check_run_review(job, gh)

    bot = await make_bot(first_run_hangs)
    await bot.send("pull_request", load_payload("pull_request", "opened.payload.json"))
    await asyncio.wait_for(started.wait(), 5)
    other = SqliteQueue(settings.queue_url.removeprefix("sqlite:///"))
    await other.open()
    [running] = await other.jobs()
    assert await other.release(running.key)
    await other.close()
    await bot.settle()
    assert bot.failed == []
    assert [j.claims for j in bot.reviewed] == [1, 2]
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


async def blocked_bot(make_bot, settings):
    """A bot whose reviews block until `release` is set; `started` is set once one runs."""
    started, release = asyncio.Event(), asyncio.Event()

    async def blocks(job, gh):
        started.set()
        await release.wait()

    bot = await make_bot(blocks, settings_override=replace(settings, max_failures=1))
    await bot.send("pull_request", load_payload("pull_request", "opened.payload.json"))
    await asyncio.wait_for(started.wait(), 5)
    return bot, release


async def test_draining_lets_a_review_finish_within_the_grace_and_claims_nothing_new(make_bot, settings):
    bot, release = await blocked_bot(make_bot, settings)
    worker = bot.app[WORKER]
    draining = asyncio.create_task(worker.drain(grace=30))
    await asyncio.sleep(0.1)
    other = await bot.queue.enqueue(Job(installation_id=1, repo="octo/other", pr_number=7, head_sha="b" * 40,
                                        reason="pull_request.opened", delivery_id="later"))
    worker.wake()
    await asyncio.sleep(0.1)
    assert not draining.done()
    release.set()
    await asyncio.wait_for(draining, 5)
    assert [(j.pr_number, j.state) for j in await bot.queue.jobs()] == [(2, JobState.DONE),
                                                                        (other.pr_number, JobState.QUEUED)]
    assert bot.failed == []


async def test_draining_hands_a_review_past_the_grace_back_to_the_queue_uncharged(make_bot, settings):
    bot, _ = await blocked_bot(make_bot, settings)
    await asyncio.wait_for(bot.app[WORKER].drain(grace=0.1), 15)
    [stored] = await bot.queue.jobs()
    assert (stored.state, stored.attempt, stored.failures, stored.claims) == (JobState.QUEUED, 1, 0, 1)
    assert bot.failed == [], "its next run completes the check run"
    again = await bot.queue.claim()
    assert (again.id, again.attempt, again.resumed) == (stored.id, 1, True)


@pytest.mark.parametrize(("concurrency", "recovered"), [(0, 0), (2, 1)])
async def test_only_a_process_that_runs_workers_recovers_the_store(settings, concurrency, recovered):
    """With SQLite, a web-only process beside the worker process must not take the worker's running jobs
    for a dead process's."""
    queue = SqliteQueue(settings.queue_url.removeprefix("sqlite:///"))
    await queue.open()
    await queue.enqueue(Job(installation_id=1, repo="o/r", pr_number=1, head_sha="a" * 40, reason="test",
                            delivery_id="d"))
    await queue.claim()
    async def never(*_):
        await asyncio.Event().wait()

    worker = Worker(queue, lambda _: None, review=never, fail=never, router=build_router(),
                    ctx=AppContext(queue=queue, settings=settings, tokens=TokenCache()), concurrency=concurrency)
    try:
        await worker.start()
        [stored] = await queue.jobs()
        assert stored.attempt == 1 + recovered
    finally:
        await worker.stop()
        await queue.close()
