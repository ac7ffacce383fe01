"""pull_request: review new heads, cancel work when the PR closes.

Deliveries can arrive late or be replayed (redelivery), so where a payload disagrees with the queue
the PR's state as GitHub reports it now decides.
"""

from __future__ import annotations

import logging

from gidgethub.abc import GitHubAPI
from gidgethub.routing import Router
from gidgethub.sansio import Event

from ..context import AppContext
from .common import enqueue_pr, fetch_pr, pr_repo

log = logging.getLogger(__name__)
router = Router()
REVIEW_ACTIONS = ("opened", "reopened", "synchronize", "ready_for_review")


async def review_head(event: Event, gh: GitHubAPI | None, *, ctx: AppContext) -> None:
    await enqueue_pr(event, ctx, event.data["pull_request"], f"pull_request.{event.data['action']}", gh)


for _action in REVIEW_ACTIONS:
    router.add(review_head, "pull_request", action=_action)


@router.register("pull_request", action="closed")
async def cancel_pending(event: Event, gh: GitHubAPI | None, *, ctx: AppContext) -> None:
    """Cancel live work unless GitHub says the PR is open: a replayed `closed` of a reopened PR would
    otherwise stop the review of its head."""
    repo, number = pr_repo(event, event.data["pull_request"]), int(event.data["pull_request"]["number"])
    if not await ctx.queue.live_jobs(repo, number):
        return
    if gh is not None and (await fetch_pr(gh, repo, number)).get("state") == "open":
        log.info("%s: %s#%s is open again; its work is not cancelled", event.delivery_id, repo, number)
        return
    await ctx.queue.cancel_pr(repo, number)
