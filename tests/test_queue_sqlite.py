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
