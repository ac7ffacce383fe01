"""The background worker: runs handlers for stored deliveries and reviews for queued jobs.

A review is an injected coroutine `review(job, gh)`. The worker watches the job while it runs: when a
newer head SHA supersedes it or the PR closes, the review task is cancelled so nothing stale is
published. Whatever ends a claimed job for good other than success (supersession, a closed PR, a crash
too many, the last review failure), `fail(job, gh, exc)` is called so the check run never stays
in_progress. A job that goes back to the queue is not `fail`ed: its next run completes that check run
(`Job.resumed`). That happens when

- its review failed (raised, or ran past settings.review_timeout): a *review failure*, retried after a
  backoff (30 s, doubling, at most 15 min) until settings.max_failures, then given up as a dead letter;
- its claim was lost (a replica's lease ran out) or its process drains (SIGTERM, `drain`): no failure.

*Crashes* are the queue's business (`attempt`, crash suspects; see bot.queue.base): a job whose process
died too often is failed when claimed again, without a retry.

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

from ..queue.base import LIVE_STATES, Delivery, Job, JobState, Queue
from .context import AppContext
from .logs import log_context
from .outcome import Outcome
from .webhooks import installation_id

log = logging.getLogger(__name__)

RETRY_BASE = 30.0  # seconds before the first retry of a failed review; doubled for each further failure
RETRY_CAP = 900.0
UNWIND = 10.0  # seconds a released review gets to stop (its process to reach a step) before its task is cancelled

# A review may return what it concluded (bot.app.review.Outcome): the worker stores it for the status
# page and counts it in the metrics.
ReviewFn = Callable[[Job, Any], Awaitable[Any]]
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


def retry_delay(failures: int, base: float = RETRY_BASE, cap: float = RETRY_CAP) -> float:
    """Backoff before a failed review runs again: long enough for a GitHub outage or a rate limit to pass."""
    return min(cap, base * 2 ** max(failures - 1, 0))


class Worker:
    """`concurrency` reviews at a time; 0 makes a web-only process's worker, which runs nothing.
    `retry_base` is the first retry's delay (tests make it ~0)."""

    def __init__(self, queue: Queue, github_factory: GitHubFactory, *, review: ReviewFn, fail: FailFn,
                 router: Router, ctx: AppContext, concurrency: int = 2, poll: float = 1.0,
                 watch_interval: float = 0.5, max_attempts: int = 3, prune_interval: float = 3600.0,
                 retry_base: float = RETRY_BASE) -> None:
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
        self.retry_base = retry_base
        self.metrics = ctx.metrics
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._pruner: asyncio.Task | None = None
        self._reviewing: dict[int, Job] = {}
        self._draining = False

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        """Requeue what a dead process left running, then run. A web-only process (concurrency 0) does
        neither: with SQLite, the jobs running in the store are the worker process's, alive."""
        if self.concurrency == 0:
            return
        self._draining = False
        resumed = await self.queue.recover()
        if resumed:
            log.info("resuming %d unfinished job(s)", resumed)
        self._tasks = [asyncio.create_task(self._loop(self.dispatch_once), name="dispatch")]
        self._tasks += [asyncio.create_task(self._loop(self.run_once), name=f"review-{i}")
                        for i in range(self.concurrency)]
        self._pruner = asyncio.create_task(self._prune_forever(), name="prune")

    async def stop(self) -> None:
        """Stop without failing running jobs: they stay `running` and `recover()` requeues them."""
        tasks = [*self._tasks, *([self._pruner] if self._pruner else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks, self._pruner = [], None

    async def drain(self, grace: float) -> None:
        """Shut down without losing or blaming work (SIGTERM): claim nothing more, give running reviews
        `grace` seconds to finish, then hand the rest back to the queue with `release()` — nobody crashed,
        so no attempt is charged — and stop."""
        self._draining = True
        self.wake()
        if self._pruner is not None:
            self._pruner.cancel()
        busy: set[asyncio.Task] = set()
        if self._tasks:
            _, busy = await asyncio.wait(self._tasks, timeout=grace)
        released = [job for job in list(self._reviewing.values()) if await self.queue.release(job.key)]
        if released:
            log.warning("handed %d review(s) still running after %g s (DRAIN_GRACE) back to the queue: %s",
                        len(released), grace, ", ".join(f"{j.repo}#{j.pr_number}" for j in released))
        if busy:
            await asyncio.wait(busy, timeout=UNWIND)
        await self.stop()

    async def _loop(self, step: Callable[[], Awaitable[bool]]) -> None:
        while not self._draining:
            try:
                busy = await step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("worker step failed")
                busy = False
            if busy:
                # A step may finish without awaiting anything (the SQLite queue answers synchronously):
                # yield, so a backlog of deliveries never keeps webhooks waiting for their ack.
                await asyncio.sleep(0)
            elif not self._draining:
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
        """Run the handlers of the oldest stored delivery; False if there was none (or the worker drains)."""
        if self._draining:
            return False
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
        """Claim and run one job; False if none was ready (or the worker drains)."""
        if self._draining:
            return False
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
        with log_context(delivery=job.delivery_id, installation=job.installation_id, repository=job.repo,
                         pr=job.pr_number, sha=job.head_sha):
            await self._run(job, gh, started)

    async def _run(self, job: Job, gh: Any, started: float) -> None:
        task = asyncio.create_task(self._timed(self.review(job, gh)), name=f"job-{job.id}")
        self._reviewing[job.key] = job
        try:
            stopped_as = await self._watch(job, task)
        finally:
            self._reviewing.pop(job.key, None)
        if stopped_as is None and task.exception() is None:
            stopped_as = await self.queue.state(job.key)
            if stopped_as is JobState.RUNNING:
                await self._record(job, task.result())
                await self._finish(job, JobState.DONE, None, started)
                return
        if stopped_as is not None:
            interrupted = task.cancelled() or task.exception() is not None
            await self._stopped(job, gh, stopped_as, started, interrupted=interrupted)
            return
        exc = task.exception()
        assert exc is not None  # neither stopped nor finished cleanly
        await self._failed(job, gh, exc, started)

    async def _record(self, job: Job, outcome: Any) -> None:
        """What the review concluded: its summary kept for the status page, its figures counted."""
        if not isinstance(outcome, Outcome):
            return
        try:
            await self.queue.record_result(job.key, outcome.summary())
        except ValueError:
            log.warning("job %s: its summary is too large to keep", job.id)
        self.metrics.observe_stages(outcome.stages)
        for (renderer, cached), n in outcome.renders.items():
            self.metrics.inc("infra_review_renders_total", n, renderer=renderer, cache="hit" if cached else "miss")
        for (rule, severity), n in outcome.by_rule.items():
            self.metrics.inc("infra_review_findings_total", n, rule=rule, severity=severity)

    async def _stopped(self, job: Job, gh: Any, state: JobState, started: float, *, interrupted: bool) -> None:
        """The job stopped running under its review. Back in the queue (claim lost, released by a drain)
        or claimed by another replica: that run completes the check run. Superseded or cancelled: `fail`
        completes it when the review was `interrupted` (and so did not complete it itself)."""
        if state in LIVE_STATES:
            why = "the worker drains" if self._draining else "claim lost"
            log.warning("job %s for %s#%s went back to the queue (%s); its next run finishes it",
                        job.id, job.repo, job.pr_number, why)
            return
        log.info("job %s for %s#%s stopped: %s", job.id, job.repo, job.pr_number, state.value)
        if interrupted:
            await self._fail(job, gh, JobCancelled(state))
        await self._finish(job, state, None, started)

    async def _failed(self, job: Job, gh: Any, exc: BaseException, started: float) -> None:
        """A review failure: retried after a backoff (unless the job stopped running meanwhile: then it
        is handled as stopped), or on the last allowed failure `fail`ed and given up as a dead letter.
        `fail` goes first, as for any outcome: a process that dies before recording it reruns the job
        rather than leave its check run in progress."""
        error = f"{type(exc).__name__}: {exc}"
        failures, allowed = job.failures + 1, self.ctx.settings.max_failures
        if failures < allowed:
            delay = retry_delay(failures, self.retry_base)
            if not await self.queue.retry(job.key, error, delay):
                await self._stopped(job, gh, await self.queue.state(job.key), started, interrupted=True)
                return
            log.warning("job %s for %s#%s failed (%s), %d of %d failures; retrying in %g s", job.id, job.repo,
                        job.pr_number, error, failures, allowed, delay)
            self.metrics.inc("infra_review_jobs_finished_total", outcome="retried")
            return
        log.error("job %s for %s#%s failed (%s), %d of %d failures: given up", job.id, job.repo, job.pr_number,
                  error, failures, allowed)
        await self._fail(job, gh, exc)
        await self.queue.dead_letter(job.key, error)
        self._observe(JobState.FAILED, started)

    async def _timed(self, review: Awaitable[Any]) -> Any:
        """The review (and what it returns) under the overall deadline: past it, the review is cancelled
        (which stops its rendering process) and fails with ReviewTimeout."""
        limit = self.ctx.settings.review_timeout
        try:
            async with asyncio.timeout(limit):
                return await review
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
        self._observe(state, started)

    def _observe(self, state: JobState, started: float) -> None:
        self.metrics.observe_review(time.monotonic() - started)
        self.metrics.inc("infra_review_jobs_finished_total", outcome=state.value)
