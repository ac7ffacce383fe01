"""issue_comment: `/recheck` from someone allowed to ask, answered with 👀 and a new review."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

from gidgethub import BadRequest
from gidgethub.abc import GitHubAPI
from gidgethub.routing import Router
from gidgethub.sansio import Event

from ..context import AppContext
from .common import enqueue_pr_number, owner_repo, repo_name

log = logging.getLogger(__name__)
router = Router()
RECHECK_LINE = re.compile(r"^(?:@(?P<mention>[\w.-]+(?:\[bot\])?)\s+)?/recheck$", re.IGNORECASE)
WRITE_ROLES = frozenset({"admin", "maintain", "write"})


FENCE = re.compile(r" {0,3}(?P<fence>`{3,}|~{3,})")


def prose_lines(body: str) -> Iterator[str]:
    """The lines of a markdown comment outside code: fenced blocks (``` or ~~~) and indented code (four
    spaces or a tab) show text, they do not say it."""
    fence = ""
    for line in body.splitlines():
        opened = FENCE.match(line)
        if fence:
            if opened and opened["fence"][0] == fence[0] and len(opened["fence"]) >= len(fence) \
                    and not line[opened.end():].strip():
                fence = ""
        elif opened and not (opened["fence"][0] == "`" and "`" in line[opened.end():]):
            fence = opened["fence"]
        elif len(line.expandtabs(4)) - len(line.expandtabs(4).lstrip(" ")) < 4:
            yield line


def asks_recheck(body: str | None, app_slug: str | None) -> bool:
    """True if a line outside code is exactly `/recheck`, or `@<app-slug> /recheck` (any mention if the
    slug is unknown)."""
    for line in prose_lines(body or ""):
        match = RECHECK_LINE.match(line.strip())
        if not match:
            continue
        mention = match.group("mention")
        if mention is None or app_slug is None or mention.lower().removesuffix("[bot]") == app_slug.lower():
            return True
    return False


def is_bot(user: dict[str, Any]) -> bool:
    return user.get("type") == "Bot" or str(user.get("login", "")).endswith("[bot]")


async def may_recheck(gh: GitHubAPI, repo: str, login: str, pr_author: str) -> bool:
    """The PR author, or a collaborator with write, maintain or admin permission."""
    if login == pr_author:
        return True
    try:
        data = await gh.getitem("/repos/{owner}/{repo}/collaborators/{username}/permission",
                                {**owner_repo(repo), "username": login})
    except BadRequest as exc:
        if exc.status_code == 404:
            return False
        raise
    role = data.get("role_name") or data.get("permission")
    return role in WRITE_ROLES or data.get("permission") in ("admin", "write")


@router.register("issue_comment", action="created")
async def recheck(event: Event, gh: GitHubAPI | None, *, ctx: AppContext) -> None:
    issue, comment = event.data["issue"], event.data["comment"]
    if "pull_request" not in issue or gh is None:
        return
    if is_bot(comment["user"]) or is_bot(event.data["sender"]) or comment.get("performed_via_github_app"):
        return
    if not asks_recheck(comment.get("body"), ctx.settings.app_slug):
        return
    repo, login = repo_name(event), comment["user"]["login"]
    if not await may_recheck(gh, repo, login, issue["user"]["login"]):
        log.info("%s: %s may not /recheck %s#%s", event.delivery_id, login, repo, issue["number"])
        return
    await gh.post("/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions",
                  {**owner_repo(repo), "comment_id": comment["id"]}, data={"content": "eyes"})
    await enqueue_pr_number(event, gh, ctx, int(issue["number"]), "issue_comment./recheck")
