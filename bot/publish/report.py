"""The one input every reporter takes, and the counting rules they all share."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from bot.diff.model import Changes
from bot.model import ENVIRONMENTS, SEVERITIES, Finding

TOOL_NAME = "infra-review"


class RuleMeta(Protocol):
    """What reporters read of a rule; `rules.base.Rule` satisfies it, so the registry passes through."""

    @property
    def id(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def rationale(self) -> str: ...
    @property
    def remediation(self) -> str: ...
    @property
    def severity(self) -> Mapping[str, str | None]: ...


@dataclass(frozen=True)
class RuleInfo:
    """Rule documentation as reporters need it (severity per environment, None = off there)."""

    id: str
    title: str
    rationale: str
    remediation: str
    severity: Mapping[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class TargetStatus:
    path: str
    environment: str | None
    status: str  # ok | error
    resources: int = 0


@dataclass
class Report:
    """Everything one run produced. `head_sha` is the revision reviewed (the App's PR head)."""

    findings: list[Finding]
    targets: list[TargetStatus] = field(default_factory=list)
    tool_version: str = "0.0.0"
    kustomize_version: str = ""
    helm_version: str = ""  # when HelmReleases were rendered
    rules: Mapping[str, RuleMeta] = field(default_factory=dict)
    head_sha: str | None = None
    # What was not checked, or checked on an assumption, said in every output's summary so a green
    # run is never mistaken for a complete one.
    notes: list[str] = field(default_factory=list)
    # The environments whose checked targets read each file: a suggestion on a line several
    # environments share is offered only when it is right for all of them.
    readers: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # What changes in each environment, when the base was rendered too and the caller asked (the App).
    changes: Changes | None = None


@dataclass(frozen=True)
class Summary:
    """Counts over a report. Suppressed findings count only in `suppressed`: a suppression is a
    reviewed decision, so it must not inflate errors/warnings or the `new` figure."""

    errors: int = 0
    warnings: int = 0
    notices: int = 0
    new: int = 0
    suppressed: int = 0

    def to_json(self) -> dict[str, int]:
        return {"errors": self.errors, "warnings": self.warnings, "notices": self.notices,
                "new": self.new, "suppressed": self.suppressed}


def summarize(findings: Iterable[Finding]) -> Summary:
    counts = {s: 0 for s in SEVERITIES}
    new = suppressed = 0
    for f in findings:
        if f.suppressed:
            suppressed += 1
            continue
        counts[f.severity] = counts.get(f.severity, 0) + 1
        new += f.new
    return Summary(counts["error"], counts["warning"], counts["notice"], new, suppressed)


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


FAIL_ON = ("new", "all")


def deciding(findings: Iterable[Finding], fail_on: str = "new") -> list[Finding]:
    """The findings that decide the outcome (check-run conclusion, exit code, annotation level):
    unsuppressed, and new unless `fail_on` is `all`."""
    if fail_on not in FAIL_ON:
        raise ValueError(f"fail_on must be one of {FAIL_ON}, not {fail_on!r}")
    return [f for f in findings if not f.suppressed and (f.new or fail_on == "all")]


DOCS_URL = "https://github.com/infra-review/infra-review/blob/main/docs/rules.md"


def rule_anchor(rule_id: str, title: str) -> str:
    """The anchor of a rule's section in docs/rules.md (`latest-tag-image-without-a-fixed-version`)."""
    return f"{rule_id}-" + "".join(ch for ch in title.lower().replace(" ", "-") if ch.isalnum() or ch == "-")


def rule_docs_url(rule_id: str, title: str) -> str:
    return f"{DOCS_URL}#{rule_anchor(rule_id, title)}"


def fails(findings: Iterable[Finding], fail_on: str = "new") -> bool:
    return any(f.severity == "error" for f in deciding(findings, fail_on))


def _counts(findings: list[Finding], adjective: str) -> str:
    s = summarize(findings)
    return ", ".join(plural(n, f"{adjective}{word}") for n, word in
                     ((s.errors, "error"), (s.warnings, "warning"), (s.notices, "notice")) if n)


def headline(report: Report, fail_on: str = "new") -> str:
    """The verdict every output leads with, worded one way (check-run title, CLI summary): what
    decides, by severity and environment, then what else there is. `2 new errors, 1 new warning in
    production, staging (3 existing, 1 suppressed)`; `No new findings (3 existing)`; `No findings`."""
    pool = deciding(report.findings, fail_on)
    chosen = {id(f) for f in pool}
    other = sum(1 for f in report.findings if not f.suppressed and id(f) not in chosen)
    suppressed = sum(1 for f in report.findings if f.suppressed)
    extras = ", ".join(part for part in (f"{other} existing" if other else "",
                                         f"{suppressed} suppressed" if suppressed else "") if part)
    if pool:
        envs = sorted({f.environment for f in pool}, key=env_order)
        text = f"{_counts(pool, 'new ' if fail_on == 'new' else '')} in {', '.join(e or 'repository' for e in envs)}"
    else:
        text = "No new findings" if other else "No findings"
    return f"{text} ({extras})" if extras else text


def env_order(env: str | None) -> tuple[int, str]:
    """Production first: the environment whose findings matter most is read first."""
    order = {e: i for i, e in enumerate(reversed(ENVIRONMENTS))}
    return (order.get(env or "", len(order) + (env is None)), env or "")


def severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES)


def sort_key(f: Finding) -> tuple:
    return (env_order(f.environment), f.origin.file or "\uffff", f.origin.line or 0,
            severity_rank(f.severity), f.rule, f.fingerprint)


def sorted_findings(findings: Iterable[Finding]) -> list[Finding]:
    return sorted(findings, key=sort_key)


def statement(f: Finding) -> str:
    """`Deployment production/api, container api: <message>`, the finding as one sentence."""
    what = resource_label(f)
    return f"{what}: {f.message}" if what else f.message


def resource_label(f: Finding) -> str:
    """`Deployment production/api, container api`: how a person names the object."""
    if not f.resource:
        return ""
    r = f.resource
    label = f"{r.kind} {r.namespace + '/' if r.namespace else ''}{r.name}"
    return f"{label}, container {f.container}" if f.container else label
