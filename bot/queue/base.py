"""The queue contract: durable webhook deliveries and review jobs, one live job per pull request.

Crash accounting. A job's `attempt` counts the process deaths it is to blame for, so that a pull
request that kills its worker (a poison render) is given up after a few tries. When a process dies
running one job, that job is charged. When it dies running several, nobody can tell which one did
it, so none is charged: each becomes a *suspect* that runs alone in its process (queued suspects go
before other work, and nothing else starts there while one runs). The next death during a suspect's
solo run is then charged to it; a suspect that finishes was innocent. SQLite is one process, so its
running jobs at `recover()` are the dead process's; Redis groups expired leases by their owner.

Retention. Finished jobs and handled deliveries are kept for `prune(retention)` to drop once they are
older than the window: a delivery id stays known (a redelivery is recognised) for that long.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass, field, replace


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

    def with_state(self, state: JobState) -> Job:
        return replace(self, state=state)


@dataclass(frozen=True)
class Delivery:
    """A verified webhook delivery kept until its handlers have run."""

    delivery_id: str
    event: str
    payload: str


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
        """Store a queued job; older queued work for the PR and running work on another SHA is superseded."""

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
    async def recover(self) -> int:
        """After a restart: the dead process's running jobs go back to queued as suspects, with
        attempt + 1 only when it ran just one; returns how many."""

    @abc.abstractmethod
    async def prune(self, retention: float) -> int:
        """Delete finished jobs and handled deliveries older than `retention` seconds; returns how many."""

    @abc.abstractmethod
    async def counts(self) -> dict[str, int]:
        """Jobs by state (for /metrics)."""

    @abc.abstractmethod
    async def jobs(self, repo: str | None = None, pr_number: int | None = None) -> list[Job]:
        """Jobs, oldest first (for tests and operators)."""
