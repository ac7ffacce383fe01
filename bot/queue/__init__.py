"""Durable job queues; `open_queue(url)` picks the implementation from QUEUE_URL."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .base import DeadLetter, Delivery, Job, JobRecord, JobState, Queue, QueueStats


def open_queue(url: str) -> Queue:
    """`sqlite:///relative/path`, `sqlite:////absolute/path`, `sqlite:///:memory:`, or
    `redis://[:password@]host[:port][/db]` (`rediss://` for TLS) shared by replicas. Query parameters
    there: `prefix`, the key prefix (default `infra-review:`), so environments can share one Redis;
    `lease`, the seconds a dead replica's work stays held before another takes it (default 30).
    ValueError says what is wrong with a URL."""
    if url.startswith("sqlite://"):
        from .sqlite import SqliteQueue

        return SqliteQueue(url.removeprefix("sqlite:///") or ":memory:")
    if url.startswith(("redis://", "rediss://")):
        from .redis import DEFAULT_LEASE, DEFAULT_PREFIX, RedisQueue

        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        ours = {key: value for key, value in query if key in ("prefix", "lease")}
        rest = urlencode([(key, value) for key, value in query if key not in ours])
        return RedisQueue(urlunsplit(parts._replace(query=rest)), prefix=ours.get("prefix", DEFAULT_PREFIX),
                          lease=_lease(ours.get("lease"), DEFAULT_LEASE))
    raise ValueError(f"unsupported QUEUE_URL scheme: {url.split(':', 1)[0]}")


def _lease(text: str | None, default: float) -> float:
    if text is None:
        return default
    try:
        lease = float(text)
    except ValueError:
        lease = 0.0
    if not 1.0 <= lease <= 3600.0:
        raise ValueError(f"QUEUE_URL: its parameter lease={text} must be a number of seconds from 1 to 3600")
    return lease


__all__ = ["DeadLetter", "Delivery", "Job", "JobRecord", "JobState", "Queue", "QueueStats", "open_queue"]
