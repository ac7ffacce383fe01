"""The background worker: runs handlers for stored deliveries and reviews for queued jobs.

A review is an injected coroutine `review(job, gh)`. The worker watches the job while it runs: when a
newer head SHA supersedes it or the PR closes, the review task is cancelled so nothing stale is
published. Whatever ends a claimed job other than success (an exception, supersession, too many
attempts), `fail(job, gh, exc)` is called so the check run never stays in_progress — except when the
job went back to the queue (its claim was lost): its next attempt owns that check run.

Alongside, finished work older than the retention window (settings.queue_retention) is pruned every
`prune_interval` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from gidgethub.routing import Router
from gidgethub.sansio import Event

from ..queue.base import Delivery, Job, JobState, Queue
from .context import AppContext
from .webhooks import installation_id

log = logging.getLogger(__name__)

ReviewFn = Callable[[Job, Any], Awaitable[None]]
FailFn = Callable[[Job, Any, BaseException], Awaitable[None]]
GitHubFactory = Callable[[int], Any]


class JobCancelled(Exception):
    """Given to `fail` when a job stops because its PR moved on (superseded) or closed (cancelled)."""

    def __init__(self, state: JobState) -> None:
        super().__init__(f"review {state.value}: the pull request has a newer head or was closed")
        self.state = state


class TooManyAttempts(Exception):
    pass


class ReviewTimeout(Exception):
    """A review ran past settings.review_timeout; it is stopped and its check run says so."""


class Worker:
    def __init__(self, queue: Queue, github_factory: GitHubFactory, *, review: ReviewFn, fail: FailFn,
                 router: Router, ctx: AppContext, concurrency: int = 2, poll: float = 1.0,
                 watch_interval: float = 0.5, max_attempts: int = 3, prune_interval: float = 3600.0) -> None:
        self.queue = queue
        self.github_factory = github_factory
        self.review = review
        self.fail = fail
        self.router = router
        self.ctx = ctx
        self.concurrency = concurrency
        self.poll = poll
        self.watch_interval = watch_interval
        self.max_attempts = max_attempts
        self.prune_interval = prune_interval
        self.metrics = ctx.metrics
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._loop(self.dispatch_once), name="dispatch")]
        self._tasks += [asyncio.create_task(self._loop(self.run_once), name=f"review-{i}")
                        for i in range(self.concurrency)]
        self._tasks.append(asyncio.create_task(self._prune_forever(), name="prune"))

    async def stop(self) -> None:
        """Stop without failing running jobs: they stay `running` and `recover()` requeues them."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _loop(self, step: Callable[[], Awaitable[bool]]) -> None:
        while True:
            try:
                busy = await step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("worker step failed")
                busy = False
            if not busy:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll)

    async def _prune_forever(self) -> None:
        while True:
            try:
                removed = await self.queue.prune(self.ctx.settings.queue_retention)
                if removed:
                    log.info("pruned %d finished job(s) and deliveries past retention", removed)
            except Exception:
                log.exception("pruning the queue failed")
            await asyncio.sleep(self.prune_interval)

    async def dispatch_once(self) -> bool:
        """Run the handlers of the oldest stored delivery; False if there was none."""
        delivery = await self.queue.next_delivery()
        if delivery is None:
            return False
        error = None
        try:
            await self.dispatch(delivery)
            outcome = "handled"
        except Exception as exc:
            log.exception("delivery %s (%s) failed", delivery.delivery_id, delivery.event)
            error, outcome = f"{type(exc).__name__}: {exc}", "error"
        self.metrics.inc("infra_review_deliveries_handled_total", event=delivery.event, outcome=outcome)
        await self.queue.finish_delivery(delivery.delivery_id, error)
        self.wake()
        return True

    async def dispatch(self, delivery: Delivery) -> None:
        event = Event(json.loads(delivery.payload), event=delivery.event, delivery_id=delivery.delivery_id)
        inst = installation_id(event)
        gh = self.github_factory(inst) if inst is not None else None
        await self.router.dispatch(event, gh, ctx=self.ctx)

    async def run_once(self) -> bool:
        """Claim and run one job; False if none was ready."""
        job = await self.queue.claim()
        if job is None:
            return False
        await self.run_job(job)
        return True

    async def run_job(self, job: Job) -> None:
        gh = self.github_factory(job.installation_id)
        started = time.monotonic()
        if job.attempt > self.max_attempts:
            await self._fail(job, gh, TooManyAttempts(f"gave up after {self.max_attempts} attempts"))
            await self._finish(job, JobState.FAILED, "too many attempts", started)
            return
        task = asyncio.create_task(self._timed(self.review(job, gh)), name=f"job-{job.id}")
        stopped_as = await self._watch(job, task)
        if stopped_as is None and task.exception() is None:
            stopped_as = await self.queue.state(job.key)
            if stopped_as is JobState.RUNNING:
                await self._finish(job, JobState.DONE, None, started)
                return
        if stopped_as is JobState.QUEUED:
            log.warning("job %s for %s#%s went back to the queue (claim lost); its next attempt finishes it",
                        job.id, job.repo, job.pr_number)
            return
        if stopped_as is not None:
            log.info("job %s for %s#%s stopped: %s", job.id, job.repo, job.pr_number, stopped_as.value)
            if task.cancelled() or task.exception() is not None:
                await self._fail(job, gh, JobCancelled(stopped_as))
            await self._finish(job, stopped_as, None, started)
            return
        exc = task.exception()
        assert exc is not None  # neither stopped nor finished cleanly
        log.error("job %s for %s#%s failed: %s: %s", job.id, job.repo, job.pr_number, type(exc).__name__, exc)
        await self._fail(job, gh, exc)
        await self._finish(job, JobState.FAILED, f"{type(exc).__name__}: {exc}", started)

    async def _timed(self, review: Awaitable[None]) -> None:
        """The review under the overall deadline: past it, the review is cancelled (which stops its
        rendering thread) and fails with ReviewTimeout."""
        limit = self.ctx.settings.review_timeout
        try:
            async with asyncio.timeout(limit):
                await review
        except TimeoutError:
            raise ReviewTimeout(f"it took longer than {limit:g} s (REVIEW_TIMEOUT) and was stopped; a build that "
                                "hangs or a very large change can cause this") from None

    async def _watch(self, job: Job, task: asyncio.Task) -> JobState | None:
        """Wait for the review; cancel it when the job stops running in the queue (superseded, PR
        closed, claim lost). Returns that state, or None when the review ended by itself."""
        try:
            while not task.done():
                done, _ = await asyncio.wait({task}, timeout=self.watch_interval)
                if done:
                    break
                state = await self.queue.state(job.key)
                if state is not JobState.RUNNING:
                    task.cancel()
                    await asyncio.wait({task})
                    return state
        except asyncio.CancelledError:
            task.cancel()
            raise
        return JobState.CANCELLED if task.cancelled() else None

    async def _fail(self, job: Job, gh: Any, exc: BaseException) -> None:
        try:
            await self.fail(job, gh, exc)
        except Exception:
            log.exception("job %s: completing the check run after a failure also failed", job.id)

    async def _finish(self, job: Job, state: JobState, error: str | None, started: float) -> None:
        await self.queue.finish(job.key, state, error)
        self.metrics.observe_review(time.monotonic() - started)
        self.metrics.inc("infra_review_jobs_finished_total", outcome=state.value)
