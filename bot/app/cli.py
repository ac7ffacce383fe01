"""`python -m bot serve`: settings from the environment, then the aiohttp app (wired by bot.__main__)."""

from __future__ import annotations

import logging
import sys

from aiohttp import web

from ..queue import open_queue
from .server import create_app
from .settings import SettingsError, load_settings
from .worker import FailFn, ReviewFn


def serve(host: str = "0.0.0.0", port: int | None = None, *, review: ReviewFn, fail: FailFn) -> int:
    """Run until interrupted; `port` overrides PORT. Returns a process exit code."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"infra-review: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings, queue=open_queue(settings.queue_url), review=review, fail=fail)
    web.run_app(app, host=host, port=port or settings.port, print=None)
    return 0
