"""installation events: drop cached tokens whose scope or validity just changed."""

from __future__ import annotations

import logging

from gidgethub.routing import Router
from gidgethub.sansio import Event

from ..context import AppContext
from ..webhooks import installation_id

log = logging.getLogger(__name__)
router = Router()


@router.register("installation")
@router.register("installation_repositories")
async def forget_token(event: Event, gh: object, *, ctx: AppContext) -> None:
    inst = installation_id(event)
    if inst is not None:
        ctx.tokens.invalidate(inst)
        log.info("installation %s %s.%s: token cache cleared", inst, event.event, event.data.get("action"))
