"""When a piece of work must stop: a time limit and a cancel switch, shared across threads.

A review renders and checks in a worker thread, which Python cannot interrupt. The thread checks
its Deadline between steps (targets, rules) and the renderer watches it while a build runs (then
kills the build), so a review that is cancelled (superseded) or out of time releases its thread
within a moment instead of running to the end.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class Stopped(Exception):
    """The work stopped before its end: cancelled, or past its deadline."""


class Deadline:
    def __init__(self, seconds: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._at = clock() + seconds if seconds is not None else math.inf
        self._seconds = seconds
        self._cancelled = threading.Event()
        self._why = ""

    def cancel(self, why: str = "it was cancelled") -> None:
        self._why = self._why or why
        self._cancelled.set()

    def remaining(self) -> float:
        """Seconds left (0 once stopped; infinity without a time limit)."""
        return 0.0 if self._cancelled.is_set() else max(self._at - self._clock(), 0.0)

    @property
    def stopped(self) -> bool:
        return self.remaining() <= 0

    def why(self) -> str:
        if self._cancelled.is_set():
            return self._why
        return f"it ran past its {self._seconds:g} s limit" if self.stopped else ""

    def check(self) -> None:
        """Raise Stopped when the work must stop; cheap enough to call between any two steps."""
        if self.stopped:
            raise Stopped(f"stopped: {self.why()}")
