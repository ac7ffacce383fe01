"""The queue contract: durable webhook deliveries and review jobs, one live job per pull request.

A job can go wrong in two ways, counted apart because they call for different answers:

- a *crash* (the process died running it) is counted in `attempt`, below;
- a *review failure* (the review raised or timed out, and the process lived to see it) is counted in
  `failures`: `retry()` puts the job back with a delay, and after settings.max_failures the worker
  gives it up with `dead_letter()`, which keeps a record operators can list (`dead_letters()`).

Crash accounting. A job's `attempt` counts the process deaths it is to blame for, so that a pull
request that kills its worker (a poison render) is given up after a few tries. When a process dies
running one job, that job is charged. When it dies running several, nobody can tell which one did
it, so none is charged: each becomes a *suspect* that runs alone in its process (queued suspects go
before other work, and nothing else starts there while one runs). The next death during a suspect's
solo run is then charged to it; a suspect that finishes was innocent. One process at a time runs
workers on a SQLite store (it holds the store's worker lock), so its running jobs at `recover()` are the
dead process's; Redis groups expired leases by their owner.

A draining process (SIGTERM) hands its unfinished reviews back with `release()`: nobody crashed, so
nothing is charged.

Retention. Finished jobs (dead letters among them) and handled deliveries are kept for `prune(retention)`
to drop once they are older than the window: a delivery id stays known (a redelivery is recognised) for
that long.
"""

from __future__ import annotations

import abc
import enum
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SUPERSEDED = "superseded"
    CANCELLED = "cancelled"


LIVE_STATES = (JobState.QUEUED, JobState.RUNNING)
FINAL_STATES = (JobState.DONE, JobState.FAILED, JobState.SUPERSEDED, JobState.CANCELLED)


@dataclass(frozen=True)
class Job:
    """One review of one head SHA of one pull request."""

    installation_id: int
    repo: str
    pr_number: int
    head_sha: str
    reason: str
    delivery_id: str
    attempt: int = 1
    id: int | None = None
    state: JobState = field(default=JobState.QUEUED, compare=False)
    failures: int = field(default=0, compare=False)
    claims: int = field(default=0, compare=False)

    @property
    def key(self) -> int:
        """The id of a job the queue stores (every claimed job has one)."""
        if self.id is None:
            raise ValueError("this job is not stored in a queue")
        return self.id

    @property
    def owner(self) -> str:
        return self.repo.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.repo.split("/", 1)[1]

    @property
    def resumed(self) -> bool:
        """Whether an earlier run of this job may have opened a check run that this run should complete
        (after a crash, a retry or a release) rather than open another."""
        return self.claims > 1 or self.attempt > 1

    def with_state(self, state: JobState) -> Job:
        return replace(self, state=state)


@dataclass(frozen=True)
class Delivery:
    """A verified webhook delivery kept until its handlers have run."""

    delivery_id: str
    event: str
    payload: str


# What `record_result` accepts: a review's outcome is a few fields, not a report.
MAX_SUMMARY_BYTES = 4096
SUMMARY_KEYS = ("conclusion", "findings", "check_run_url", "seconds")
# A finished job's stored fields, in the order `JobRecord.stored` takes them.
RECORD_FIELDS = ("id", "repo", "pr_number", "head_sha", "state", "started_at", "finished_at", "error", "failures",
                 "summary")


def encode_summary(summary: dict[str, Any]) -> str:
    """The stored form of a review's summary; ValueError if it is not a JSON object of at most 4 KiB."""
    if not isinstance(summary, dict):
        raise ValueError("a review summary is a dict")
    text = json.dumps(summary, separators=(",", ":"), sort_keys=True)
    if len(text.encode()) > MAX_SUMMARY_BYTES:
        raise ValueError(f"a review summary is at most {MAX_SUMMARY_BYTES} bytes of JSON")
    return text


@dataclass(frozen=True)
class JobRecord:
    """A finished job as the status page lists it; `summary` is what the review recorded, if anything
    (see `Queue.record_result`)."""

    id: int
    repo: str
    pr_number: int
    head_sha: str
    state: JobState
    started_at: float | None
    finished_at: float | None
    error: str | None
    failures: int = 0
    summary: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def stored(cls, *row: Any) -> JobRecord:
        """From a store's row of RECORD_FIELDS (Redis gives strings, and None for a field never set)."""
        id_, repo, pr, sha, state, started, finished, error, failures, summary = row
        return cls(id=int(id_), repo=repo, pr_number=int(pr), head_sha=sha, state=JobState(state),
                   started_at=_seconds(started), finished_at=_seconds(finished), error=error or None,
                   failures=int(failures or 0), summary=json.loads(summary) if summary else {})

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "state": self.state.value}


def _seconds(value: float | str | None) -> float | None:
    return None if value is None or value == "" else float(value)


@dataclass(frozen=True)
class DeadLetter:
    """A job given up after too many review failures: its last error, how many failures, when."""

    job: Job
    error: str
    failures: int
    at: float

    @classmethod
    def of(cls, job: Job, error: str | None, at: float) -> DeadLetter:
        return cls(job=job, error=error or "", failures=job.failures, at=float(at))

    def as_dict(self) -> dict[str, Any]:
        """Flat, for pages and JSON: the job's identity beside the record."""
        return {"job_id": self.job.id, "repo": self.job.repo, "pr_number": self.job.pr_number,
                "head_sha": self.job.head_sha, "error": self.error, "failures": self.failures, "at": self.at}


@dataclass(frozen=True)
class QueueStats:
    """The queue at a glance (status page, /metrics). `oldest_age` is how long the longest-waiting
    claimable job has waited, in seconds (since it was queued, or since its retry delay ended); None when
    none waits. Jobs still in their retry delay count as queued but are not waiting on a worker."""

    queued: int
    running: int
    oldest_age: float | None
    dead_letters: int
    deliveries_pending: int

    @property
    def idle(self) -> bool:
        """Every stored delivery handled, no job queued or running."""
        return self.deliveries_pending == 0 and self.queued == 0 and self.running == 0


class Queue(abc.ABC):
    """Everything the server and worker need from storage; implementations must be durable."""

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise unless the store can be read and written."""

    @abc.abstractmethod
    async def add_delivery(self, delivery: Delivery) -> bool:
        """Persist a delivery; False if this delivery id was seen before (a redelivery)."""

    @abc.abstractmethod
    async def next_delivery(self) -> Delivery | None:
        """The oldest delivery whose handlers have not finished."""

    @abc.abstractmethod
    async def finish_delivery(self, delivery_id: str, error: str | None = None) -> None: ...

    @abc.abstractmethod
    async def enqueue(self, job: Job) -> Job:
        """Store a queued job; older queued work for the PR and running work on another SHA is superseded.
        A delivery handled again (its process died before marking it handled) while the job it queued for
        this head is still live gets that job back: nothing is superseded, nothing added."""

    @abc.abstractmethod
    async def cancel_pr(self, repo: str, pr_number: int) -> int:
        """Cancel queued and running work for a PR (it was closed); returns how many jobs."""

    @abc.abstractmethod
    async def live_jobs(self, repo: str, pr_number: int) -> list[Job]:
        """The PR's queued and running jobs, oldest first."""

    @abc.abstractmethod
    async def claim(self) -> Job | None:
        """Mark the oldest queued job of a PR with no running job as running and return it; a crash
        suspect first and only when this process runs nothing, and nothing while one runs here."""

    @abc.abstractmethod
    async def state(self, job_id: int) -> JobState: ...

    @abc.abstractmethod
    async def finish(self, job_id: int, state: JobState, error: str | None = None) -> bool:
        """Record the outcome of a running job; False if it was superseded/cancelled meanwhile."""

    @abc.abstractmethod
    async def retry(self, job_id: int, error: str, delay: float) -> bool:
        """A review failure: the running job goes back to queued with failures + 1 and `error`, not
        claimable for `delay` seconds, and no longer a crash suspect (its process survived it). False if
        the job is no longer running (superseded, cancelled, or its claim was lost)."""

    @abc.abstractmethod
    async def dead_letter(self, job_id: int, error: str) -> bool:
        """The last review failure: the running job becomes FAILED with failures + 1 and `error`, and is
        listed by `dead_letters()` until pruned. False if the job is no longer running."""

    @abc.abstractmethod
    async def dead_letters(self, limit: int = 50) -> list[DeadLetter]:
        """Jobs given up after too many failures, newest first."""

    @abc.abstractmethod
    async def release(self, job_id: int) -> bool:
        """Hand a running job back (its process is shutting down): queued and claimable at once, attempt
        and failures unchanged, a crash suspect still one. False if the job is no longer running."""

    async def record_result(self, job_id: int, summary: dict[str, Any]) -> bool:
        """Store what a review concluded, for `recent()`: a JSON object of at most 4 KiB (ValueError
        otherwise), by convention with the keys of SUMMARY_KEYS — conclusion (the check run's), findings
        (how many), check_run_url, seconds (the review's duration). False if the job is not stored."""
        return await self._store_summary(job_id, encode_summary(summary))

    @abc.abstractmethod
    async def _store_summary(self, job_id: int, text: str) -> bool: ...

    @abc.abstractmethod
    async def recent(self, limit: int = 50) -> list[JobRecord]:
        """Finished jobs, most recently finished first."""

    @abc.abstractmethod
    async def stats(self) -> QueueStats: ...

    @abc.abstractmethod
    async def recover(self) -> int:
        """After a restart: the dead process's running jobs go back to queued as suspects, with
        attempt + 1 only when it ran just one; returns how many."""

    @abc.abstractmethod
    async def prune(self, retention: float) -> int:
        """Delete finished jobs (dead letters with them) and handled deliveries older than `retention`
        seconds; returns how many."""

    @abc.abstractmethod
    async def counts(self) -> dict[str, int]:
        """Jobs by state (for /metrics)."""

    @abc.abstractmethod
    async def jobs(self, repo: str | None = None, pr_number: int | None = None) -> list[Job]:
        """Jobs, oldest first (for tests and operators)."""
