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


async def enqueue_pr(event: Event, ctx: AppContext, pr: dict[str, Any], reason: str) -> Job | None:
    """Queue a review of `pr`'s current head unless it is closed or a skipped draft."""
    inst = installation_id(event)
    if inst is None:
        log.info("%s: no installation in the payload; ignored", event.delivery_id)
        return None
    skip = reviewable(pr, ctx)
    if skip:
        log.info("%s: PR #%s is %s; not reviewed", event.delivery_id, pr["number"], skip)
        return None
    job = await ctx.queue.enqueue(Job(
        installation_id=inst, repo=pr["base"]["repo"]["full_name"] if pr.get("base", {}).get("repo")
        else repo_name(event), pr_number=int(pr["number"]), head_sha=pr["head"]["sha"], reason=reason,
        delivery_id=event.delivery_id))
    ctx.wake()
    log.info("%s: queued job %s for %s#%s at %s (%s)", event.delivery_id, job.id, job.repo, job.pr_number,
             job.head_sha[:12], reason)
    return job


async def enqueue_pr_number(event: Event, gh: GitHubAPI, ctx: AppContext, number: int, reason: str) -> Job | None:
    """Fetch the PR (its head may have moved since the event) and queue its current head."""
    pr = await gh.getitem("/repos/{owner}/{repo}/pulls/{pull_number}",
                          {**owner_repo(repo_name(event)), "pull_number": number})
    return await enqueue_pr(event, ctx, pr, reason)
