"""check_run re-run / Re-check button and check_suite requests: review the PRs of that head SHA."""

from __future__ import annotations

from typing import Any

from gidgethub.abc import GitHubAPI
from gidgethub.routing import Router
from gidgethub.sansio import Event

from ..context import AppContext
from .common import enqueue_pr_number, owner_repo, repo_name

router = Router()


async def prs_of_head(gh: GitHubAPI, repo: str, head_sha: str, listed: list[dict[str, Any]]) -> list[int]:
    """PR numbers from the payload; for fork PRs (empty list) ask the commit-to-PR endpoint."""
    numbers = [int(pr["number"]) for pr in listed]
    if numbers:
        return numbers
    found = []
    async for pr in gh.getiter("/repos/{owner}/{repo}/commits/{commit_sha}/pulls",
                               {**owner_repo(repo), "commit_sha": head_sha}):
        if pr.get("state") == "open" and pr.get("head", {}).get("sha") == head_sha:
            found.append(int(pr["number"]))
    return found


async def _review_all(event: Event, gh: GitHubAPI, ctx: AppContext, numbers: list[int], reason: str) -> None:
    for number in dict.fromkeys(numbers):
        await enqueue_pr_number(event, gh, ctx, number, reason)


async def check_run_again(event: Event, gh: GitHubAPI | None, *, ctx: AppContext) -> None:
    if gh is None:
        return
    run = event.data["check_run"]
    external = str(run.get("external_id") or "")
    if external.isdigit():
        numbers = [int(external)]
    else:
        numbers = await prs_of_head(gh, repo_name(event), run["head_sha"], run.get("pull_requests") or [])
    await _review_all(event, gh, ctx, numbers, f"check_run.{event.data['action']}")


async def check_suite_again(event: Event, gh: GitHubAPI | None, *, ctx: AppContext) -> None:
    if gh is None:
        return
    suite = event.data["check_suite"]
    numbers = await prs_of_head(gh, repo_name(event), suite["head_sha"], suite.get("pull_requests") or [])
    await _review_all(event, gh, ctx, numbers, f"check_suite.{event.data['action']}")


for _action in ("rerequested", "requested_action"):
    router.add(check_run_again, "check_run", action=_action)
for _action in ("requested", "rerequested"):
    router.add(check_suite_again, "check_suite", action=_action)
