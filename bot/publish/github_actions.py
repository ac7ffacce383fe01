"""GitHub Actions workflow commands (`::error file=…,line=…::message`) for `--format github`.

Escaping follows actions/toolkit `command.ts`: data escapes `%`, CR and LF; property values also
escape `:` and `,`, which would otherwise end the value.
"""

from __future__ import annotations

from bot.model import Finding
from bot.publish import escape
from bot.publish.report import Report, deciding, severity_rank, sort_key, statement
from bot.publish.text import summary_line

COMMANDS = {"error": "error", "warning": "warning", "notice": "notice"}


def escape_data(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(value: str) -> str:
    return escape_data(value).replace(":", "%3A").replace(",", "%2C")


def command(f: Finding, decides: bool = True) -> str:
    """One annotation: at the finding's severity when it decides the exit code, else a notice (as
    the App's check run does), so the red marks are the ones to act on; `[existing]` in the title
    tells what the change did not introduce."""
    props: list[tuple[str, str]] = []
    if f.origin.file:
        props.append(("file", f.origin.file))
        if f.origin.line:
            props.append(("line", str(f.origin.line)))
            props.append(("endLine", str(max(f.origin.end_line or 0, f.origin.line))))
    env = f" ({f.environment})" if f.environment else ""
    props.append(("title", f"{f.rule}{env}{'' if f.new else ' [existing]'}"))
    message = statement(f)
    if f.remediation:
        message += f"\nFix: {f.remediation}"
    prop_text = ",".join(f"{k}={escape_property(v)}" for k, v in props)
    level = COMMANDS.get(f.severity, "warning") if decides else "notice"
    return f"::{level} {prop_text}::{escape_data(message)}"


def render_github(report: Report, fail_on: str = "new") -> str:
    """Deciding findings first, errors before warnings (GitHub shows only the first ten annotations
    of each level per step), then the rest as notices. Suppressed findings produce no annotation; the
    summary is a plain log line, so it does not use up the per-step annotation allowance."""
    chosen = {id(f) for f in deciding(report.findings, fail_on)}
    shown = sorted((f for f in report.findings if not f.suppressed),
                   key=lambda f: (id(f) not in chosen, severity_rank(f.severity), sort_key(f)))
    lines = [command(f, id(f) in chosen) for f in shown]
    lines += [escape.log_lines(escape.one_line(f"note: {note}")) for note in report.notes]
    lines.append(summary_line(report, fail_on))
    return "\n".join(lines) + "\n"
