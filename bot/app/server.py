"""The aiohttp application: webhook intake, health, readiness, metrics; the worker runs alongside."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web
from gidgethub.routing import Router

from ..queue.base import Delivery, Queue
from .auth import TokenCache
from .client import DEFAULT_POLICY, GitHubApp, RetryPolicy, Sleep
from .context import AppContext
from .handlers import EVENTS, build_router
from .metrics import Metrics, bounded
from .settings import Settings, check_private_key
from .webhooks import WebhookRejected, body_text, check_size, parse_event
from .worker import FailFn, ReviewFn, Worker

log = logging.getLogger(__name__)

CTX = web.AppKey("ctx", AppContext)
WORKER = web.AppKey("worker", Worker)
GITHUB = web.AppKey("github", GitHubApp)


def create_app(settings: Settings, *, queue: Queue, review: ReviewFn, fail: FailFn,
               github_factory: Callable[[int], Any] | None = None, router: Router | None = None,
               sleep: Sleep = asyncio.sleep, policy: RetryPolicy = DEFAULT_POLICY,
               poll: float = 1.0, watch_interval: float = 0.5, prune_interval: float = 3600.0) -> web.Application:
    """`github_factory(installation_id)` defaults to a GitHubApp on settings.api_url with one session."""
    app = web.Application(client_max_size=settings.max_body_bytes)
    metrics = Metrics()
    github = GitHubApp(app_id=settings.app_id, private_key=settings.private_key, base_url=settings.api_url,
                       sleep=sleep, mutation_interval=settings.mutation_interval, policy=policy,
                       metrics=metrics)
    ctx = AppContext(queue=queue, settings=settings, tokens=github.tokens, metrics=metrics)
    router = router or build_router()
    worker = Worker(queue, github_factory or github, review=review, fail=fail, router=router, ctx=ctx,
                    concurrency=settings.workers, poll=poll, watch_interval=watch_interval,
                    prune_interval=prune_interval)
    ctx.wake = worker.wake
    app[CTX], app[WORKER], app[GITHUB] = ctx, worker, github

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await queue.open()
        resumed = await queue.recover()
        if resumed:
            log.info("resuming %d unfinished job(s)", resumed)
        await worker.start()
        yield
        await worker.stop()
        await github.close()
        await queue.close()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_post("/webhook", _webhook(router))
    app.router.add_get("/health", _health)
    app.router.add_get("/ready", _ready)
    app.router.add_get("/metrics", _metrics)
    return app


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    """The whole body, however the network split it and with or without Content-Length (chunked);
    413 as soon as it passes `max_bytes`, so an endless chunked body is not buffered."""
    check_size(request.content_length, max_bytes)
    body = bytearray()
    async for chunk in request.content.iter_any():
        body += chunk
        if len(body) > max_bytes:
            raise WebhookRejected(413, "payload too large")
    return bytes(body)


def _webhook(router: Router) -> Callable[[web.Request], Any]:
    async def handle(request: web.Request) -> web.Response:
        ctx = request.app[CTX]
        # The header is unauthenticated until the signature is checked: only known names become labels.
        label = bounded(request.headers.get("x-github-event"), EVENTS)
        try:
            body = await read_body(request, ctx.settings.max_body_bytes)
            event = parse_event(request.headers, body, secret=ctx.settings.webhook_secret,
                                max_bytes=ctx.settings.max_body_bytes)
        except WebhookRejected as exc:
            ctx.metrics.inc("infra_review_webhook_deliveries_total", event=label, outcome=f"rejected_{exc.status}")
            log.warning("webhook rejected (%d): %s", exc.status, exc.reason)
            return web.json_response({"error": exc.reason}, status=exc.status)
        if not router.fetch(event):
            ctx.metrics.inc("infra_review_webhook_deliveries_total", event=label, outcome="ignored")
            return web.json_response({"status": "ignored"})
        new = await ctx.queue.add_delivery(Delivery(event.delivery_id, event.event, body_text(body)))
        outcome = "queued" if new else "duplicate"
        ctx.metrics.inc("infra_review_webhook_deliveries_total", event=label, outcome=outcome)
        if new:
            ctx.wake()
        return web.json_response({"status": outcome}, status=202 if new else 200)

    return handle


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _ready(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    problems = []
    try:
        await ctx.queue.ping()
    except Exception as exc:
        problems.append(f"queue: {type(exc).__name__}")
    try:
        check_private_key(ctx.settings.private_key)
        await request.app[GITHUB].ping()
    except Exception as exc:
        problems.append(f"private key: {type(exc).__name__}")
    if problems:
        return web.json_response({"status": "not ready", "problems": problems}, status=503)
    return web.json_response({"status": "ready"})


async def _metrics(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    counts = await ctx.queue.counts()
    gauges = {"infra_review_jobs": {(("state", state),): n for state, n in counts.items()}}
    return web.Response(text=ctx.metrics.render(gauges), content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})


def token_cache(app: web.Application) -> TokenCache:
    return app[CTX].tokens
