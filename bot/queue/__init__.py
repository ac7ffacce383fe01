"""Durable job queues; `open_queue(url)` picks the implementation from QUEUE_URL."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .base import DeadLetter, Delivery, Job, JobRecord, JobState, Queue, QueueStats


def open_queue(url: str) -> Queue:
    """`sqlite:///relative/path`, `sqlite:////absolute/path`, `sqlite:///:memory:`, or
    `redis://[:password@]host[:port][/db]` (`rediss://` for TLS) shared by replicas; a `prefix` query
    parameter there sets the key prefix (default `infra-review:`), so environments can share one Redis."""
    if url.startswith("sqlite://"):
        from .sqlite import SqliteQueue

        return SqliteQueue(url.removeprefix("sqlite:///") or ":memory:")
    if url.startswith(("redis://", "rediss://")):
        from .redis import DEFAULT_PREFIX, RedisQueue

        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        prefix = next((value for key, value in query if key == "prefix"), DEFAULT_PREFIX)
        rest = urlencode([(key, value) for key, value in query if key != "prefix"])
        return RedisQueue(urlunsplit(parts._replace(query=rest)), prefix=prefix)
    raise ValueError(f"unsupported QUEUE_URL scheme: {url.split(':', 1)[0]}")


__all__ = ["DeadLetter", "Delivery", "Job", "JobRecord", "JobState", "Queue", "QueueStats", "open_queue"]
