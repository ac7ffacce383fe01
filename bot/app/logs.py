"""The service's logs: one JSON object per line (`LOG_FORMAT=json`, the container's default; readable
text on a terminal), every line of a review carrying its delivery, installation, repository, pull
request and head SHA, and nothing secret.

The review's identity travels in a context variable (`log_context`), so code deep in the pipeline logs
plainly and still says which review it belongs to; asyncio copies the context into each task and
`asyncio.to_thread` into the rendering thread. Tokens, private keys and the App's own secrets are
scrubbed from every message and traceback before it is written.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

FIELDS = ("delivery", "installation", "repository", "pr", "sha")
_CONTEXT: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("infra_review_log", default=None)
REDACTED = "[redacted]"
# GitHub tokens (installation, user, OAuth, refresh, fine-grained), JWTs, PEM private keys, and the
# credential of an Authorization header.
_SECRETS = re.compile(
    r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})\b"
    r"|\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)"
    r"|(?i:\b(?:authorization|token|bearer)[\"']?\s*[:=]?\s*(?:token |bearer )?)[A-Za-z0-9_.=-]{16,}",
    re.S,
)


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add these fields (of FIELDS) to every line logged inside the block, in this task and the threads
    and tasks it starts."""
    token = _CONTEXT.set({**(_CONTEXT.get() or {}), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def current_context() -> dict[str, Any]:
    return dict(_CONTEXT.get() or {})


class Scrubber:
    """Replaces what must never be written: token-shaped strings, and the exact secrets of this App
    (its webhook secret, private key), registered at start-up."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = sorted({s for s in secrets if s and len(s) >= 8}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return _SECRETS.sub(REDACTED, text)


class JsonFormatter(logging.Formatter):
    def __init__(self, scrub: Scrubber) -> None:
        super().__init__()
        self.scrub = scrub

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": self.scrub(record.getMessage()),
        }
        line.update(getattr(record, "review", None) or {})
        if record.exc_info:
            line["error"] = self.scrub(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self, scrub: Scrubber) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.scrub = scrub

    def format(self, record: logging.LogRecord) -> str:
        where = getattr(record, "review", None) or {}
        text = super().format(record)
        if where:
            text += " [" + " ".join(f"{k}={where[k]}" for k in FIELDS if k in where) + "]"
        return self.scrub(text)


class _WithContext(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.review = _CONTEXT.get() or {}
        return True


def configure_logging(level: str = "INFO", fmt: str = "auto", stream: TextIO | None = None,
                      secrets: Iterable[str] = ()) -> logging.Handler:
    """Route the root logger to `stream` (stderr) as JSON or text (`auto`: text on a terminal, else
    JSON), with the review context and the scrubber; returns the handler."""
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "text" if stream.isatty() else "json"
    scrub = Scrubber(secrets)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(scrub) if fmt == "json" else TextFormatter(scrub))
    handler.addFilter(_WithContext())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
