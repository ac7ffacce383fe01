"""Turning "review this PR" into a queued job, shared by every handler that asks for one."""

from __future__ import annotations

import logging
from typing import Any

from gidgethub.abc import GitHubAPI
from gidgethub.sansio import Event

from ...queue.base import Job
from ..context import AppContext
from ..webhooks import installation_id

log = logging.getLogger(__name__)


def repo_name(event: Event) -> str:
    return event.data["repository"]["full_name"]


def owner_repo(full_name: str) -> dict[str, str]:
    owner, repo = full_name.split("/", 1)
    return {"owner": owner, "repo": repo}


def reviewable(pr: dict[str, Any], ctx: AppContext) -> str | None:
    """Why a PR is not reviewed now, or None if it is."""
    if pr.get("state") != "open":
        return "closed"
    if pr.get("draft") and not ctx.settings.review_drafts:
        return "draft"
    return None


def pr_repo(event: Event, pr: dict[str, Any]) -> str:
    base = pr.get("base") or {}
    return base["repo"]["full_name"] if base.get("repo") else repo_name(event)


async def fetch_pr(gh: GitHubAPI, repo: str, number: int) -> dict[str, Any]:
    """The PR as GitHub has it now: the authority on its head and state, which events may lag."""
    return await gh.getitem("/repos/{owner}/{repo}/pulls/{pull_number}", {**owner_repo(repo), "pull_number": number})


async def current_pr(gh: GitHubAPI, ctx: AppContext, repo: str, pr: dict[str, Any]) -> dict[str, Any] | None:
    """`pr` from a payload, checked against GitHub when its head differs from queued or running work:
    a late or replayed event must not displace the current head with an older commit. None when the
    head GitHub reports already has live work."""
    number, named = int(pr["number"]), pr["head"]["sha"]
    live = await ctx.queue.live_jobs(repo, number)
    if all(job.head_sha == named for job in live):
        return pr
    pr = await fetch_pr(gh, repo, number)
    if any(job.head_sha == pr["head"]["sha"] for job in live):
        log.info("%s#%s: the event names %s, but the head's review is already queued or running",
                 repo, number, named[:12])
        return None
    return pr


async def enqueue_pr(event: Event, ctx: AppContext, pr: dict[str, Any], reason: str,
                     gh: GitHubAPI | None = None) -> Job | None:
    """Queue a review of `pr`'s current head unless it is closed or a skipped draft. With `gh`, `pr` is
    a payload's copy and is checked against GitHub first (see current_pr)."""
    inst = installation_id(event)
    if inst is None:
        log.info("%s: no installation in the payload; ignored", event.delivery_id)
        return None
    repo = pr_repo(event, pr)
    checked = await current_pr(gh, ctx, repo, pr) if gh is not None else pr
    if checked is None:
        return None
    pr = checked
    skip = reviewable(pr, ctx)
    if skip:
        log.info("%s: PR #%s is %s; not reviewed", event.delivery_id, pr["number"], skip)
        return None
    job = await ctx.queue.enqueue(Job(installation_id=inst, repo=repo, pr_number=int(pr["number"]),
                                      head_sha=pr["head"]["sha"], reason=reason, delivery_id=event.delivery_id))
    ctx.wake()
    log.info("%s: queued job %s for %s#%s at %s (%s)", event.delivery_id, job.id, job.repo, job.pr_number,
             job.head_sha[:12], reason)
    return job


async def enqueue_pr_number(event: Event, gh: GitHubAPI, ctx: AppContext, number: int, reason: str) -> Job | None:
    """Fetch the PR (its head may have moved since the event) and queue its current head."""
    return await enqueue_pr(event, ctx, await fetch_pr(gh, repo_name(event), number), reason)
