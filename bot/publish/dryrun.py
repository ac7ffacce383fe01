"""What the App would post, printed instead of sent: the local `review` command's output."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from bot.publish import diff as rendered_diff
from bot.publish import escape, github
from bot.publish.report import Report
from bot.review.anchors import DiffIndex


def _indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


def render_dry_run(
    report: Report,
    diff: DiffIndex,
    *,
    pr_number: int = 0,
    existing_comments: Iterable[Mapping[str, Any]] = (),
    cap: int = 30,
    mode: str = "added",
    fail_on: str = "new",
    object_span: github.SpanOf | None = None,
) -> str:
    """Built from the same payload builders the App uses, so what is printed is what would be sent."""
    comments = list(existing_comments)
    bodies = github.check_run_complete(report, pr_number, fail_on=fail_on)
    first = bodies[0]
    anns = [a for body in bodies for a in body["output"]["annotations"]]
    out = [
        f"== check run `{github.CHECK_NAME}`: {first['conclusion']} ==",
        f"title: {first['output']['title']}",
        "summary:",
        _indent(first["output"]["summary"]),
        *(["text (its rendered diffs):", _indent(first["output"]["text"].partition(rendered_diff.HEADING)[2].strip())]
          if report.changes and not report.changes.empty else []),
        f"annotations ({len(anns)}, in {len(bodies)} request{'s' if len(bodies) != 1 else ''}):",
    ]
    for a in anns:
        span = f"{a['start_line']}" if a["start_line"] == a["end_line"] else f"{a['start_line']}-{a['end_line']}"
        out.append(f"  {a['path']}:{span} {a['annotation_level']} {a['title']}: {a['message'].splitlines()[0]}")
    review = github.review_payload(report, diff, github.open_fingerprints(comments), cap=cap, mode=mode,
                                   object_span=object_span)
    out.append("")
    if review is None:
        out.append("== review: none (nothing new to say) ==")
    else:
        out += [f"== review ({review['event']}, {len(review['comments'])} inline comments) ==", review["body"]]
        for c in review["comments"]:
            where = f"{c['start_line']}-{c['line']}" if "start_line" in c else str(c["line"])
            out += ["", f"--- {c['path']}:{where}", _indent(c["body"])]
    current = {f.fingerprint for f in report.findings if not f.suppressed}
    stale = github.stale_comments(comments, current)
    if stale:
        out += ["", f"== would delete {len(stale)} stale comment(s): {', '.join(map(str, stale))} =="]
    return escape.log_lines("\n".join(out) + "\n")
