"""A tiny in-process Prometheus registry: counters and one histogram, rendered as text.

Memory stays bounded: label values come from fixed sets (see `bounded`) and the histogram keeps
bucket counts, not observations.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Collection, Mapping

DURATION_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)
OTHER = "other"


def bounded(value: str | None, known: Collection[str]) -> str:
    """`value` if it is one of `known`, else `other`: each distinct label value is a series kept forever."""
    return value if value is not None and value in known else OTHER


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(str(v))}"' for k, v in sorted(labels.items()))
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    def __init__(self) -> None:
        self.counters: dict[str, dict[tuple, float]] = defaultdict(lambda: defaultdict(float))
        self.help: dict[str, str] = {
            "infra_review_webhook_deliveries_total": "Webhook deliveries by event and outcome.",
            "infra_review_github_requests_total": "GitHub API requests by method and status.",
            "infra_review_jobs_finished_total": "Review jobs finished by outcome.",
        }
        self._buckets = [0] * (len(DURATION_BUCKETS) + 1)
        self._duration_sum = 0.0

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        self.counters[name][tuple(sorted(labels.items()))] += amount

    def value(self, name: str, **labels: str) -> float:
        return self.counters[name].get(tuple(sorted(labels.items())), 0.0)

    def observe_review(self, seconds: float) -> None:
        self._buckets[bisect_left(DURATION_BUCKETS, seconds)] += 1
        self._duration_sum += seconds

    def render(self, gauges: Mapping[str, Mapping[tuple, float]] | None = None) -> str:
        """Prometheus text exposition; `gauges` are point-in-time values (e.g. jobs by state)."""
        lines: list[str] = []
        for name, series in sorted(self.counters.items()):
            lines += [f"# HELP {name} {self.help.get(name, name)}", f"# TYPE {name} counter"]
            lines += [f"{name}{_labels(dict(key))} {val:g}" for key, val in sorted(series.items())]
        for name, gauge in sorted((gauges or {}).items()):
            lines.append(f"# TYPE {name} gauge")
            lines += [f"{name}{_labels(dict(key))} {val:g}" for key, val in sorted(gauge.items())]
        name = "infra_review_review_duration_seconds"
        lines += [f"# HELP {name} Time from job start to finish.", f"# TYPE {name} histogram"]
        count = 0
        for bound, n in zip(DURATION_BUCKETS, self._buckets, strict=False):
            count += n
            lines.append(f'{name}_bucket{{le="{bound:g}"}} {count}')
        total = sum(self._buckets)
        lines.append(f'{name}_bucket{{le="+Inf"}} {total}')
        lines.append(f"{name}_sum {self._duration_sum:g}")
        lines.append(f"{name}_count {total}")
        return "\n".join(lines) + "\n"
