"""SARIF 2.1.0 for code-scanning tools: one driver rule per id, results located by file and line.

Fingerprints go in `partialFingerprints` so consumers (GitHub code scanning) track a finding across
line shifts exactly as `--base` does.
"""

from __future__ import annotations

import json
from typing import Any

from bot.model import SEVERITIES, Finding
from bot.publish.report import TOOL_NAME, Report, RuleMeta, rule_docs_url, sorted_findings, statement

SARIF_SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
FINGERPRINT_KEY = "infraReview/v1"
LEVELS = {"error": "error", "warning": "warning", "notice": "note"}


def default_level(severity: dict[str, str | None] | Any) -> str:
    """Production's level (the strictest column of the catalogue); else the most severe enabled
    elsewhere; `none` when the rule is off everywhere."""
    sev = dict(severity or {})
    if sev.get("production"):
        return LEVELS.get(sev["production"], "warning")
    enabled = sorted((s for s in sev.values() if s), key=lambda s: SEVERITIES.index(s) if s in SEVERITIES else 9)
    return LEVELS.get(enabled[0], "warning") if enabled else "none"


def _help_text(meta: RuleMeta) -> str:
    return f"{meta.rationale}\n\nRemediation: {meta.remediation}".strip()


def _rule_descriptor(rule_id: str, meta: RuleMeta | None) -> dict[str, Any]:
    if meta is None:
        return {"id": rule_id, "shortDescription": {"text": rule_id}}
    help_text = _help_text(meta)
    return {
        "id": rule_id,
        "name": rule_id,
        "shortDescription": {"text": meta.title},
        "fullDescription": {"text": help_text},
        "help": {"text": help_text, "markdown": f"{meta.rationale}\n\n**Remediation:** {meta.remediation}"},
        "defaultConfiguration": {"level": default_level(meta.severity)},
        "helpUri": rule_docs_url(rule_id, meta.title),
        "properties": {"severity": {env: sev for env, sev in dict(meta.severity).items()}},
    }


def _location(f: Finding) -> dict[str, Any] | None:
    if not f.origin.file:
        return None
    physical: dict[str, Any] = {"artifactLocation": {"uri": f.origin.file}}
    if f.origin.line:
        physical["region"] = {"startLine": f.origin.line, "endLine": max(f.origin.end_line or 0, f.origin.line)}
    loc: dict[str, Any] = {"physicalLocation": physical}
    if f.resource:
        loc["logicalLocations"] = [{"name": f.resource.name, "fullyQualifiedName": str(f.resource),
                                    "kind": f.resource.kind}]
    return loc


def _fix(f: Finding) -> dict[str, Any]:
    s = f.suggestion
    assert s is not None
    # A region given by lines only ends before the last line's newline, so the text must not add one.
    return {
        "description": {"text": f.remediation or "apply the suggested replacement"},
        "artifactChanges": [{
            "artifactLocation": {"uri": s.file},
            "replacements": [{
                "deletedRegion": {"startLine": s.line, "endLine": max(s.end_line, s.line)},
                "insertedContent": {"text": s.text.removesuffix("\n")},
            }],
        }],
    }


def _result(f: Finding, rule_index: dict[str, int]) -> dict[str, Any]:
    text = statement(f)
    result: dict[str, Any] = {
        "ruleId": f.rule,
        "ruleIndex": rule_index[f.rule],
        "level": LEVELS.get(f.severity, "warning"),
        "message": {"text": text},
        "partialFingerprints": {FINGERPRINT_KEY: f.fingerprint},
        "baselineState": "new" if f.new else "unchanged",
        "properties": {"environment": f.environment, "target": f.target, "field": f.field,
                       "remediation": f.remediation},
    }
    loc = _location(f)
    if loc:
        result["locations"] = [loc]
    if f.suppressed:
        supp: dict[str, Any] = {"kind": "inSource", "status": "accepted"}
        if f.suppression_reason:
            supp["justification"] = f.suppression_reason
        result["suppressions"] = [supp]
    if f.suggestion:
        result["fixes"] = [_fix(f)]
    return result


def to_sarif(report: Report) -> dict[str, Any]:
    findings = sorted_findings(report.findings)
    rule_ids = sorted(set(report.rules) | {f.rule for f in findings})
    rule_index = {rid: i for i, rid in enumerate(rule_ids)}
    driver: dict[str, Any] = {
        "name": TOOL_NAME,
        "version": report.tool_version,
        "rules": [_rule_descriptor(rid, report.rules.get(rid)) for rid in rule_ids],
    }
    run: dict[str, Any] = {
        "tool": {"driver": driver},
        "results": [_result(f, rule_index) for f in findings],
        "columnKind": "unicodeCodePoints",
        "invocations": [{"executionSuccessful": True, "toolExecutionNotifications": [
            {"level": "note", "message": {"text": note}} for note in report.notes]}],
        "properties": {
            "kustomize": report.kustomize_version,
            "helm": report.helm_version,
            "targets": [{"path": t.path, "environment": t.environment, "status": t.status,
                         "resources": t.resources} for t in report.targets],
        },
    }
    return {"$schema": SARIF_SCHEMA_URI, "version": "2.1.0", "runs": [run]}


def render_sarif(report: Report) -> str:
    return json.dumps(to_sarif(report), indent=2) + "\n"
