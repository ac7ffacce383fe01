"""What one review concluded, as the worker keeps it (the status page) and counts it (/metrics)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Outcome:
    conclusion: str
    findings: int
    check_run_url: str | None
    seconds: float
    stages: dict[str, float] = field(default_factory=dict)  # bot.review.progress timings
    renders: Counter[tuple[str, bool]] = field(default_factory=Counter)  # (renderer, from the cache) -> n
    by_rule: Counter[tuple[str, str]] = field(default_factory=Counter)  # (rule, severity) -> findings

    def summary(self) -> dict[str, Any]:
        """The small record the queue keeps (bot.queue.base.SUMMARY_KEYS): names and counts only."""
        return {"conclusion": self.conclusion, "findings": self.findings, "check_run_url": self.check_run_url,
                "seconds": round(self.seconds, 3)}
