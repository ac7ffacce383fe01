"""GitHub Actions workflow commands (`::error file=…,line=…::message`) for `--format github`.

Escaping follows actions/toolkit `command.ts`: data escapes `%`, CR and LF; property values also
escape `:` and `,`, which would otherwise end the value.
"""

from __future__ import annotations

from bot.model import Finding
from bot.publish.report import Report, sorted_findings, statement
from bot.publish.text import summary_line

COMMANDS = {"error": "error", "warning": "warning", "notice": "notice"}


def escape_data(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(value: str) -> str:
    return escape_data(value).replace(":", "%3A").replace(",", "%2C")


def command(f: Finding) -> str:
    """One annotation. Existing findings keep their severity; their title says `existing` so a
    reader can tell what the change introduced."""
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
    return f"::{COMMANDS.get(f.severity, 'warning')} {prop_text}::{escape_data(message)}"


def render_github(report: Report) -> str:
    """Suppressed findings produce no annotation; the summary is a plain log line, so it does not
    use up the per-step annotation allowance."""
    lines = [command(f) for f in sorted_findings(report.findings) if not f.suppressed]
    lines.append(summary_line(report))
    return "\n".join(lines) + "\n"
