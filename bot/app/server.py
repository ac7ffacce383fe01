"""The aiohttp application: webhook intake, health, readiness, metrics, the operators' status page,
and — while the App has no credentials — the first-run setup page; the worker runs alongside.

Without credentials (setup mode) the service refuses webhooks (a signature checked against an empty
secret proves nothing) and serves the App-manifest flow at `/` (bot.app.setup); once GitHub hands the
credentials over they are stored and taken into use in place, and the setup routes answer 404 from
then on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from html import escape
from pathlib import Path
from typing import Any

from aiohttp import web
from gidgethub.routing import Router

from .. import __version__
from ..queue.base import Delivery, Queue
from . import pages, setup
from .auth import TokenCache
from .client import DEFAULT_POLICY, GitHubApp, RetryPolicy, Sleep
from .context import AppContext
from .handlers import EVENTS, build_router
from .logs import Scrubber
from .manifest import app_manifest
from .metrics import CONTENT_TYPE, Metrics, bounded
from .settings import Settings, check_private_key
from .webhooks import WebhookRejected, body_text, check_fields, check_size, for_another_app, parse_event
from .worker import FailFn, ReviewFn, Worker

log = logging.getLogger(__name__)

CTX = web.AppKey("ctx", AppContext)
WORKER = web.AppKey("worker", Worker)
GITHUB = web.AppKey("github", GitHubApp)
PENDING = web.AppKey("pending", dict)  # state -> Registration, while in setup mode
VERSIONS = web.AppKey("versions", dict)
MAX_PENDING = 20
NOT_SET_UP = "infra-review is not set up yet: open its / page to register the GitHub App"
HTML = "text/html"
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
                    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action *"}


def create_app(settings: Settings, *, queue: Queue, review: ReviewFn, fail: FailFn,
               github_factory: Callable[[int], Any] | None = None, router: Router | None = None,
               sleep: Sleep = asyncio.sleep, policy: RetryPolicy = DEFAULT_POLICY,
               poll: float = 1.0, watch_interval: float = 0.5, prune_interval: float = 3600.0) -> web.Application:
    """`github_factory(installation_id)` defaults to a GitHubApp on settings.api_url with one session."""
    app = web.Application(client_max_size=settings.max_body_bytes)
    metrics = Metrics()
    github = GitHubApp(app_id=settings.app_id or 0, private_key=settings.private_key, base_url=settings.api_url,
                       sleep=sleep, mutation_interval=settings.mutation_interval, policy=policy,
                       metrics=metrics)
    ctx = AppContext(queue=queue, settings=settings, tokens=github.tokens, metrics=metrics)
    router = router or build_router()
    worker = Worker(queue, github_factory or github, review=review, fail=fail, router=router, ctx=ctx,
                    concurrency=settings.workers, poll=poll, watch_interval=watch_interval,
                    prune_interval=prune_interval)
    ctx.wake = worker.wake
    app[CTX], app[WORKER], app[GITHUB] = ctx, worker, github
    app[PENDING], app[VERSIONS] = {}, {}

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await queue.open()
        if ctx.settings.configured:
            await worker.start()
        yield
        await worker.drain(ctx.settings.drain_grace)
        await github.close()
        await queue.close()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_post("/webhook", _webhook(router))
    app.router.add_get("/health", _health)
    app.router.add_get("/ready", _ready)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/", _home)
    app.router.add_get("/setup/callback", _setup_callback)
    return app


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type=HTML, headers=SECURITY_HEADERS)


async def _home(request: web.Request) -> web.Response:
    """Setup mode: the setup page. Configured: the status page (unless STATUS_PAGE is off)."""
    ctx = request.app[CTX]
    if not ctx.settings.configured:
        return _setup_page(request)
    if not ctx.settings.status_page:
        raise web.HTTPNotFound()
    return _html(pages.status_page(await _status(request.app)))


def _setup_page(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    public = ctx.settings.public_url or f"{request.scheme}://{request.host}"
    org = request.query.get("org") or None
    if org is not None and not org.replace("-", "").isalnum():
        raise web.HTTPBadRequest(text="an organisation name is letters, digits and hyphens")
    registration = setup.Registration.start()
    pending = request.app[PENDING]
    pending[registration.state] = registration
    while len(pending) > MAX_PENDING:
        pending.pop(next(iter(pending)))
    action = setup.form_action(ctx.settings.api_url, registration.state, org)
    return _html(pages.setup_page(action, app_manifest(public), org))


async def _setup_callback(request: web.Request) -> web.Response:
    """GitHub's redirect after the App was created: exchange the code, store the credentials, use them."""
    app = request.app
    ctx = app[CTX]
    if ctx.settings.configured:
        raise web.HTTPNotFound()
    state = request.query.get("state")
    if app[PENDING].pop(state or "", None) is None:
        return _html(pages.page("Setup", "<h1>This link is not from this setup page</h1><p>Start again from "
                                         "<a href='/'>the setup page</a>.</p>"), status=400)
    try:
        created = await setup.convert(app[GITHUB].session, ctx.settings.api_url, request.query.get("code", ""))
    except setup.SetupFailed as exc:
        return _html(pages.page("Setup failed", f"<h1>Setup failed</h1><p>{escape(str(exc))}</p>"), status=502)
    if ctx.settings.configured:  # another tab's registration finished while this one was exchanged
        return _html(pages.refused_page(), status=409)
    values = setup.credentials(created)
    stored, shown = ctx.settings.env_file, None
    try:
        setup.write_env_file(Path(stored), values)
    except OSError as exc:
        log.warning("the credentials could not be written to %s (%s); shown once on the page instead",
                    stored, exc.strerror or type(exc).__name__)
        shown = setup.secret_manifest(values)
    await configure(app, dataclasses.replace(ctx.settings, app_id=int(created["id"]), private_key=created["pem"],
                                             webhook_secret=created["webhook_secret"], app_slug=created["slug"]))
    log.info("the GitHub App %s (id %s) is registered; reviewing from now on", created["slug"], created["id"])
    return _html(pages.registered_page(created["slug"], created["html_url"], stored, shown))


async def configure(app: web.Application, settings: Settings) -> None:
    """Take new App credentials into use without a restart: the GitHub client signs with them, the
    webhook checks against the new secret, and the worker starts."""
    check_private_key(settings.private_key)
    app[GITHUB].use_credentials(int(settings.app_id or 0), settings.private_key)
    app[CTX].settings = settings
    await app[WORKER].start()


async def _versions(app: web.Application) -> dict[str, str]:
    """The renderers' versions, found once (finding Helm's engine loads its library)."""
    if not app[VERSIONS]:
        from ..render.helm import HelmMissing, find_helm
        from ..render.kustomize import RendererMissing, find_kustomize

        def find() -> dict[str, str]:
            try:
                kustomize = find_kustomize().version
            except RendererMissing:
                kustomize = "not found"
            try:
                helm = find_helm().version
            except HelmMissing:
                helm = "not found"
            return {"kustomize": kustomize, "helm": helm}

        app[VERSIONS].update(await asyncio.to_thread(find))
    return app[VERSIONS]


async def _status(app: web.Application) -> pages.Status:
    """What the status page shows; errors pass the log scrubber (an exception's text may quote a token)."""
    ctx = app[CTX]
    scrub = Scrubber((ctx.settings.webhook_secret, ctx.settings.private_key))
    stats, versions = await ctx.queue.stats(), await _versions(app)
    dead = [{**d.as_dict(), "error": scrub(d.error)} for d in await ctx.queue.dead_letters(50)]
    return pages.Status(__version__, versions["kustomize"], versions["helm"], stats.queued, stats.running,
                        stats.oldest_age, stats.dead_letters, [r.as_dict() for r in await ctx.queue.recent(50)], dead)


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
        if not ctx.settings.configured:
            ctx.metrics.inc("infra_review_webhook_deliveries_total", event=label, outcome="not_set_up")
            return web.json_response({"error": NOT_SET_UP}, status=503)
        try:
            if request.headers.get("content-encoding", "identity").strip().lower() != "identity":
                # GitHub signs and sends the raw JSON; aiohttp would inflate an encoded body before
                # the signature is checked, so the bytes verified would not be the bytes sent.
                raise WebhookRejected(415, "webhook bodies are not content-encoded")
            body = await read_body(request, ctx.settings.max_body_bytes)
            event = parse_event(request.headers, body, secret=ctx.settings.webhook_secret,
                                max_bytes=ctx.settings.max_body_bytes)
            routed = bool(router.fetch(event)) and not for_another_app(event, ctx.settings.app_id)
            if routed:
                check_fields(event)
        except WebhookRejected as exc:
            ctx.metrics.inc("infra_review_webhook_deliveries_total", event=label, outcome=f"rejected_{exc.status}")
            log.warning("webhook rejected (%d): %s", exc.status, exc.reason)
            return web.json_response({"error": exc.reason}, status=exc.status)
        if not routed:
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
    if not ctx.settings.configured:
        return web.json_response({"status": "not ready", "problems": [NOT_SET_UP]}, status=503)
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
    stats = await ctx.queue.stats()
    ctx.metrics.set_queue(await ctx.queue.counts(), stats.oldest_age, stats.dead_letters, stats.deliveries_pending)
    return web.Response(body=ctx.metrics.render().encode(), headers={"Content-Type": CONTENT_TYPE,
                                                                     "X-Content-Type-Options": "nosniff"})


def token_cache(app: web.Application) -> TokenCache:
    return app[CTX].tokens
