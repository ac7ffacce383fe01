"""The report for people: grouped by environment, then file, each finding with `file:line`,
what is wrong and how to fix it. Colour is a parameter so callers decide from `isatty()`."""

from __future__ import annotations

from itertools import groupby

from bot.model import Finding
from bot.publish import escape
from bot.publish.report import (
    Report,
    headline,
    plural,
    resource_label,
    sorted_findings,
    statement,
)

_COLOURS = {"error": "31", "warning": "33", "notice": "36", "new": "1;35", "dim": "2", "head": "1"}
NO_FILE = "(no file)"


def _paint(text: str, style: str, colour: bool) -> str:
    return f"\x1b[{_COLOURS[style]}m{text}\x1b[0m" if colour else text


def location(f: Finding) -> str:
    o = f.origin
    if not o.file:
        return f"target {f.target}" if f.target else NO_FILE
    return f"{o.file}:{o.line}" if o.line else o.file


def _indent(text: str, prefix: str) -> list[str]:
    return [prefix + line for line in text.splitlines()] or [prefix]


def _finding_lines(f: Finding, colour: bool) -> list[str]:
    marker = _paint("NEW", "new", colour) if f.new else _paint("existing", "dim", colour)
    sev = _paint(f"{f.severity:<7}", f.severity, colour)
    out = [f"  {location(f)}  {sev} {f.rule}  {marker}"]
    out += _indent(statement(f), "      ")
    if f.remediation:
        out += _indent(f"fix: {f.remediation}", "      ")
    if f.suggestion:
        s = f.suggestion
        span = f"line {s.line}" if s.end_line == s.line else f"lines {s.line}-{s.end_line}"
        out.append(f"      suggested replacement for {s.file} {span}:")
        out += _indent(s.text.rstrip("\n"), "        | ")
    return out


def _suppressed_line(f: Finding) -> str:
    what = resource_label(f)
    reason = f" ({f.suppression_reason})" if f.suppression_reason else ""
    return f"  {location(f)}  {f.rule}{' ' + what if what else ''}{reason}"


def summary_line(report: Report, fail_on: str = "new") -> str:
    """The headline the check run also leads with, then how much was checked:
    `2 new errors in production (1 existing) — 3 targets checked (Kustomize v5.5.0)`."""
    line = f"{escape.one_line(headline(report, fail_on))} — {plural(len(report.targets), 'target')} checked"
    if report.kustomize_version:
        helm = f", Helm {report.helm_version}" if report.helm_version else ""
        line += f" (Kustomize {report.kustomize_version}{helm})"
    return line


def render_text(report: Report, colour: bool = False, fail_on: str = "new") -> str:
    lines: list[str] = []
    findings = sorted_findings(report.findings)
    for env, env_group in groupby(findings, key=lambda f: f.environment):
        env_findings = list(env_group)
        active = [f for f in env_findings if not f.suppressed]
        lines.append(_paint(f"== {env or 'repository'} ==", "head", colour))
        for file, file_group in groupby(active, key=lambda f: f.origin.file):
            lines.append(_paint(file or NO_FILE, "head", colour))
            for f in file_group:
                lines += _finding_lines(f, colour)
        suppressed = [f for f in env_findings if f.suppressed]
        if suppressed:
            lines.append(_paint(f"suppressed ({len(suppressed)}):", "dim", colour))
            lines += [_paint(_suppressed_line(f), "dim", colour) for f in suppressed]
        lines.append("")
    failed = [t for t in report.targets if t.status != "ok"]
    if failed:
        lines.append("targets that failed to build: " + ", ".join(t.path for t in failed))
    lines += [f"note: {note}" for note in report.notes]
    lines.append(summary_line(report, fail_on))
    return escape.log_lines("\n".join(lines) + "\n")
