"""The embedded queue: durable, deduplicating, one live job per PR, resumable after a restart."""

from __future__ import annotations

import pytest

from bot.queue import Delivery, Job, JobState, open_queue
from bot.queue.sqlite import SqliteQueue


def job(sha: str = "a" * 40, pr: int = 2, repo: str = "Codertocat/Hello-World", delivery: str = "d1") -> Job:
    return Job(installation_id=1, repo=repo, pr_number=pr, head_sha=sha, reason="pull_request.opened",
               delivery_id=delivery)


@pytest.fixture
async def queue(tmp_path):
    q = SqliteQueue(tmp_path / "q.sqlite3")
    await q.open()
    yield q
    await q.close()


async def test_wal_mode_and_ping(queue):
    assert await queue.journal_mode() == "wal"
    await queue.ping()


async def test_redelivery_is_recorded_once(queue):
    assert await queue.add_delivery(Delivery("x-1", "pull_request", "{}"))
    assert not await queue.add_delivery(Delivery("x-1", "pull_request", "{}"))
    assert (await queue.next_delivery()).delivery_id == "x-1"
    await queue.finish_delivery("x-1")
    assert await queue.next_delivery() is None
    assert not await queue.add_delivery(Delivery("x-1", "pull_request", "{}"))


async def test_newer_head_supersedes_queued_and_running_work(queue):
    first = await queue.enqueue(job("a" * 40))
    running = await queue.claim()
    assert running.id == first.id and running.state is JobState.RUNNING
    queued_same_pr = await queue.enqueue(job("b" * 40, delivery="d2"))
    assert await queue.state(first.id) is JobState.SUPERSEDED
    newest = await queue.enqueue(job("c" * 40, delivery="d3"))
    assert await queue.state(queued_same_pr.id) is JobState.SUPERSEDED
    assert not await queue.finish(first.id, JobState.DONE), "a superseded job must not be marked done"
    assert (await queue.claim()).id == newest.id


async def test_one_running_job_per_pr(queue):
    await queue.enqueue(job("a" * 40))
    first = await queue.claim()
    await queue.enqueue(job("a" * 40, delivery="recheck"))
    other_pr = await queue.enqueue(job("d" * 40, pr=3))
    assert (await queue.claim()).id == other_pr.id
    assert await queue.claim() is None, "PR 2 already has a running job"
    await queue.finish(first.id, JobState.DONE)
    assert (await queue.claim()).delivery_id == "recheck"


async def test_close_cancels_pending_work(queue):
    await queue.enqueue(job("a" * 40))
    await queue.claim()
    await queue.enqueue(job("a" * 40, delivery="d2"))
    assert await queue.cancel_pr("Codertocat/Hello-World", 2) == 2
    assert (await queue.counts())["cancelled"] == 2
    assert await queue.claim() is None


async def test_restart_resumes_running_job_with_next_attempt(tmp_path):
    path = tmp_path / "q.sqlite3"
    q = SqliteQueue(path)
    await q.open()
    stored = await q.enqueue(job())
    await q.claim()
    await q.close()
    restarted = open_queue(f"sqlite:///{path}")
    await restarted.open()
    assert await restarted.recover() == 1
    resumed = await restarted.claim()
    assert (resumed.id, resumed.attempt) == (stored.id, 2)
    await restarted.close()
