"""`python -m bot serve` and `python -m bot worker` (wired to the real review by bot.cli): settings from
the environment, then the aiohttp app with its worker, or the worker alone.

One process can do everything (`serve`), or webhooks and reviews can run apart (`serve --no-worker`
beside `worker`). With the default SQLite queue keep one process that runs workers per store, on its
host; more workers, on other hosts, need QUEUE_URL=redis://….
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from dataclasses import replace

from aiohttp import web

from ..queue import open_queue
from .logs import configure_logging
from .server import WORKER, create_app
from .settings import Settings, SettingsError, load_settings
from .worker import FailFn, ReviewFn

log = logging.getLogger(__name__)


def serve(host: str = "0.0.0.0", port: int | None = None, *, review: ReviewFn, fail: FailFn,
          with_worker: bool = True, public_url: str | None = None) -> int:
    """Run until interrupted; `port` overrides PORT. Without the worker (or with WORKERS=0) the process
    only accepts webhooks, for an `infra-review worker` to handle. Returns a process exit code."""
    settings = _settings(allow_setup=True)
    if settings is None:
        return 2
    if not with_worker:
        settings = replace(settings, workers=0)
    if public_url:
        settings = replace(settings, public_url=public_url.rstrip("/"))
    _log(settings)
    app = create_app(settings, queue=open_queue(settings.queue_url), review=review, fail=fail)
    web.run_app(app, host=host, port=port or settings.port, print=None)
    return 0


def work(*, review: ReviewFn, fail: FailFn) -> int:
    """Run the worker alone (stored deliveries, reviews, pruning) until SIGTERM or SIGINT, then drain:
    running reviews get DRAIN_GRACE seconds, the rest go back to the queue. Returns a process exit code."""
    settings = _settings()
    if settings is None:
        return 2
    if settings.workers == 0:
        _refuse(SettingsError("WORKERS is 0, so this worker would run nothing: set WORKERS to 1 or more"))
        return 2
    _log(settings)
    app = create_app(settings, queue=open_queue(settings.queue_url), review=review, fail=fail)
    asyncio.run(_work(app, settings.drain_grace))
    return 0


async def _work(app: web.Application, grace: float) -> None:
    """The app's lifecycle (queue, recovery, worker) without a listening socket, until a signal."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    try:
        log.info("worker running; SIGTERM drains it (DRAIN_GRACE %g s)", grace)
        await stop.wait()
        log.info("draining: no new work is started; running reviews get %g s", grace)
        await app[WORKER].drain(grace)
    finally:
        await runner.cleanup()


def _settings(*, allow_setup: bool = False) -> Settings | None:
    try:
        return load_settings(allow_setup=allow_setup)
    except SettingsError as exc:
        _refuse(exc)
        return None


def _refuse(exc: SettingsError) -> None:
    print("infra-review: configuration error" + ("s:" if len(exc.problems) > 1 else ":"), file=sys.stderr)
    for problem in exc.problems:
        print(f"  - {problem}", file=sys.stderr)


def _log(settings: Settings) -> None:
    configure_logging(settings.log_level, settings.log_format,
                      secrets=(settings.webhook_secret, settings.private_key))
