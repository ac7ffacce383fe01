"""pull_request: review new heads, cancel work when the PR closes."""

from __future__ import annotations

from gidgethub.routing import Router
from gidgethub.sansio import Event

from ..context import AppContext
from .common import enqueue_pr, repo_name

router = Router()
REVIEW_ACTIONS = ("opened", "reopened", "synchronize", "ready_for_review")


async def review_head(event: Event, gh: object, *, ctx: AppContext) -> None:
    await enqueue_pr(event, ctx, event.data["pull_request"], f"pull_request.{event.data['action']}")


for _action in REVIEW_ACTIONS:
    router.add(review_head, "pull_request", action=_action)


@router.register("pull_request", action="closed")
async def cancel_pending(event: Event, gh: object, *, ctx: AppContext) -> None:
    await ctx.queue.cancel_pr(repo_name(event), int(event.data["pull_request"]["number"]))
