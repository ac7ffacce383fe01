"""The embedded queue: SQLite in WAL mode, one short transaction per operation."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from .base import Delivery, Job, JobState, Queue

SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    delivery_id TEXT PRIMARY KEY,
    event TEXT NOT NULL,
    payload TEXT NOT NULL,
    received_at REAL NOT NULL,
    finished_at REAL,
    error TEXT
);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    installation_id INTEGER NOT NULL,
    repo TEXT NOT NULL,
    pr_number INTEGER NOT NULL,
    head_sha TEXT NOT NULL,
    reason TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 1,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    error TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_pr ON jobs (repo, pr_number, state);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, id);
"""
JOB_COLUMNS = "id, installation_id, repo, pr_number, head_sha, reason, delivery_id, attempt, state"


def _job(row: tuple) -> Job:
    id_, inst, repo, pr, sha, reason, delivery, attempt, state = row
    return Job(installation_id=inst, repo=repo, pr_number=pr, head_sha=sha, reason=reason,
               delivery_id=delivery, attempt=attempt, id=id_, state=JobState(state))


class SqliteQueue(Queue):
    """Operations are a few milliseconds each, so they run on the event loop thread."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._db: sqlite3.Connection | None = None

    async def open(self) -> None:
        if self._db is not None:
            return
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=5000")
        db.executescript(SCHEMA)
        self._db = db

    async def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("queue is not open")
        return self._db

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    async def ping(self) -> None:
        with self._tx() as db:
            db.execute("SELECT count(*) FROM jobs").fetchone()

    async def journal_mode(self) -> str:
        return self.db.execute("PRAGMA journal_mode").fetchone()[0]

    async def add_delivery(self, delivery: Delivery) -> bool:
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO deliveries (delivery_id, event, payload, received_at) VALUES (?,?,?,?)",
                (delivery.delivery_id, delivery.event, delivery.payload, time.time()))
            return cur.rowcount == 1

    async def next_delivery(self) -> Delivery | None:
        row = self.db.execute(
            "SELECT delivery_id, event, payload FROM deliveries WHERE finished_at IS NULL "
            "ORDER BY received_at, rowid LIMIT 1").fetchone()
        return Delivery(*row) if row else None

    async def finish_delivery(self, delivery_id: str, error: str | None = None) -> None:
        with self._tx() as db:
            db.execute("UPDATE deliveries SET finished_at = ?, error = ? WHERE delivery_id = ?",
                       (time.time(), error, delivery_id))

    async def enqueue(self, job: Job) -> Job:
        with self._tx() as db:
            db.execute("UPDATE jobs SET state = ?, finished_at = ? WHERE repo = ? AND pr_number = ? AND state = ?",
                       (JobState.SUPERSEDED, time.time(), job.repo, job.pr_number, JobState.QUEUED))
            db.execute(
                "UPDATE jobs SET state = ? WHERE repo = ? AND pr_number = ? AND state = ? AND head_sha != ?",
                (JobState.SUPERSEDED, job.repo, job.pr_number, JobState.RUNNING, job.head_sha))
            cur = db.execute(
                "INSERT INTO jobs (installation_id, repo, pr_number, head_sha, reason, delivery_id, attempt,"
                " state, created_at) VALUES (?,?,?,?,?,?,?,?,?)",
                (job.installation_id, job.repo, job.pr_number, job.head_sha, job.reason, job.delivery_id,
                 job.attempt, JobState.QUEUED, time.time()))
        return replace(job, id=cur.lastrowid, state=JobState.QUEUED)

    async def cancel_pr(self, repo: str, pr_number: int) -> int:
        with self._tx() as db:
            cur = db.execute(
                "UPDATE jobs SET state = ?, finished_at = ? WHERE repo = ? AND pr_number = ? AND state IN (?, ?)",
                (JobState.CANCELLED, time.time(), repo, pr_number, JobState.QUEUED, JobState.RUNNING))
            return cur.rowcount

    async def claim(self) -> Job | None:
        with self._tx() as db:
            row = db.execute(
                f"SELECT {JOB_COLUMNS} FROM jobs AS j WHERE state = ? AND NOT EXISTS ("
                " SELECT 1 FROM jobs AS r WHERE r.repo = j.repo AND r.pr_number = j.pr_number AND r.state = ?)"
                " ORDER BY id LIMIT 1", (JobState.QUEUED, JobState.RUNNING)).fetchone()
            if row is None:
                return None
            db.execute("UPDATE jobs SET state = ?, started_at = ? WHERE id = ?",
                       (JobState.RUNNING, time.time(), row[0]))
        return _job(row).with_state(JobState.RUNNING)

    async def state(self, job_id: int) -> JobState:
        row = self.db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise KeyError(job_id)
        return JobState(row[0])

    async def finish(self, job_id: int, state: JobState, error: str | None = None) -> bool:
        with self._tx() as db:
            cur = db.execute("UPDATE jobs SET state = ?, finished_at = ?, error = ? WHERE id = ? AND state = ?",
                             (state, time.time(), error, job_id, JobState.RUNNING))
            if cur.rowcount == 0:
                db.execute("UPDATE jobs SET finished_at = ? WHERE id = ? AND finished_at IS NULL",
                           (time.time(), job_id))
            return cur.rowcount == 1

    async def recover(self) -> int:
        with self._tx() as db:
            cur = db.execute("UPDATE jobs SET state = ?, attempt = attempt + 1, started_at = NULL WHERE state = ?",
                             (JobState.QUEUED, JobState.RUNNING))
            return cur.rowcount

    async def counts(self) -> dict[str, int]:
        counts = {state.value: 0 for state in JobState}
        for state, n in self.db.execute("SELECT state, count(*) FROM jobs GROUP BY state"):
            counts[state] = n
        return counts

    async def jobs(self, repo: str | None = None, pr_number: int | None = None) -> list[Job]:
        sql, args = f"SELECT {JOB_COLUMNS} FROM jobs", []
        if repo is not None:
            sql += " WHERE repo = ?" + (" AND pr_number = ?" if pr_number is not None else "")
            args = [repo] + ([pr_number] if pr_number is not None else [])
        return [_job(row) for row in self.db.execute(sql + " ORDER BY id", args)]
