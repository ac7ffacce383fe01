"""The embedded queue: SQLite in WAL mode, one short transaction per operation.

The file is per host, and `recover()` takes every running job for the dead process's: so one process
at a time runs workers on a store. The first `recover()` takes the store's worker lock (an flock on
`<path>-worker.lock`, held until `close()`), and waits while another process holds it — the old process
of a rolling restart, still draining. A web-only `serve --no-worker` beside it only adds deliveries and
never recovers.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from .base import (
    FINAL_STATES,
    LIVE_STATES,
    RECORD_FIELDS,
    DeadLetter,
    Delivery,
    Job,
    JobRecord,
    JobState,
    Queue,
    QueueStats,
)

log = logging.getLogger(__name__)

LOCK_POLL = 1.0  # seconds between tries for a worker lock another process holds

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
    error TEXT,
    suspect INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    claims INTEGER NOT NULL DEFAULT 0,
    ready_at REAL NOT NULL DEFAULT 0,
    dead_at REAL,
    summary TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_pr ON jobs (repo, pr_number, state);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, id);
CREATE INDEX IF NOT EXISTS jobs_by_finish ON jobs (finished_at);
CREATE INDEX IF NOT EXISTS deliveries_by_finish ON deliveries (finished_at);
"""
# Indexes on columns that a store from an older release only has once migrated.
INDEXES = "CREATE INDEX IF NOT EXISTS jobs_by_dead ON jobs (dead_at) WHERE dead_at IS NOT NULL;"
JOB_COLUMNS = "id, installation_id, repo, pr_number, head_sha, reason, delivery_id, attempt, state, failures, claims"
RECORD_COLUMNS = ", ".join(RECORD_FIELDS)
FINAL = ", ".join(f"'{state.value}'" for state in FINAL_STATES)
# Stores from older releases, by the column each release added. Before crash suspects and retention:
# give finished work what pruning needs (a finish time; no payload once handled). Before retries:
# queued jobs were ready when created, and a job that ran before counts as claimed once.
MIGRATIONS = {
    "suspect": (
        "ALTER TABLE jobs ADD COLUMN suspect INTEGER NOT NULL DEFAULT 0",
        f"UPDATE jobs SET finished_at = coalesce(started_at, created_at) WHERE finished_at IS NULL"
        f" AND state IN ({FINAL})",
        "UPDATE deliveries SET payload = '' WHERE finished_at IS NOT NULL",
    ),
    "failures": ("ALTER TABLE jobs ADD COLUMN failures INTEGER NOT NULL DEFAULT 0",),
    "claims": (
        "ALTER TABLE jobs ADD COLUMN claims INTEGER NOT NULL DEFAULT 0",
        "UPDATE jobs SET claims = 1 WHERE started_at IS NOT NULL OR suspect = 1 OR attempt > 1",
    ),
    "ready_at": (
        "ALTER TABLE jobs ADD COLUMN ready_at REAL NOT NULL DEFAULT 0",
        "UPDATE jobs SET ready_at = created_at",
    ),
    "dead_at": ("ALTER TABLE jobs ADD COLUMN dead_at REAL",),
    "summary": ("ALTER TABLE jobs ADD COLUMN summary TEXT",),
}
OLDEST_CLAIMABLE = (
    f"SELECT {JOB_COLUMNS} FROM jobs AS j WHERE state = 'queued' AND ready_at <= ? AND NOT EXISTS ("
    " SELECT 1 FROM jobs AS r WHERE r.repo = j.repo AND r.pr_number = j.pr_number AND r.state = 'running')"
    " ORDER BY id LIMIT 1")
OLDEST_SUSPECT = (f"SELECT {JOB_COLUMNS} FROM jobs WHERE state = 'queued' AND suspect = 1 AND ready_at <= ?"
                  " ORDER BY id LIMIT 1")
# A running job leaving `running`: the shared end of retry, release and dead_letter.
FROM_RUNNING = " WHERE id = ? AND state = 'running'"


def _job(row: tuple) -> Job:
    id_, inst, repo, pr, sha, reason, delivery, attempt, state, failures, claims = row
    return Job(installation_id=inst, repo=repo, pr_number=pr, head_sha=sha, reason=reason, delivery_id=delivery,
               attempt=attempt, id=id_, state=JobState(state), failures=failures, claims=claims)


def _migrate(db: sqlite3.Connection) -> None:
    columns = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
    for column, statements in MIGRATIONS.items():
        if column not in columns:
            for sql in statements:
                db.execute(sql)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _claimable(db: sqlite3.Connection, now: float) -> tuple | None:
    """The next job to start (see "Crash accounting" in base.py): a suspect only into an idle
    process, nothing beside a running suspect, otherwise the oldest ready job of a PR with nothing running."""
    running, suspect_running = db.execute(
        "SELECT count(*), coalesce(max(suspect), 0) FROM jobs WHERE state = 'running'").fetchone()
    if suspect_running:
        return None
    suspect = db.execute(OLDEST_SUSPECT, (now,)).fetchone()
    if suspect is not None:
        return None if running else suspect
    return db.execute(OLDEST_CLAIMABLE, (now,)).fetchone()


class SqliteQueue(Queue):
    """Operations are a few milliseconds each, so they run on the event loop thread."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._db: sqlite3.Connection | None = None
        self._worker_lock: int | None = None

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
        _migrate(db)
        db.executescript(INDEXES)
        self._db = db

    async def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._worker_lock is not None:
            os.close(self._worker_lock)
            self._worker_lock = None

    async def _lock_for_workers(self) -> None:
        """Hold the store's worker lock from now until close (see the module docstring)."""
        if self.path == ":memory:" or self._worker_lock is not None:
            return
        fd = os.open(f"{self.path}-worker.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if not _try_lock(fd):
                log.warning("another process runs workers on %s; waiting for it to exit (one worker process per "
                            "SQLite store: several need QUEUE_URL=redis://…)", self.path)
                while not _try_lock(fd):
                    await asyncio.sleep(LOCK_POLL)
        except BaseException:
            os.close(fd)
            raise
        self._worker_lock = fd

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
        """The payload is dropped: nothing reads it again, and only the id is needed for deduplication."""
        with self._tx() as db:
            db.execute("UPDATE deliveries SET finished_at = ?, error = ?, payload = '' WHERE delivery_id = ?",
                       (time.time(), error, delivery_id))

    async def enqueue(self, job: Job) -> Job:
        with self._tx() as db:
            again = db.execute(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE repo = ? AND pr_number = ? AND state IN (?, ?)"
                " AND head_sha = ? AND delivery_id = ? ORDER BY id LIMIT 1",
                (job.repo, job.pr_number, JobState.QUEUED, JobState.RUNNING, job.head_sha, job.delivery_id)).fetchone()
            if again is not None:
                return _job(again)
            db.execute("UPDATE jobs SET state = ?, finished_at = ? WHERE repo = ? AND pr_number = ? AND state = ?",
                       (JobState.SUPERSEDED, time.time(), job.repo, job.pr_number, JobState.QUEUED))
            db.execute(
                "UPDATE jobs SET state = ?, finished_at = ? WHERE repo = ? AND pr_number = ? AND state = ?"
                " AND head_sha != ?",
                (JobState.SUPERSEDED, time.time(), job.repo, job.pr_number, JobState.RUNNING, job.head_sha))
            now = time.time()
            cur = db.execute(
                "INSERT INTO jobs (installation_id, repo, pr_number, head_sha, reason, delivery_id, attempt,"
                " failures, state, created_at, ready_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (job.installation_id, job.repo, job.pr_number, job.head_sha, job.reason, job.delivery_id,
                 job.attempt, job.failures, JobState.QUEUED, now, now))
        return replace(job, id=cur.lastrowid, state=JobState.QUEUED, claims=0)

    async def cancel_pr(self, repo: str, pr_number: int) -> int:
        with self._tx() as db:
            cur = db.execute(
                "UPDATE jobs SET state = ?, finished_at = ? WHERE repo = ? AND pr_number = ? AND state IN (?, ?)",
                (JobState.CANCELLED, time.time(), repo, pr_number, JobState.QUEUED, JobState.RUNNING))
            return cur.rowcount

    async def live_jobs(self, repo: str, pr_number: int) -> list[Job]:
        rows = self.db.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE repo = ? AND pr_number = ? AND state IN (?, ?)"
                               " ORDER BY id", (repo, pr_number, JobState.QUEUED, JobState.RUNNING))
        return [_job(row) for row in rows]

    async def claim(self) -> Job | None:
        now = time.time()
        with self._tx() as db:
            row = _claimable(db, now)
            if row is None:
                return None
            db.execute("UPDATE jobs SET state = ?, started_at = ?, claims = claims + 1 WHERE id = ?",
                       (JobState.RUNNING, now, row[0]))
        job = _job(row)
        return replace(job, state=JobState.RUNNING, claims=job.claims + 1)

    async def state(self, job_id: int) -> JobState:
        row = self.db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise KeyError(job_id)
        return JobState(row[0])

    async def finish(self, job_id: int, state: JobState, error: str | None = None) -> bool:
        if state in LIVE_STATES:
            raise ValueError(f"finish needs a final state, not {state.value}")
        with self._tx() as db:
            cur = db.execute("UPDATE jobs SET state = ?, finished_at = ?, error = ? WHERE id = ? AND state = ?",
                             (state, time.time(), error, job_id, JobState.RUNNING))
            return cur.rowcount == 1

    async def retry(self, job_id: int, error: str, delay: float) -> bool:
        return self._leave_running("state = 'queued', failures = failures + 1, error = ?, ready_at = ?, suspect = 0,"
                                   " started_at = NULL", error, time.time() + delay, job_id)

    async def release(self, job_id: int) -> bool:
        return self._leave_running("state = 'queued', ready_at = ?, started_at = NULL", time.time(), job_id)

    async def dead_letter(self, job_id: int, error: str) -> bool:
        now = time.time()
        return self._leave_running("state = 'failed', failures = failures + 1, error = ?, finished_at = ?,"
                                   " dead_at = ?", error, now, now, job_id)

    def _leave_running(self, assignments: str, *args: Any) -> bool:
        with self._tx() as db:
            return db.execute(f"UPDATE jobs SET {assignments}{FROM_RUNNING}", args).rowcount == 1

    async def dead_letters(self, limit: int = 50) -> list[DeadLetter]:
        rows = self.db.execute(f"SELECT {JOB_COLUMNS}, error, dead_at FROM jobs WHERE dead_at IS NOT NULL"
                               " ORDER BY dead_at DESC, id DESC LIMIT ?", (limit,))
        return [DeadLetter.of(_job(row[:-2]), *row[-2:]) for row in rows]

    async def _store_summary(self, job_id: int, text: str) -> bool:
        with self._tx() as db:
            return db.execute("UPDATE jobs SET summary = ? WHERE id = ?", (text, job_id)).rowcount == 1

    async def recent(self, limit: int = 50) -> list[JobRecord]:
        rows = self.db.execute(f"SELECT {RECORD_COLUMNS} FROM jobs WHERE state IN ({FINAL})"
                               " ORDER BY finished_at DESC, id DESC LIMIT ?", (limit,))
        return [JobRecord.stored(*row) for row in rows]

    async def stats(self) -> QueueStats:
        now = time.time()
        queued, running, ready_since = self.db.execute(
            "SELECT count(*) FILTER (WHERE state = 'queued'), count(*) FILTER (WHERE state = 'running'),"
            " min(ready_at) FILTER (WHERE state = 'queued' AND ready_at <= ?) FROM jobs", (now,)).fetchone()
        (dead,) = self.db.execute("SELECT count(*) FROM jobs WHERE dead_at IS NOT NULL").fetchone()
        (pending,) = self.db.execute("SELECT count(*) FROM deliveries WHERE finished_at IS NULL").fetchone()
        return QueueStats(queued=queued, running=running, oldest_age=None if ready_since is None else now - ready_since,
                          dead_letters=dead, deliveries_pending=pending)

    async def recover(self) -> int:
        """One process at a time runs workers on the store (this one, once it holds the worker lock), so
        every running job was running when the previous one died."""
        await self._lock_for_workers()
        with self._tx() as db:
            (running,) = db.execute("SELECT count(*) FROM jobs WHERE state = ?", (JobState.RUNNING,)).fetchone()
            db.execute("UPDATE jobs SET state = ?, attempt = attempt + ?, suspect = 1, started_at = NULL, ready_at = ?"
                       " WHERE state = ?", (JobState.QUEUED, int(running == 1), time.time(), JobState.RUNNING))
            return running

    async def prune(self, retention: float) -> int:
        cutoff = time.time() - retention
        with self._tx() as db:
            jobs = db.execute(f"DELETE FROM jobs WHERE finished_at <= ? AND state IN ({FINAL})", (cutoff,))
            deliveries = db.execute("DELETE FROM deliveries WHERE finished_at <= ?", (cutoff,))
            return jobs.rowcount + deliveries.rowcount

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
