"""Webhook intake as pure functions: size, signature, then parse (in that order)."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping

from gidgethub.sansio import Event

SIGNATURE_PREFIX = "sha256="


class WebhookRejected(Exception):
    """The delivery must not be processed; `status` is the HTTP answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def sign(body: bytes, secret: str) -> str:
    """The X-Hub-Signature-256 value GitHub sends for `body`."""
    return SIGNATURE_PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, signature: str | None, secret: str) -> None:
    """Raise WebhookRejected(401) unless `signature` is the HMAC-SHA256 of the raw body."""
    if not signature:
        raise WebhookRejected(401, "missing X-Hub-Signature-256")
    if not hmac.compare_digest(signature.strip().encode(), sign(body, secret).encode()):
        raise WebhookRejected(401, "bad signature")


def check_size(content_length: int | None, max_bytes: int) -> None:
    """Reject by declared length before reading the body (413)."""
    if content_length is not None and content_length > max_bytes:
        raise WebhookRejected(413, "payload too large")


def only_value(headers: Mapping[str, str], name: str) -> str | None:
    """The header's value, None when it is absent or sent more than once (a second copy, added by a
    proxy or an attacker, would make which one is checked an accident of order)."""
    getall = getattr(headers, "getall", None)
    values = getall(name, []) if getall is not None else [v for v in (headers.get(name),) if v is not None]
    return values[0] if len(values) == 1 else None


def parse_event(headers: Mapping[str, str], body: bytes, *, secret: str, max_bytes: int) -> Event:
    """Verify then parse a delivery; `headers` must be case-insensitive (aiohttp's are)."""
    if len(body) > max_bytes:
        raise WebhookRejected(413, "payload too large")
    verify_signature(body, only_value(headers, "x-hub-signature-256"), secret)
    event_name = headers.get("x-github-event")
    delivery_id = headers.get("x-github-delivery")
    if not event_name or not delivery_id:
        raise WebhookRejected(400, "missing X-GitHub-Event or X-GitHub-Delivery")
    content_type = headers.get("content-type", "application/json").split(";")[0].strip()
    if content_type != "application/json":
        raise WebhookRejected(415, "webhook content type must be application/json")
    return Event(load_payload(body), event=event_name, delivery_id=delivery_id)


def body_text(body: bytes) -> str:
    """The body as the text stored for the worker: strict UTF-8, which is what GitHub sends (400 otherwise)."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise WebhookRejected(400, "body is not UTF-8") from None


def load_payload(body: bytes) -> dict:
    """Parse exactly as the worker will parse the stored text, so nothing accepted here fails there
    (`json.loads` on bytes would also take UTF-16/32 and a BOM, which the stored text cannot carry)."""
    try:
        data = json.loads(body_text(body))
    except json.JSONDecodeError:
        raise WebhookRejected(400, "body is not JSON") from None
    except RecursionError:  # nesting deeper than the interpreter's stack: no webhook is shaped so
        raise WebhookRejected(400, "body is nested too deeply") from None
    if not isinstance(data, dict):
        raise WebhookRejected(400, "body is not a JSON object")
    return data


# What the handlers read from the events they route, as (path, type): a signed delivery without it is
# refused (400) at the door rather than queued to fail in the worker. `installation.id` is checked
# whenever an installation is named.
_STR, _INT = (str,), (int,)
REQUIRED: dict[str, tuple[tuple[str, tuple[type, ...]], ...]] = {
    "pull_request": (("repository.full_name", _STR), ("pull_request.number", _INT),
                     ("pull_request.head.sha", _STR), ("pull_request.state", _STR)),
    "issue_comment": (("repository.full_name", _STR), ("issue.number", _INT), ("issue.user.login", _STR),
                      ("comment.id", _INT), ("comment.user.login", _STR), ("sender.login", _STR),
                      ("comment.body", (str, type(None)))),
    "check_run": (("repository.full_name", _STR), ("check_run.head_sha", _STR)),
    "check_suite": (("repository.full_name", _STR), ("check_suite.head_sha", _STR)),
}


_MISSING = object()


def _at(data: object, path: str) -> object:
    for key in path.split("."):
        if not isinstance(data, dict) or key not in data:
            return _MISSING
        data = data[key]
    return data


def check_fields(event: Event) -> None:
    """Raise WebhookRejected(400) unless the routed event carries what its handlers read (REQUIRED)."""
    required = REQUIRED.get(event.event, ())
    if isinstance(event.data.get("installation"), dict):
        required += (("installation.id", _INT),)
    for path, types in required:
        value = _at(event.data, path)
        if isinstance(value, bool) or not isinstance(value, types):
            raise WebhookRejected(400, f"a {event.event} payload needs {path}")


def for_another_app(event: Event, app_id: int | None) -> bool:
    """Whether a check_run or check_suite event is about another App's run or suite. GitHub sends
    `rerequested` and `requested_action` only to the App that owns the run, so this is a second
    guard: a Re-run button of another tool, or a forged delivery, never reviews the PR."""
    owner = _at(event.data, f"{event.event}.app.id") if event.event in ("check_run", "check_suite") else None
    return isinstance(owner, int) and not isinstance(owner, bool) and app_id is not None and owner != app_id


def installation_id(event: Event) -> int | None:
    """The installation a delivery belongs to (None for repository webhooks and pings)."""
    inst = event.data.get("installation")
    return int(inst["id"]) if isinstance(inst, dict) and inst.get("id") else None
