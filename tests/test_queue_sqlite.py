"""The embedded queue: durable, deduplicating, one live job per PR, resumable after a restart."""

from __future__ import annotations

import pytest
from queue_contract import QueueContract, job

from bot.queue import open_queue
from bot.queue.sqlite import SqliteQueue


@pytest.fixture
async def queue(tmp_path):
    q = SqliteQueue(tmp_path / "q.sqlite3")
    await q.open()
    yield q
    await q.close()


@pytest.fixture
async def reopen(tmp_path):
    """Reopens the store through QUEUE_URL, as a restarted app does."""
    opened = []

    async def _reopen():
        q = open_queue(f"sqlite:///{tmp_path / 'q.sqlite3'}")
        await q.open()
        opened.append(q)
        return q

    yield _reopen
    for q in opened:
        await q.close()


class TestSqliteQueue(QueueContract):
    pass


async def test_wal_mode_and_ping(queue):
    assert await queue.journal_mode() == "wal"
    await queue.ping()


async def test_open_queue_picks_sqlite(tmp_path):
    q = open_queue(f"sqlite:///{tmp_path / 'sub' / 'q.sqlite3'}")
    assert isinstance(q, SqliteQueue)
    await q.open()
    assert (await q.enqueue(job())).id == 1
    await q.close()
    assert (tmp_path / "sub" / "q.sqlite3").exists()


FIRST_RELEASE_SCHEMA = """
CREATE TABLE deliveries (delivery_id TEXT PRIMARY KEY, event TEXT NOT NULL, payload TEXT NOT NULL,
    received_at REAL NOT NULL, finished_at REAL, error TEXT);
CREATE TABLE jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, installation_id INTEGER NOT NULL, repo TEXT NOT NULL,
    pr_number INTEGER NOT NULL, head_sha TEXT NOT NULL, reason TEXT NOT NULL, delivery_id TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 1, state TEXT NOT NULL, created_at REAL NOT NULL, started_at REAL,
    finished_at REAL, error TEXT);
INSERT INTO deliveries VALUES ('x-1', 'pull_request', '{"big": "payload"}', 1.0, 2.0, NULL);
INSERT INTO jobs (installation_id, repo, pr_number, head_sha, reason, delivery_id, state, created_at, started_at)
    VALUES (1, 'o/r', 1, 'aaaa', 'pull_request.opened', 'x-1', 'superseded', 1.0, 1.5),
           (1, 'o/r', 2, 'bbbb', 'pull_request.opened', 'x-1', 'running', 1.0, 1.5);
"""


async def test_a_store_from_the_first_release_is_migrated_and_prunable(tmp_path):
    """Its superseded-while-running jobs have no finish time and its handled deliveries keep their payload."""
    import sqlite3

    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(FIRST_RELEASE_SCHEMA)
    q = SqliteQueue(path)
    await q.open()
    try:
        assert q.db.execute("SELECT payload FROM deliveries").fetchone() == ("",)
        assert await q.recover() == 1
        assert await q.prune(retention=3600) == 2, "the legacy finished job and handled delivery"
        assert [(j.pr_number, j.attempt) for j in await q.jobs()] == [(2, 2)]
        assert (await q.claim()).pr_number == 2
    finally:
        await q.close()


async def test_a_store_from_the_release_before_retries_gains_their_columns(tmp_path):
    """Opened by this release, a store of the previous one (crash suspects, no retries) keeps its work:
    a queued job is ready and waiting since it was created, a job that ran before counts as claimed."""
    import sqlite3

    path = tmp_path / "previous.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(FIRST_RELEASE_SCHEMA)
        db.execute("ALTER TABLE jobs ADD COLUMN suspect INTEGER NOT NULL DEFAULT 0")
        db.execute("INSERT INTO jobs (installation_id, repo, pr_number, head_sha, reason, delivery_id, state,"
                   " created_at) VALUES (1, 'o/r', 3, 'cccc', 'pull_request.opened', 'x-2', 'queued', 1.0)")
    q = SqliteQueue(path)
    await q.open()
    try:
        assert await q.recover() == 1
        stats = await q.stats()
        assert (stats.queued, stats.running, stats.dead_letters) == (2, 0, 0) and stats.oldest_age > 1e9
        resumed = await q.claim()
        assert (resumed.pr_number, resumed.claims, resumed.failures, resumed.resumed) == (2, 2, 0, True)
        assert await q.retry(resumed.id, "RuntimeError: boom", delay=3600)
        fresh = await q.claim()
        assert (fresh.pr_number, fresh.claims) == (3, 1)
        assert await q.dead_letter(fresh.id, "RuntimeError: boom")
        assert [d.job.pr_number for d in await q.dead_letters()] == [3]
        assert await q.record_result(fresh.id, {"conclusion": "failure"})
        assert [(r.pr_number, r.summary) for r in await q.recent(limit=1)] == [(3, {"conclusion": "failure"})]
    finally:
        await q.close()


async def test_one_process_at_a_time_runs_workers_on_a_store(tmp_path, monkeypatch):
    """The second recover() waits until the first process is gone (a rolling restart's old process drains),
    instead of taking that process's running jobs for a dead one's."""
    import asyncio

    import bot.queue.sqlite as sqlite_queue

    monkeypatch.setattr(sqlite_queue, "LOCK_POLL", 0.02)
    first, second = SqliteQueue(tmp_path / "q.sqlite3"), SqliteQueue(tmp_path / "q.sqlite3")
    await first.open()
    await second.open()
    try:
        await first.enqueue(job())
        await first.recover()
        await first.claim()
        waiting = asyncio.create_task(second.recover())
        await asyncio.sleep(0.2)
        assert not waiting.done()
        await first.close()
        assert await asyncio.wait_for(waiting, 5) == 1
    finally:
        await first.close()
        await second.close()
