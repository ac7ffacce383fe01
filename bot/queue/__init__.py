"""Durable job queues; `open_queue(url)` picks the implementation from QUEUE_URL."""

from __future__ import annotations

from .base import Delivery, Job, JobState, Queue


def open_queue(url: str) -> Queue:
    """`sqlite:///relative/path`, `sqlite:////absolute/path` or `sqlite:///:memory:`."""
    if url.startswith("sqlite://"):
        from .sqlite import SqliteQueue

        return SqliteQueue(url.removeprefix("sqlite:///") or ":memory:")
    raise ValueError(f"unsupported QUEUE_URL scheme: {url.split(':', 1)[0]}")


__all__ = ["Delivery", "Job", "JobState", "Queue", "open_queue"]
