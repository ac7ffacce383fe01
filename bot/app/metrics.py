"""A tiny in-process Prometheus registry: counters and one histogram, rendered as text."""

from __future__ import annotations

from collections import defaultdict

DURATION_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)


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
        self._durations: list[float] = []

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        self.counters[name][tuple(sorted(labels.items()))] += amount

    def value(self, name: str, **labels: str) -> float:
        return self.counters[name].get(tuple(sorted(labels.items())), 0.0)

    def observe_review(self, seconds: float) -> None:
        self._durations.append(seconds)

    def render(self, gauges: dict[str, dict[tuple, float]] | None = None) -> str:
        """Prometheus text exposition; `gauges` are point-in-time values (e.g. jobs by state)."""
        lines: list[str] = []
        for name, series in sorted(self.counters.items()):
            lines += [f"# HELP {name} {self.help.get(name, name)}", f"# TYPE {name} counter"]
            lines += [f"{name}{_labels(dict(key))} {val:g}" for key, val in sorted(series.items())]
        for name, series in sorted((gauges or {}).items()):
            lines.append(f"# TYPE {name} gauge")
            lines += [f"{name}{_labels(dict(key))} {val:g}" for key, val in sorted(series.items())]
        name = "infra_review_review_duration_seconds"
        lines += [f"# HELP {name} Time from job start to finish.", f"# TYPE {name} histogram"]
        for bound in DURATION_BUCKETS:
            count = sum(1 for d in self._durations if d <= bound)
            lines.append(f'{name}_bucket{{le="{bound:g}"}} {count}')
        lines.append(f'{name}_bucket{{le="+Inf"}} {len(self._durations)}')
        lines.append(f"{name}_sum {sum(self._durations):g}")
        lines.append(f"{name}_count {len(self._durations)}")
        return "\n".join(lines) + "\n"
