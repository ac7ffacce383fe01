"""The queue contract: durable webhook deliveries and review jobs, one live job per pull request."""

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
    async def claim(self) -> Job | None:
        """Mark the oldest queued job of a PR with no running job as running and return it."""

    @abc.abstractmethod
    async def state(self, job_id: int) -> JobState: ...

    @abc.abstractmethod
    async def finish(self, job_id: int, state: JobState, error: str | None = None) -> bool:
        """Record the outcome of a running job; False if it was superseded/cancelled meanwhile."""

    @abc.abstractmethod
    async def recover(self) -> int:
        """After a restart: running jobs go back to queued with attempt + 1; returns how many."""

    @abc.abstractmethod
    async def counts(self) -> dict[str, int]:
        """Jobs by state (for /metrics)."""

    @abc.abstractmethod
    async def jobs(self, repo: str | None = None, pr_number: int | None = None) -> list[Job]:
        """Jobs, oldest first (for tests and operators)."""
