"""The service's Prometheus metrics, through prometheus-client, one registry per app.

Memory stays bounded: every label value comes from a fixed or bounded set — event names the router
knows (`bounded`), rule ids of the catalogue, GitHub endpoints as templates (`endpoint`), the
installations this App serves. Point-in-time values (queue depth, oldest job) are read from the queue
when /metrics is scraped.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

DURATION_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)
STAGE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300)
OTHER = "other"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def bounded(value: str | None, known: Collection[str]) -> str:
    """`value` if it is one of `known`, else `other`: each distinct label value is a series kept forever."""
    return value if value is not None and value in known else OTHER


_WORD = re.compile(r"^[a-z][a-z_-]{0,39}$")
_NUMBER = re.compile(r"^\d+$")
_SHA = re.compile(r"^[0-9a-f]{7,64}$")


def endpoint(method: str, url: str) -> str:
    """`POST /repos/{owner}/{repo}/check-runs/{n}`: a request as a bounded label. Owner and repository,
    numbers and SHAs become placeholders; any other segment that is not one of GitHub's lower-case path
    words becomes `{x}`, so no name from a webhook can mint a series."""
    parts = [p for p in urlsplit(url).path.split("/") if p]
    out = []
    for i, part in enumerate(parts):
        if i in (1, 2) and parts[0] == "repos":
            out.append("{owner}" if i == 1 else "{repo}")
        elif _NUMBER.match(part):
            out.append("{n}")
        elif _SHA.match(part) and not _WORD.match(part):
            out.append("{sha}")
        else:
            out.append(part if _WORD.match(part) else "{x}")
    return f"{method.upper()} /{'/'.join(out)}"


@dataclass(frozen=True)
class Family:
    kind: type
    help: str
    labels: tuple[str, ...] = ()


FAMILIES: dict[str, Family] = {
    "infra_review_webhook_deliveries_total": Family(Counter, "Webhook deliveries received, by event and outcome.",
                                                    ("event", "outcome")),
    "infra_review_deliveries_handled_total": Family(Counter, "Stored deliveries whose handlers ran, by outcome.",
                                                    ("event", "outcome")),
    "infra_review_jobs_finished_total": Family(Counter, "Review jobs finished, by outcome.", ("outcome",)),
    "infra_review_github_requests_total": Family(Counter, "GitHub API requests by method, endpoint and status.",
                                                 ("method", "endpoint", "status")),
    "infra_review_renders_total": Family(Counter, "Renders by renderer (kustomize, helm) and cache outcome.",
                                         ("renderer", "cache")),
    "infra_review_findings_total": Family(Counter, "Findings published, by rule and severity.", ("rule", "severity")),
}


class Metrics:
    """One app's metrics. `inc(name, **labels)` counts in a family of FAMILIES."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._families = {name: spec.kind(name.removesuffix("_total"), spec.help, spec.labels, registry=self.registry)
                          for name, spec in FAMILIES.items()}
        self.review_duration = Histogram("infra_review_review_duration_seconds", "Time from job start to finish.",
                                         buckets=DURATION_BUCKETS, registry=self.registry)
        self.stage_duration = Histogram("infra_review_review_stage_seconds", "Time of each stage of a review.",
                                        ("stage",), buckets=STAGE_BUCKETS, registry=self.registry)
        self.rate_limit = Gauge("infra_review_github_rate_limit_remaining",
                                "GitHub's x-ratelimit-remaining, by installation, as last seen.", ("installation",),
                                registry=self.registry)
        self.queue = Gauge("infra_review_queue_jobs", "Jobs in the queue by state.", ("state",), registry=self.registry)
        self.oldest = Gauge("infra_review_queue_oldest_job_age_seconds", "Age of the oldest queued job (0: none).",
                            registry=self.registry)
        self.dead = Gauge("infra_review_queue_dead_letters", "Jobs given up after too many failures.",
                          registry=self.registry)
        self.pending = Gauge("infra_review_queue_deliveries_pending", "Stored deliveries not handled yet.",
                             registry=self.registry)

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        family = self._families[name]
        (family.labels(**labels) if labels else family).inc(amount)

    def value(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

    def observe_review(self, seconds: float) -> None:
        self.review_duration.observe(seconds)

    def observe_stages(self, timings: Mapping[str, float]) -> None:
        for stage, seconds in timings.items():
            self.stage_duration.labels(stage=stage).observe(seconds)

    def saw_rate_limit(self, installation_id: int | None, headers: Mapping[str, str]) -> None:
        remaining = headers.get("x-ratelimit-remaining", "")
        if remaining.isdigit():
            self.rate_limit.labels(installation=str(installation_id or "app")).set(int(remaining))

    def set_queue(self, counts: Mapping[str, int], oldest: float | None = None, dead: int = 0,
                  pending: int = 0) -> None:
        for state, n in counts.items():
            self.queue.labels(state=state).set(n)
        self.oldest.set(oldest or 0)
        self.dead.set(dead)
        self.pending.set(pending)

    def render(self) -> str:
        return generate_latest(self.registry).decode()
