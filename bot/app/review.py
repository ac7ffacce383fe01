"""The App's review of one pull-request head: read it from GitHub, run the pipeline, publish.

One check run (`infra-review`, created in_progress at the start), then — only if the job's SHA is
still the PR's head — its completion, one review with the new inline comments, and the removal of
our comments whose finding is gone. `fail` completes the run whenever a review does not, so a
required check never waits forever.

A run is completed `neutral` (superseded, or the PR closed) only when GitHub confirms that the PR
moved to another head or closed: a neutral required check lets the PR merge. "Our comments" are
those GitHub says the App's bot user wrote, never whatever carries a fingerprint marker.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from gidgethub import GitHubException

from bot.config import Config, ConfigError, parse_config
from bot.deadline import Deadline
from bot.model import Finding
from bot.publish import escape
from bot.publish import github as payloads
from bot.publish.report import Report
from bot.queue.base import Job
from bot.review.anchors import DiffIndex, from_pr_files
from bot.review.progress import Progress
from rules import all_rules

from .isolated import in_process
from .outcome import Outcome
from .source import (
    CONFIG_PATH,
    ArchiveRejected,
    ExtractLimits,
    compare_pull,
    fetch_tree,
    read_repo_config,
)
from .worker import JobCancelled

log = logging.getLogger(__name__)

IsCurrent = Callable[[Job, Any], Awaitable[bool]]

_CHECK_RUNS = "/repos/{owner}/{repo}/check-runs"
_CHECK_RUN = "/repos/{owner}/{repo}/check-runs/{check_run_id}"
_RUNS_FOR_REF = "/repos/{owner}/{repo}/commits/{ref}/check-runs{?check_name,per_page}"
_PULL = "/repos/{owner}/{repo}/pulls/{pull_number}"
_REVIEW_COMMENTS = "/repos/{owner}/{repo}/pulls/{pull_number}/comments{?per_page}"
_REVIEWS = "/repos/{owner}/{repo}/pulls/{pull_number}/reviews"
_REVIEW_COMMENT = "/repos/{owner}/{repo}/pulls/comments/{comment_id}"
_ANNOTATIONS = "/repos/{owner}/{repo}/check-runs/{check_run_id}/annotations{?per_page}"


def _vars(job: Job, **extra: Any) -> dict[str, Any]:
    return {"owner": job.owner, "repo": job.name, **extra}


async def pull_head(job: Job, gh: Any) -> str | None:
    """The PR's head SHA now, None when it is closed (nothing to publish for a closed PR)."""
    pr = await gh.getitem(_PULL, _vars(job, pull_number=job.pr_number))
    return pr["head"]["sha"] if pr.get("state") == "open" else None


async def head_is_current(job: Job, gh: Any) -> bool:
    """Asks GitHub: a push whose webhook is not processed yet already makes this job stale."""
    return await pull_head(job, gh) == job.head_sha


async def stopped_body(job: Job, gh: Any) -> dict[str, Any]:
    """How to complete the run of a review that stopped early: superseded only when GitHub confirms it
    (see the module docstring); when it cannot tell, or the job's commit is still the head, failure."""
    try:
        head = await pull_head(job, gh)
    except GitHubException as exc:
        return error_body(job, exc)
    if head == job.head_sha:
        return interrupted_body(job)
    return superseded_body(job, head)


def superseded_body(job: Job, by: str | None) -> dict[str, Any]:
    """`neutral`, not `failure`: the run sits on a SHA that is no longer the head, so it gates nothing,
    and red on an old commit would only mislead; the newer head gets its own run."""
    why = f"superseded by {by}" if by else "the pull request was closed"
    body = payloads.check_run_error(job.pr_number, f"This review was not published: {why}. "
                                                   "Results are only ever posted for the pull request's head.")
    body["conclusion"] = "neutral"
    body["output"]["title"] = f"Superseded by {by[:7]}" if by else "Pull request closed"
    return body


def interrupted_body(job: Job) -> dict[str, Any]:
    return payloads.check_run_error(
        job.pr_number, f"The review of {job.head_sha[:7]} was stopped before it finished, and that commit is "
                       "still the pull request's head, so nothing supersedes it.\n\n"
                       "Comment `/recheck` on the pull request or press Re-check to review it.")


def app_login(check_run: Mapping[str, Any]) -> str | None:
    """The App's bot login (`<app-slug>[bot]`, the author GitHub gives whatever the App posts), read
    from a check run GitHub just let us update: only its own App may, so this names us."""
    slug = (check_run.get("app") or {}).get("slug")
    return f"{slug}[bot]" if slug else None


def config_error_body(job: Job, exc: ConfigError) -> dict[str, Any]:
    body = payloads.check_run_error(
        job.pr_number, f"`{CONFIG_PATH}` on the default branch is invalid: {escape.inline(str(exc))}.\n\n"
                       "Fix or remove that key; nothing was checked until then (see docs/rules.md).")
    body["output"]["title"] = escape.one_line(f"Invalid {CONFIG_PATH}: {str(exc)[:120]}")
    return body


def archive_error_body(job: Job, exc: ArchiveRejected) -> dict[str, Any]:
    """A tree that breaks the extraction limits: retrying cannot help, changing the tree can."""
    body = payloads.check_run_error(
        job.pr_number, f"The files of {job.head_sha[:7]} (or of its merge base) could not be read safely: "
                       f"{escape.inline(str(exc))}.\n\n"
                       "infra-review refuses an archive that breaks its limits (entries, sizes, paths the file "
                       "system cannot hold) rather than review part of it; a re-check gives the same answer "
                       "until the tree changes.")
    body["output"]["title"] = "Repository archive refused"
    return body


def error_body(job: Job, exc: BaseException) -> dict[str, Any]:
    detail = escape.inline(str(exc).strip()[:500] or "no detail")
    return payloads.check_run_error(
        job.pr_number, f"The review of {job.head_sha[:7]} stopped: {type(exc).__name__}: {detail}.\n\n"
                       "Comment `/recheck` on the pull request or press Re-check to try again.")


def spans_finder(findings: list[Finding], spans: dict[int, tuple[int, int]]) -> payloads.SpanOf:
    """`spans` by the finding's position in `findings`, asked by finding."""
    by_id = {id(f): spans[i] for i, f in enumerate(findings) if i in spans}

    def object_span(f: Finding) -> tuple[int, int] | None:
        return by_id.get(id(f))
    return object_span


class Reviewer:
    """Holds the check run ids of reviews in progress, so `fail` completes the run `review` opened."""

    def __init__(self, *, is_current: IsCurrent = head_is_current, limits: ExtractLimits | None = None,
                 comment_cap: int = 30) -> None:
        self.is_current = is_current
        self.limits = limits or ExtractLimits()
        self.comment_cap = comment_cap
        self._runs: dict[tuple[str, int, str], int] = {}
        self._completed: set[int] = set()
        self._reused: set[int] = set()  # runs an earlier run of the job opened: they may hold annotations

    # ---- check run bookkeeping

    def _key(self, job: Job) -> tuple[str, int, str]:
        return (job.repo, job.pr_number, job.head_sha)

    async def _open_run(self, job: Job, gh: Any, *, or_completed: bool = False) -> int | None:
        """Our not yet completed run for this job (a resumed job must not leave its first run hanging),
        else, `or_completed`, our newest completed one: an earlier run of this job that failed after
        completing it is completed again, not joined by a second run."""
        data = await gh.getitem(_RUNS_FOR_REF, _vars(job, ref=job.head_sha, check_name=payloads.CHECK_NAME,
                                                     per_page=100))
        ours = [run for run in data.get("check_runs") or [] if str(run.get("external_id") or "") == str(job.pr_number)]
        for run in ours:
            if run.get("status") != "completed":
                return int(run["id"])
        return max((int(run["id"]) for run in ours), default=None) if or_completed else None

    async def _start(self, job: Job, gh: Any) -> int:
        run_id = await self._open_run(job, gh, or_completed=True) if job.resumed else None
        if run_id is None:
            created = await gh.post(_CHECK_RUNS, _vars(job), data=payloads.check_run_create(job.head_sha, job.pr_number))
            run_id = int(created["id"])
        else:
            self._reused.add(run_id)
        self._runs[self._key(job)] = run_id
        return run_id

    async def _complete(self, job: Job, gh: Any, run_id: int, body: dict[str, Any]) -> dict[str, Any]:
        """The updated run, as GitHub returns it."""
        run = await gh.patch(_CHECK_RUN, _vars(job, check_run_id=run_id), data=body)
        if body.get("status") == "completed":
            self._completed.add(run_id)
        return run

    # ---- the review

    async def review(self, job: Job, gh: Any) -> Outcome:
        started = time.monotonic()
        run_id = await self._start(job, gh)
        run, report, progress = await self._review(job, gh, run_id)
        # Kept when the review raises or is cancelled: `fail` needs the run and whether it completed.
        self._runs.pop(self._key(job), None)
        self._completed.discard(run_id)
        self._reused.discard(run_id)
        found = [f for f in report.findings if not f.suppressed] if report else []
        return Outcome(str(run.get("conclusion") or ""), len(found), run.get("html_url"),
                       time.monotonic() - started, dict(progress.timings) if progress else {},
                       progress.renders if progress else Counter(), Counter((f.rule, f.severity) for f in found))

    async def _review(self, job: Job, gh: Any, run_id: int) -> tuple[dict[str, Any], Report | None, Progress | None]:
        """The review; returns the completed check run, and the report and its progress when it ran."""
        pr = await gh.getitem(_PULL, _vars(job, pull_number=job.pr_number))
        if pr["head"]["sha"] != job.head_sha or pr.get("state") != "open":
            by = pr["head"]["sha"] if pr.get("state") == "open" else None
            return await self._complete(job, gh, run_id, superseded_body(job, by)), None, None
        try:
            config = parse_config(await read_repo_config(gh, job.repo), all_rules())
        except ConfigError as exc:
            return await self._complete(job, gh, run_id, config_error_body(job, exc)), None, None
        base_sha, changed = await compare_pull(gh, job.repo, job.pr_number, pr["base"]["sha"], job.head_sha)
        diff = from_pr_files(asdict(f) for f in changed.files)
        tmp = Path(tempfile.mkdtemp(prefix="infra-review-job-"))
        try:
            head, base = tmp / "head", tmp / "base"
            try:
                await fetch_trees(gh, job.repo, ((job.head_sha, head), (base_sha, base)), self.limits)
            except ArchiveRejected as exc:
                return await self._complete(job, gh, run_id, archive_error_body(job, exc)), None, None
            report, spans, progress = await in_process(_check, head, base, config,
                                                       None if changed.everything else changed.paths)
        finally:
            # Off the event loop: removing two extracted trees takes long enough to delay webhook acks.
            await asyncio.shield(asyncio.to_thread(shutil.rmtree, tmp, True))
        report.head_sha = job.head_sha
        if not await self.is_current(job, gh):
            log.info("%s#%s: %s is no longer the head; results not published", job.repo, job.pr_number,
                     job.head_sha[:12])
            return await self._complete(job, gh, run_id, await stopped_body(job, gh)), None, progress
        return await self._publish(job, gh, run_id, report, diff, config, spans), report, progress

    async def _publish(self, job: Job, gh: Any, run_id: int, report: Report, diff: DiffIndex, config: Config,
                       spans: dict[int, tuple[int, int]]) -> dict[str, Any]:
        """Check run, review and stale comments; returns the completed check run."""
        run: dict[str, Any] = {}
        already = [a async for a in gh.getiter(_ANNOTATIONS, _vars(job, check_run_id=run_id, per_page=100))] \
            if run_id in self._reused else []
        for body in payloads.check_run_complete(report, job.pr_number, fail_on=config.fail_on, already=already):
            run = await self._complete(job, gh, run_id, body)
        author = app_login(run)
        existing = await self._comments(job, gh, author)
        review = payloads.review_payload(report, diff, payloads.open_fingerprints(existing, author),
                                         cap=self.comment_cap, mode=config.comments, object_span=spans_finder(report.findings, spans))
        if review is not None:
            await gh.post(_REVIEWS, _vars(job, pull_number=job.pr_number), data=review)
        current = {f.fingerprint for f in report.findings if not f.suppressed}
        for comment_id in payloads.stale_comments(existing, current, author):
            await gh.delete(_REVIEW_COMMENT, _vars(job, comment_id=comment_id))
        return run

    async def _comments(self, job: Job, gh: Any, author: str | None) -> list[dict[str, Any]]:
        """The PR's review comments; none when we cannot tell which are ours (then nothing is skipped
        as already said and nothing is deleted)."""
        if author is None:
            log.warning("%s#%s: GitHub did not name the App of our check run; existing comments are ignored",
                        job.repo, job.pr_number)
            return []
        return [c async for c in gh.getiter(_REVIEW_COMMENTS, _vars(job, pull_number=job.pr_number, per_page=100))]

    # ---- when a review does not finish

    async def fail(self, job: Job, gh: Any, exc: BaseException) -> None:
        """Complete the job's run with an explanation. A run already completed (results posted, then
        the review or a deletion failed) is left as it is: its conclusion is right."""
        run_id = self._runs.pop(self._key(job), None)
        self._reused.discard(run_id or 0)
        if run_id in self._completed:
            self._completed.discard(run_id)
            return
        if run_id is None:
            run_id = await self._open_run(job, gh)
        if isinstance(exc, JobCancelled):
            if run_id is not None:
                await self._complete(job, gh, run_id, await stopped_body(job, gh))
            self._completed.discard(run_id)
            return
        body = error_body(job, exc)
        if run_id is None:
            await gh.post(_CHECK_RUNS, _vars(job), data={**body, "head_sha": job.head_sha})
        else:
            await self._complete(job, gh, run_id, body)
            self._completed.discard(run_id)


async def fetch_trees(gh: Any, repo: str, trees: Iterable[tuple[str, Path]], limits: ExtractLimits) -> None:
    """Both sides at once. A task group, not gather: when the review is cancelled it waits until every
    extraction has stopped, so the job's temporary directory is never removed under one."""
    try:
        async with asyncio.TaskGroup() as group:
            for ref, dest in trees:
                group.create_task(fetch_tree(gh, repo, ref, dest, limits))
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None


def _check(head: Path, base: Path, config: Config, changed: frozenset[str] | None,
           deadline: Deadline) -> tuple[Report, dict[int, tuple[int, int]], Progress]:
    """Blocking part of a review (rendering, rules, spans), run in a child process (bot.app.isolated).
    Spans are keyed by position in the report's findings: ids do not survive the trip back."""
    from bot.review.pipeline import run_check
    from bot.review.spans import object_spans

    progress = Progress()
    report = run_check(head, base, config, changed=changed, affected_only=changed is not None, deadline=deadline,
                       diff=True, progress=progress)
    spans = object_spans(head, [f for f in report.findings if f.new])
    index = {id(f): i for i, f in enumerate(report.findings)}
    return report, {index[key]: span for key, span in spans.items() if key in index}, progress


_DEFAULT = Reviewer()


async def review(job: Job, gh: Any) -> Outcome:
    """The worker's `review(job, gh)`."""
    return await _DEFAULT.review(job, gh)


async def fail(job: Job, gh: Any, exc: BaseException) -> None:
    """The worker's `fail(job, gh, exc)`."""
    await _DEFAULT.fail(job, gh, exc)
