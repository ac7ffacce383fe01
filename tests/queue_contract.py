"""The behaviour every Queue backend owes the app, run against each one.

A backend's test module subclasses `QueueContract` (as `Test...`) and provides two fixtures:
`queue`, an open queue on an empty store, and `reopen`, an async factory that opens another
instance on the same store (a restarted process, or another replica).
"""

from __future__ import annotations

import pytest

from bot.queue import Delivery, Job, JobState, QueueStats
from tests.conftest import eventually

REPO = "Codertocat/Hello-World"


def job(sha: str = "a" * 40, pr: int = 2, repo: str = REPO, delivery: str = "d1", failures: int = 0) -> Job:
    return Job(installation_id=1, repo=repo, pr_number=pr, head_sha=sha, reason="pull_request.opened",
               delivery_id=delivery, failures=failures)


async def running(queue, *jobs: Job) -> list[Job]:
    """Enqueue and claim these jobs (of different PRs), in order."""
    stored = [await queue.enqueue(j) for j in jobs]
    claimed = [await queue.claim() for _ in stored]
    assert [c.id for c in claimed] == [s.id for s in stored]
    return claimed


async def crash_with_two_running(queue, reopen):
    """Two jobs were running when the process died: the restarted one holds them as suspects."""
    first, second = await running(queue, job("a" * 40, pr=1), job("b" * 40, pr=2))
    await queue.close()
    current = await reopen()
    assert await current.recover() == 2
    return current, first, second


class QueueContract:
    async def test_ping(self, queue):
        await queue.ping()

    async def test_redelivery_is_recorded_once(self, queue):
        assert await queue.add_delivery(Delivery("x-1", "pull_request", "{}"))
        assert not await queue.add_delivery(Delivery("x-1", "pull_request", "{}"))
        assert (await queue.next_delivery()).delivery_id == "x-1"
        await queue.finish_delivery("x-1")
        assert await queue.next_delivery() is None
        assert not await queue.add_delivery(Delivery("x-1", "pull_request", "{}"))

    async def test_deliveries_are_handled_oldest_first(self, queue):
        for n in (1, 2, 3):
            await queue.add_delivery(Delivery(f"x-{n}", "push", f'{{"n": {n}}}'))
        assert await queue.next_delivery() == Delivery("x-1", "push", '{"n": 1}')
        assert (await queue.next_delivery()).delivery_id == "x-1", "unfinished until finish_delivery"
        await queue.finish_delivery("x-1", error="RuntimeError: boom")
        assert await queue.next_delivery() == Delivery("x-2", "push", '{"n": 2}')
        await queue.finish_delivery("x-2")
        await queue.finish_delivery("never-seen")
        assert (await queue.next_delivery()).delivery_id == "x-3"

    async def test_newer_head_supersedes_queued_and_running_work(self, queue):
        first = await queue.enqueue(job("a" * 40))
        running = await queue.claim()
        assert running.id == first.id and running.state is JobState.RUNNING
        queued_same_pr = await queue.enqueue(job("b" * 40, delivery="d2"))
        assert await queue.state(first.id) is JobState.SUPERSEDED
        newest = await queue.enqueue(job("c" * 40, delivery="d3"))
        assert await queue.state(queued_same_pr.id) is JobState.SUPERSEDED
        assert not await queue.finish(first.id, JobState.DONE), "a superseded job must not be marked done"
        assert await queue.state(first.id) is JobState.SUPERSEDED
        assert (await queue.claim()).id == newest.id

    async def test_a_delivery_handled_again_gets_its_live_job_back(self, queue):
        """Its process died after queueing the job and before marking the delivery handled: handling it
        again must not review the head twice (two check runs on one commit)."""
        first = await queue.enqueue(job("a" * 40, delivery="d1"))
        again = await queue.enqueue(job("a" * 40, delivery="d1"))
        assert (again.id, again.state) == (first.id, JobState.QUEUED)
        claimed = await queue.claim()
        while_running = await queue.enqueue(job("a" * 40, delivery="d1"))
        assert (while_running.id, while_running.state) == (claimed.id, JobState.RUNNING)
        assert [j.id for j in await queue.live_jobs(REPO, 2)] == [first.id]
        assert await queue.finish(first.id, JobState.DONE)
        after = await queue.enqueue(job("a" * 40, delivery="d1"))
        assert after.id != first.id, "once done, the same delivery is new work (as a re-run would be)"

    async def test_same_head_recheck_waits_for_running_job(self, queue):
        first = await queue.enqueue(job("a" * 40))
        await queue.claim()
        recheck = await queue.enqueue(job("a" * 40, delivery="recheck"))
        assert await queue.state(first.id) is JobState.RUNNING
        assert await queue.state(recheck.id) is JobState.QUEUED

    async def test_one_running_job_per_pr(self, queue):
        await queue.enqueue(job("a" * 40))
        first = await queue.claim()
        await queue.enqueue(job("a" * 40, delivery="recheck"))
        other_pr = await queue.enqueue(job("d" * 40, pr=3))
        assert (await queue.claim()).id == other_pr.id
        assert await queue.claim() is None, "PR 2 already has a running job"
        await queue.finish(first.id, JobState.DONE)
        assert (await queue.claim()).delivery_id == "recheck"

    async def test_claim_takes_oldest_first_and_returns_the_stored_job(self, queue):
        stored = [await queue.enqueue(job(sha, pr=pr)) for sha, pr in (("a" * 40, 5), ("b" * 40, 4))]
        claimed = [await queue.claim(), await queue.claim()]
        assert [j.id for j in claimed] == [s.id for s in stored]
        assert claimed[0] == stored[0] and claimed[0].state is JobState.RUNNING
        assert await queue.claim() is None

    async def test_close_cancels_pending_work(self, queue):
        await queue.enqueue(job("a" * 40))
        await queue.claim()
        await queue.enqueue(job("a" * 40, delivery="d2"))
        await queue.enqueue(job("e" * 40, pr=9))
        assert await queue.cancel_pr(REPO, 2) == 2
        assert (await queue.counts())["cancelled"] == 2
        assert await queue.cancel_pr(REPO, 2) == 0
        assert (await queue.claim()).pr_number == 9
        assert await queue.claim() is None

    async def test_finish_records_outcome_once(self, queue):
        stored = await queue.enqueue(job())
        await queue.claim()
        assert await queue.finish(stored.id, JobState.FAILED, "RuntimeError: boom")
        assert await queue.state(stored.id) is JobState.FAILED
        assert not await queue.finish(stored.id, JobState.DONE)
        assert await queue.state(stored.id) is JobState.FAILED
        assert not await queue.finish(10_000, JobState.DONE)
        with pytest.raises(KeyError):
            await queue.state(10_000)

    async def test_counts_and_jobs_listing(self, queue):
        assert await queue.counts() == {state.value: 0 for state in JobState}
        a = await queue.enqueue(job("a" * 40, pr=1))
        b = await queue.enqueue(job("b" * 40, pr=2))
        c = await queue.enqueue(job("c" * 40, pr=1, repo="octo/other"))
        await queue.claim()
        await queue.enqueue(job("d" * 40, pr=2))
        assert await queue.counts() == {"queued": 2, "running": 1, "done": 0, "failed": 0, "superseded": 1,
                                        "cancelled": 0}
        assert [j.id for j in await queue.jobs()] == [a.id, b.id, c.id, c.id + 1]
        assert [j.id for j in await queue.jobs(REPO)] == [a.id, b.id, c.id + 1]
        listed = await queue.jobs(REPO, 2)
        assert [(j.id, j.state) for j in listed] == [(b.id, JobState.SUPERSEDED), (c.id + 1, JobState.QUEUED)]
        assert listed[0] == b

    async def test_restart_resumes_running_job_with_next_attempt(self, queue, reopen):
        stored = await queue.enqueue(job())
        await queue.claim()
        await queue.close()
        restarted = await reopen()
        assert await restarted.recover() == 1
        assert await restarted.recover() == 0
        resumed = await restarted.claim()
        assert (resumed.id, resumed.attempt) == (stored.id, 2)

    async def test_everything_survives_reopening(self, queue, reopen):
        await queue.add_delivery(Delivery("x-1", "pull_request", '{"action": "opened"}'))
        await queue.add_delivery(Delivery("x-2", "pull_request", "{}"))
        await queue.finish_delivery("x-1")
        done = await queue.enqueue(job("a" * 40, pr=1))
        await queue.claim()
        await queue.finish(done.id, JobState.DONE)
        await queue.enqueue(job("b" * 40, pr=2))
        before = (await queue.jobs(), await queue.counts())
        await queue.close()
        again = await reopen()
        assert (await again.jobs(), await again.counts()) == before
        assert [j.state for j in before[0]] == [JobState.DONE, JobState.QUEUED]
        assert not await again.add_delivery(Delivery("x-1", "pull_request", "{}"))
        assert await again.next_delivery() == Delivery("x-2", "pull_request", "{}")
        assert (await again.claim()).head_sha == "b" * 40

    async def test_live_jobs_are_the_queued_and_running_work_of_one_pr(self, queue):
        running = await queue.enqueue(job("a" * 40))
        await queue.claim()
        recheck = await queue.enqueue(job("a" * 40, delivery="recheck"))
        await queue.enqueue(job("b" * 40, pr=3))
        assert [(j.id, j.state) for j in await queue.live_jobs(REPO, 2)] == [
            (running.id, JobState.RUNNING), (recheck.id, JobState.QUEUED)]
        await queue.finish(running.id, JobState.DONE)
        assert [j.id for j in await queue.live_jobs(REPO, 2)] == [recheck.id]
        assert await queue.live_jobs(REPO, 99) == []

    async def test_prune_drops_finished_work_past_retention_and_keeps_live_work(self, queue):
        await queue.add_delivery(Delivery("x-1", "pull_request", '{"n": 1}'))
        await queue.finish_delivery("x-1")
        await queue.add_delivery(Delivery("x-2", "pull_request", '{"n": 2}'))
        done = await queue.enqueue(job("a" * 40, pr=1))
        await queue.claim()
        await queue.finish(done.id, JobState.DONE)
        superseded_while_running = await queue.enqueue(job("b" * 40, pr=2))
        await queue.claim()
        newer = await queue.enqueue(job("c" * 40, pr=2, delivery="d2"))
        assert (await queue.claim()).id == newer.id
        queued = await queue.enqueue(job("d" * 40, pr=4))
        assert await queue.prune(retention=3600) == 0, "nothing finished an hour ago"
        assert not await queue.add_delivery(Delivery("x-1", "pull_request", "{}")), "redeliveries still deduplicated"
        assert await queue.prune(retention=0) == 3
        assert [(j.id, j.state) for j in await queue.jobs()] == [(newer.id, JobState.RUNNING),
                                                                  (queued.id, JobState.QUEUED)]
        assert await queue.counts() == {**{state.value: 0 for state in JobState}, "queued": 1, "running": 1}
        assert await queue.jobs(REPO, 1) == [] and await queue.prune(retention=0) == 0
        assert await queue.next_delivery() == Delivery("x-2", "pull_request", '{"n": 2}')
        assert await queue.add_delivery(Delivery("x-1", "pull_request", "{}")), "forgotten past the window"
        assert not await queue.finish(superseded_while_running.id, JobState.DONE)

    async def test_a_crash_is_charged_only_to_the_job_that_ran_alone(self, queue, reopen):
        """Two jobs ran when the process died: neither is charged, both become suspects that run alone
        until they finish. The one that keeps crashing is given up; the innocent one keeps attempt 1."""
        poison = await queue.enqueue(job("a" * 40, pr=1))
        innocent = await queue.enqueue(job("b" * 40, pr=2))
        assert [(await queue.claim()).id, (await queue.claim()).id] == [poison.id, innocent.id]
        await queue.close()
        current = await reopen()
        assert await current.recover() == 2
        assert {j.id: j.attempt for j in await current.jobs()} == {poison.id: 1, innocent.id: 1}
        for attempt in (2, 3, 4):
            assert (await current.claim()).id == poison.id
            assert await current.claim() is None, "a crash suspect runs alone"
            await current.close()
            current = await reopen()
            assert await current.recover() == 1
            assert {j.id: j.attempt for j in await current.jobs()} == {poison.id: attempt, innocent.id: 1}
        assert (await current.claim()).attempt == 4  # the worker gives it up (max_attempts 3)
        await current.finish(poison.id, JobState.FAILED)
        resumed = await current.claim()
        assert (resumed.id, resumed.attempt) == (innocent.id, 1)

    async def test_crash_suspects_run_one_at_a_time_before_other_work(self, queue, reopen):
        first = await queue.enqueue(job("a" * 40, pr=1))
        second = await queue.enqueue(job("b" * 40, pr=2))
        await queue.claim()
        await queue.claim()
        await queue.close()
        current = await reopen()
        assert await current.recover() == 2
        fresh = await current.enqueue(job("c" * 40, pr=3))
        assert (await current.claim()).id == first.id
        assert await current.claim() is None
        await current.finish(first.id, JobState.DONE)
        assert (await current.claim()).id == second.id
        assert await current.claim() is None
        await current.finish(second.id, JobState.DONE)
        assert (await current.claim()).id == fresh.id
        later = await current.enqueue(job("d" * 40, pr=4))
        assert (await current.claim()).id == later.id, "no suspect left: jobs run side by side again"

    async def test_a_retried_job_waits_out_its_delay_with_one_more_failure(self, queue, reopen):
        [stored] = await running(queue, job())
        assert stored.claims == 1 and not stored.resumed
        assert await queue.retry(stored.id, "RuntimeError: boom", delay=3600)
        [again] = await queue.jobs()
        assert (again.state, again.attempt, again.failures) == (JobState.QUEUED, 1, 1)
        assert not await queue.retry(stored.id, "RuntimeError: boom", delay=0), "no longer running"
        other = await queue.enqueue(job("b" * 40, pr=3))
        assert (await queue.claim()).id == other.id, "a delayed job holds up nothing else"
        await queue.finish(other.id, JobState.DONE)
        await queue.close()
        restarted = await reopen()
        assert await restarted.claim() is None, "the delay survives a restart"
        assert (await restarted.live_jobs(REPO, 2))[0].state is JobState.QUEUED

    async def test_a_retried_job_is_claimed_again_once_its_delay_is_over(self, queue):
        [stored] = await running(queue, job())
        assert await queue.retry(stored.id, "RuntimeError: boom", delay=0.2)
        resumed = await eventually(queue.claim, what="the retry delay to end")
        assert (resumed.id, resumed.attempt, resumed.failures, resumed.claims) == (stored.id, 1, 1, 2)
        assert resumed.resumed, "its first run opened the check run this run completes"

    async def test_a_newer_head_supersedes_a_job_waiting_to_retry(self, queue):
        [stored] = await running(queue, job("a" * 40))
        assert await queue.retry(stored.id, "RuntimeError: boom", delay=3600)
        newer = await queue.enqueue(job("b" * 40, delivery="d2"))
        assert await queue.state(stored.id) is JobState.SUPERSEDED
        assert (await queue.claim()).id == newer.id

    async def test_a_retried_crash_suspect_is_one_no_longer(self, queue, reopen):
        """A review failure is not a crash: the process survived it, so the job was innocent."""
        current, first, second = await crash_with_two_running(queue, reopen)
        assert (await current.claim()).id == first.id
        assert await current.retry(first.id, "RuntimeError: boom", delay=0)
        assert (await current.claim()).id == second.id, "the other suspect goes first, alone"
        assert await current.claim() is None
        await current.finish(second.id, JobState.DONE)
        fresh = await current.enqueue(job("c" * 40, pr=3))
        assert [(await current.claim()).id, (await current.claim()).id] == [first.id, fresh.id]

    async def test_dead_letters_are_listed_newest_first_until_pruned(self, queue):
        first, second = await running(queue, job("a" * 40, pr=1, failures=4), job("b" * 40, pr=2))
        assert await queue.dead_letter(first.id, "RuntimeError: boom")
        assert await queue.dead_letter(second.id, "ReviewTimeout: too slow")
        assert not await queue.dead_letter(first.id, "again") and not await queue.retry(first.id, "again", 0)
        assert await queue.state(first.id) is JobState.FAILED
        letters = await queue.dead_letters()
        assert [(d.job.id, d.error, d.failures, d.job.failures) for d in letters] == [
            (second.id, "ReviewTimeout: too slow", 1, 1), (first.id, "RuntimeError: boom", 5, 5)]
        assert letters[0].at >= letters[1].at > 0 and letters[1].job == first
        assert letters[1].as_dict() == {"job_id": first.id, "repo": REPO, "pr_number": 1, "head_sha": "a" * 40,
                                        "error": "RuntimeError: boom", "failures": 5, "at": letters[1].at}
        assert [d.job.id for d in await queue.dead_letters(limit=1)] == [second.id]
        assert (await queue.stats()).dead_letters == 2 and (await queue.counts())["failed"] == 2
        assert await queue.prune(retention=3600) == 0
        assert await queue.prune(retention=0) == 2
        assert await queue.dead_letters() == [] and (await queue.stats()).dead_letters == 0

    async def test_a_released_job_is_claimable_at_once_and_charged_nothing(self, queue):
        [stored] = await running(queue, job())
        assert await queue.release(stored.id)
        assert not await queue.release(stored.id), "no longer running"
        again = await queue.claim()
        assert (again.id, again.attempt, again.failures, again.claims) == (stored.id, 1, 0, 2) and again.resumed

    async def test_a_released_crash_suspect_stays_one(self, queue, reopen):
        current, first, _ = await crash_with_two_running(queue, reopen)
        assert (await current.claim()).id == first.id
        assert await current.release(first.id)
        assert (await current.claim()).id == first.id, "suspects go first"
        assert await current.claim() is None, "and still run alone"
        assert [j.attempt for j in await current.jobs()] == [1, 1]

    async def test_recent_lists_finished_jobs_with_what_the_review_recorded(self, queue):
        done, failed = await running(queue, job("a" * 40, pr=1), job("b" * 40, pr=2))
        summary = {"conclusion": "success", "findings": 2, "check_run_url": "https://github.com/o/r/runs/1",
                   "seconds": 1.5}
        assert await queue.record_result(done.id, summary)
        await queue.finish(done.id, JobState.DONE)
        await queue.finish(failed.id, JobState.FAILED, "RuntimeError: boom")
        await queue.enqueue(job("c" * 40, pr=3))
        newest, older = await queue.recent()
        assert (newest.id, newest.state, newest.error, newest.summary) == (failed.id, JobState.FAILED,
                                                                           "RuntimeError: boom", {})
        assert (older.id, older.repo, older.pr_number, older.head_sha, older.error) == (done.id, REPO, 1, "a" * 40,
                                                                                        None)
        assert older.summary == summary and older.as_dict()["state"] == "done"
        assert 0 < older.started_at <= older.finished_at <= newest.finished_at
        assert [r.id for r in await queue.recent(limit=1)] == [failed.id]
        assert not await queue.record_result(10_000, summary)

    async def test_a_review_summary_is_a_small_json_object(self, queue):
        stored = await queue.enqueue(job())
        with pytest.raises(ValueError):
            await queue.record_result(stored.id, {"conclusion": "x" * 5000})
        with pytest.raises(ValueError):
            await queue.record_result(stored.id, ["not", "a", "dict"])  # type: ignore[arg-type]
        assert await queue.record_result(stored.id, {"findings": 0})

    async def test_stats_count_queued_running_dead_and_pending_work(self, queue):
        assert await queue.stats() == QueueStats(queued=0, running=0, oldest_age=None, dead_letters=0,
                                                 deliveries_pending=0)
        await queue.add_delivery(Delivery("x-1", "pull_request", "{}"))
        await queue.add_delivery(Delivery("x-2", "pull_request", "{}"))
        await queue.finish_delivery("x-1")
        [first] = await running(queue, job("a" * 40, pr=1))
        await queue.enqueue(job("b" * 40, pr=2))
        stats = await queue.stats()
        assert (stats.queued, stats.running, stats.deliveries_pending) == (1, 1, 1)
        assert stats.oldest_age is not None and 0 <= stats.oldest_age < 60
        assert await queue.retry(first.id, "RuntimeError: boom", delay=3600)
        await queue.claim()
        stats = await queue.stats()
        assert (stats.queued, stats.running, stats.oldest_age) == (1, 1, None), "a job in its delay waits on nobody"
