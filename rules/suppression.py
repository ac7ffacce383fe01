"""The `infra-review.io/ignore` annotation: which rules a resource opts out of, and why.

Value: `"<rule>[,<rule>]: <reason>"`; several entries may be separated by `;` or newlines. An
entry without a reason does not suppress: the finding stays active and its message says why the
annotation was not honoured, so the author sees the problem where the finding is.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.model import Finding
from bot.objects import RenderedObject
from rules.base import get, is_workload, pod_meta_path

ANNOTATION = "infra-review.io/ignore"


@dataclass(frozen=True)
class Suppression:
    rule: str
    reason: str  # '' when the author gave none


def parse_ignore(value: object) -> list[Suppression]:
    """Suppressions in one annotation value (rule ids as written, reasons stripped)."""
    out: list[Suppression] = []
    for entry in str(value or "").replace(";", "\n").splitlines():
        rules, _, reason = entry.partition(":")
        for rule in rules.split(","):
            if rule.strip():
                out.append(Suppression(rule.strip(), reason.strip()))
    return out


def suppressions_of(obj: RenderedObject) -> list[Suppression]:
    """From the resource's annotations and, for a workload, its pod template's."""
    found = parse_ignore(obj.annotations.get(ANNOTATION)) if ANNOTATION in obj.annotations else []
    if is_workload(obj) and obj.kind != "Pod":
        meta = get(obj.obj, pod_meta_path(obj.kind))
        ann = meta.get("annotations") if isinstance(meta, dict) else None
        if isinstance(ann, dict) and ANNOTATION in ann:
            found += parse_ignore(ann[ANNOTATION])
    return found


def apply_suppressions(finding: Finding, suppressions: list[Suppression], forbidden: bool) -> Finding:
    """Mark `finding` suppressed when an entry with a reason names its rule (and that is allowed)."""
    entries = [s for s in suppressions if s.rule == finding.rule]
    if not entries:
        return finding
    reasoned = next((s for s in entries if s.reason), None)
    if forbidden:
        finding.message += (
            f" (The {ANNOTATION} annotation names {finding.rule}, but this repository's "
            ".github/infra-review.yml forbids suppressing it, so it still counts.)"
        )
    elif reasoned:
        finding.suppressed = True
        finding.suppression_reason = reasoned.reason
    else:
        finding.message += (
            f" (The {ANNOTATION} annotation names {finding.rule} without a reason, so it does not "
            f'suppress; write it as "{finding.rule}: <why this is acceptable>".)'
        )
    return finding
