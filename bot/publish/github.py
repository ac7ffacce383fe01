"""Request bodies for the GitHub App's check run and pull-request review; no HTTP here.

Bodies follow `checks/create`, `checks/update` and `pulls/create-review` of GitHub's OpenAPI
description and the limits GitHub enforces beyond it (50 annotations a request, 65,535 characters
of summary/text, one bad comment anchor rejects a whole review).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from bot.model import Finding
from bot.publish import diff as rendered_diff
from bot.publish import escape
from bot.publish.report import (
    Report,
    deciding,
    env_order,
    fails,
    headline,
    plural,
    resource_label,
    severity_rank,
    sorted_findings,
    statement,
)
from bot.review.anchors import DiffIndex, place_anchor

CHECK_NAME = "infra-review"
MAX_ANNOTATIONS = 50
MAX_OUTPUT_CHARS = 65_535
MAX_COMMENT_CHARS = 65_536
RECHECK_ACTION = {"label": "Re-check", "identifier": "recheck", "description": "Run infra-review again on this commit"}
ANNOTATION_LEVELS = {"error": "failure", "warning": "warning", "notice": "notice"}

_MARKER = "<!-- infra-review:fp={} -->"
_MARKER_RE = re.compile(r"<!-- infra-review:fp=([0-9a-f]{8,64}) -->")
_MARKER_LINE = re.compile(r"(?:<!-- infra-review:fp=[0-9a-f]{8,64} -->\s*)+")

SpanOf = Callable[[Finding], "tuple[int, int] | None"]


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def marker(fingerprint: str) -> str:
    return _MARKER.format(fingerprint)


def parse_fingerprints(body: str | None) -> list[str]:
    """The markers of a comment's closing block: we append them last, one a line, so a marker
    that repository text carried into the body above (a resource name, a suggestion) is not one."""
    closing: list[str] = []
    for line in reversed((body or "").rstrip().splitlines()):
        if not _MARKER_LINE.fullmatch(line.strip()):
            break
        closing.insert(0, line)
    return _MARKER_RE.findall("\n".join(closing))


def parse_fingerprint(body: str | None) -> str | None:
    """The first fingerprint marker in a comment body, None without one (who wrote it: `written_by`)."""
    found = parse_fingerprints(body)
    return found[0] if found else None


def truncate(text: str, limit: int = MAX_OUTPUT_CHARS) -> str:
    """Cut at a line boundary and say so, keeping the result within `limit` characters."""
    if len(text) <= limit:
        return text
    total = text.count("\n") + 1
    note = ("\n\n_… truncated: {} more lines not shown (GitHub allows {:,} characters). "
            "Run `infra-review check` for the full report._")
    room = limit - len(note.format(total, limit))
    head = text[:room]
    cut = head.rfind("\n")
    head = head[:cut] if cut > 0 else head
    shown = head.count("\n") + 1
    return head + note.format(total - shown, limit)


# --- check run -----------------------------------------------------------------------------


def conclusion(report: Report, fail_on: str = "new") -> str:
    if fails(report.findings, fail_on):
        return "failure"
    return "neutral" if deciding(report.findings, fail_on) else "success"


def check_title(report: Report, fail_on: str = "new") -> str:
    """The headline every output leads with (`2 new errors in production (1 existing)`)."""
    return escape.one_line(headline(report, fail_on))


def _env_table(findings: list[Finding]) -> list[str]:
    rows: dict[str, dict[str, Any]] = {}
    for f in findings:
        row = rows.setdefault(f.rule, {"severity": f.severity, "new": 0, "existing": 0, "suppressed": 0})
        if severity_rank(f.severity) < severity_rank(row["severity"]):
            row["severity"] = f.severity
        row["suppressed" if f.suppressed else "new" if f.new else "existing"] += 1
    out = ["| Rule | Severity | New | Existing | Suppressed |", "|---|---|--:|--:|--:|"]
    order = sorted(rows.items(), key=lambda kv: (severity_rank(kv[1]["severity"]), kv[0]))
    out += [f"| `{rule}` | {r['severity']} | {r['new']} | {r['existing']} | {r['suppressed']} |" for rule, r in order]
    return out


def check_summary(report: Report, fail_on: str = "new") -> str:
    lines = [f"**{escape.inline(check_title(report, fail_on))}**", ""]
    if report.changes is not None:
        lines += [f"- {escape.inline(line)}" for line in rendered_diff.summary_lines(report.changes)] + [""]
    lines.append("New findings decide this check; existing ones are listed for context."
                 if fail_on == "new" else "Every unsuppressed finding decides this check.")
    if report.notes:
        lines += ["", "**Not checked, or checked on an assumption:**", ""]
        lines += [f"- {escape.inline(note)}" for note in report.notes]
    by_env: dict[str | None, list[Finding]] = {}
    for f in report.findings:
        by_env.setdefault(f.environment, []).append(f)
    for env in sorted(by_env, key=env_order):
        lines += ["", f"### {escape.inline(env or 'repository')}", ""] + _env_table(by_env[env])
    if report.targets:
        lines += ["", "### Targets", "", "| Target | Environment | Status | Resources |", "|---|---|---|--:|"]
        lines += [f"| {escape.cell(escape.code(t.path))} | {escape.inline(t.environment or '—')} | {t.status} "
                  f"| {t.resources} |" for t in report.targets]
    lines += ["", f"infra-review {report.tool_version} · kustomize {report.kustomize_version or 'unknown'}"
                  + (f" · helm {report.helm_version}" if report.helm_version else "")]
    return truncate("\n".join(lines))


def _where(f: Finding) -> str:
    """`file:line` as a code span."""
    o = f.origin
    return escape.code(f"{o.file}:{o.line}" if o.file and o.line else (o.file or "(no file)"))


def _said(f: Finding) -> str:
    return escape.inline(statement(f))


def check_text(report: Report) -> str:
    """Every finding, one bullet each, for the details pane; then, when the base was rendered too, each
    object's rendered diff, collapsed, in what room GitHub leaves (at least half of it)."""
    findings = _findings_text(report, MAX_OUTPUT_CHARS // 2 if report.changes and not report.changes.empty
                              else MAX_OUTPUT_CHARS)
    if report.changes is None or report.changes.empty:
        return findings
    return f"{findings}\n\n{rendered_diff.render_markdown(report.changes, MAX_OUTPUT_CHARS - len(findings) - 2)}"


def _findings_text(report: Report, limit: int) -> str:
    lines = []
    for f in sorted_findings(report.findings):
        state = "suppressed" if f.suppressed else "new" if f.new else "existing"
        line = (f"- **{f.severity}** `{f.rule}` {_where(f)} ({escape.inline(f.environment or 'repository')}, "
                f"{state}): {_said(f)}")
        if f.suppressed and f.suppression_reason:
            line += f" — suppressed: {escape.inline(f.suppression_reason)}"
        elif f.remediation:
            line += f" — fix: {escape.inline(f.remediation)}"
        lines.append(line)
    return truncate("\n".join(lines) or "No findings.", limit)


def check_annotations(report: Report, fail_on: str = "new") -> list[dict[str, Any]]:
    """One annotation per unsuppressed finding with a file. A finding that does not decide the
    conclusion (an existing one, under `fail_on: new`) is a `notice` whatever its severity, so
    the red marks in the PR are the ones the author must act on."""
    decides = {id(f) for f in deciding(report.findings, fail_on)}
    located = [f for f in report.findings if f.origin.file and not f.suppressed]
    located.sort(key=lambda f: (id(f) not in decides, severity_rank(f.severity), f.origin.file, f.origin.line or 0))
    out = []
    for f in located:
        start = f.origin.line or 1
        message = statement(f)
        if f.remediation:
            message += f"\nFix: {f.remediation}"
        ann: dict[str, Any] = {
            "path": f.origin.file,
            "start_line": start,
            "end_line": max(f.origin.end_line or 0, start),
            "annotation_level": ANNOTATION_LEVELS.get(f.severity, "warning") if id(f) in decides else "notice",
            "title": f"{f.rule} ({f.environment or 'repository'}){'' if f.new else ' [existing]'}"[:255],
            "message": truncate(message),
        }
        if f.suggestion:
            ann["raw_details"] = truncate(f"Suggested replacement for lines {f.suggestion.line}-"
                                          f"{f.suggestion.end_line}:\n{f.suggestion.text}")
        out.append(ann)
    return out


def annotation_key(ann: Mapping[str, Any]) -> tuple[Any, ...]:
    """What tells an annotation from another, as sent and as GitHub lists it back."""
    return (ann.get("path"), ann.get("start_line"), ann.get("end_line"), ann.get("annotation_level"),
            ann.get("title"), ann.get("message"))


def check_run_create(head_sha: str, pr_number: int, started_at: str | None = None) -> dict[str, Any]:
    """`checks/create`: the run GitHub shows while the review works; `external_id` carries the PR
    number because fork PRs arrive with an empty `pull_requests` list on check events."""
    return {
        "name": CHECK_NAME,
        "head_sha": head_sha,
        "status": "in_progress",
        "external_id": str(pr_number),
        "started_at": started_at or now_iso(),
        "output": {"title": "Reviewing…", "summary": "infra-review is rendering and checking this pull request."},
    }


def check_run_complete(
    report: Report,
    pr_number: int,
    *,
    completed_at: str | None = None,
    fail_on: str = "new",
    details_url: str | None = None,
    already: Iterable[Mapping[str, Any]] = (),
) -> list[dict[str, Any]]:
    """`checks/update` bodies, in order. The first completes the run; each further one appends the
    next 50 annotations (GitHub appends annotations on update) and repeats title/summary/text,
    since an update's output replaces the previous one. Annotations `already` on the run (an earlier
    run of the same job got that far) are not appended twice."""
    posted = Counter(annotation_key(a) for a in already)
    anns = []
    for ann in check_annotations(report, fail_on):
        if posted[annotation_key(ann)] > 0:
            posted[annotation_key(ann)] -= 1
        else:
            anns.append(ann)
    output = {"title": check_title(report, fail_on), "summary": check_summary(report, fail_on),
              "text": check_text(report)}
    batches = [anns[i:i + MAX_ANNOTATIONS] for i in range(0, len(anns), MAX_ANNOTATIONS)] or [[]]
    first: dict[str, Any] = {
        "name": CHECK_NAME,
        "status": "completed",
        "conclusion": conclusion(report, fail_on),
        "completed_at": completed_at or now_iso(),
        "external_id": str(pr_number),
        "output": {**output, "annotations": batches[0]},
        "actions": [dict(RECHECK_ACTION)],
    }
    if details_url:
        first["details_url"] = details_url
    return [first] + [{"output": {**output, "annotations": batch}} for batch in batches[1:]]


def check_run_error(pr_number: int, explanation: str, *, completed_at: str | None = None) -> dict[str, Any]:
    """Completes a run whose review could not finish, so a required check never hangs. `failure`,
    not `neutral`: an unreviewed change must not pass a required check silently."""
    return {
        "name": CHECK_NAME,
        "status": "completed",
        "conclusion": "failure",
        "completed_at": completed_at or now_iso(),
        "external_id": str(pr_number),
        "output": {"title": "infra-review could not complete", "summary": truncate(explanation)},
        "actions": [dict(RECHECK_ACTION)],
    }


# --- pull-request review -------------------------------------------------------------------


def _suggestion_range(group: list[Finding], path: str, line: int, diff: DiffIndex,
                      readers: frozenset[str] | None = None) -> tuple[int, int] | None:
    """The suggestion's lines when one identical suggestion covers every finding of the comment, is
    right for every environment that reads the file (each has the finding), replaces the lines we
    anchor on, and lies inside one hunk (else GitHub rejects the comment)."""
    suggestions = {f.suggestion for f in group}
    if len(suggestions) != 1 or None in suggestions:
        return None
    if readers and not readers <= {f.environment for f in group}:
        return None
    (s,) = suggestions
    fd = diff.get(path)
    if s is None or fd is None or s.file != path or not (s.line <= line <= s.end_line):
        return None
    return (s.line, s.end_line) if fd.in_one_hunk(s.line, s.end_line) else None


def _environments(group: list[Finding]) -> str:
    """The environments of a comment, each named once, production first."""
    names = sorted({f.environment for f in group}, key=env_order)
    return escape.inline(", ".join(e or "repository" for e in names))


def _comment_body(group: list[Finding], suggestion: bool) -> str:
    head = group[0]
    worst = min((f.severity for f in group), key=severity_rank)
    lines = [f"**{worst}** · `{head.rule}` · {_environments(group)}", ""]
    messages = {(resource_label(f), f.message) for f in group}
    if len(messages) == 1:
        lines.append(_said(head))
    else:
        lines += [f"- {escape.inline(f.environment or 'repository')}: {_said(f)}" for f in group]
    remediations = list(dict.fromkeys(f.remediation for f in group if f.remediation))
    if remediations:
        lines += ["", "**Fix:** " + " / ".join(escape.inline(r) for r in remediations)]
    fixes = {f.suggestion: [g for g in group if g.suggestion == f.suggestion] for f in group if f.suggestion}
    if suggestion and head.suggestion:
        text = head.suggestion.text.removesuffix("\n")
        lines += ["", f"{escape.fence(text)}suggestion", text, escape.fence(text)]
    elif fixes:
        lines += ["", "Not offered as a one-click suggestion: the change differs per environment, belongs in "
                      "another file, or would also change environments that do not need it. Each fix:"]
        for s, owners in fixes.items():
            t = s.text.removesuffix("\n")
            lines += [f"Suggested replacement for {escape.code(s.file)} lines {s.line}-{s.end_line}"
                      f" ({_environments(owners)}):", f"{escape.fence(t)}yaml", t, escape.fence(t)]
    markers = "\n".join(marker(f.fingerprint) for f in group)
    body = truncate("\n".join(lines), MAX_COMMENT_CHARS - len(markers) - 2)
    return f"{body}\n\n{markers}"


def _review_body(total: int, posted: int, overflow: list[list[Finding]], unanchored: list[Finding]) -> str:
    lines = [f"infra-review found {plural(total, 'new finding')} in this pull request; "
             f"{plural(posted, 'inline comment')} below."]
    if overflow:
        lines += ["", f"{plural(len(overflow), 'more comment')} not posted inline (limit reached):"]
        for group in overflow:
            f = group[0]
            lines.append(f"- **{f.severity}** `{f.rule}` {_where(f)} ({_environments(group)}): {_said(f)}")
    if unanchored:
        verb = "is" if len(unanchored) == 1 else "are"
        lines += ["", f"{plural(len(unanchored), 'new finding')} outside the lines this pull request changed "
                      f"{verb} listed in the infra-review check run."]
    return truncate("\n".join(lines))


def review_payload(
    report: Report,
    diff: DiffIndex,
    existing_fingerprints: Iterable[str],
    cap: int = 30,
    mode: str = "added",
    object_span: SpanOf | None = None,
) -> dict[str, Any] | None:
    """`pulls/create-review` body, or None when there is nothing new to say.

    Inline comments only for new, unsuppressed findings not already commented (by fingerprint)
    whose anchor lies in the diff. Findings of several environments on the same line and rule
    share one comment (one marker each), so a base file does not collect three copies.
    `object_span(finding)` gives the finding's object lines in the new file, for findings about
    something the PR removed.
    """
    seen = set(existing_fingerprints)
    fresh = [f for f in report.findings if f.new and not f.suppressed and f.fingerprint not in seen]
    fresh.sort(key=lambda f: (severity_rank(f.severity), env_order(f.environment), f.origin.file or "",
                              f.origin.line or 0, f.rule))
    groups: dict[tuple[str, int, str], list[Finding]] = {}
    unanchored: list[Finding] = []
    for f in fresh:
        places = list(f.places)
        span = object_span(f) if object_span else None
        if span and f.origin.file:
            places.insert(0, (f.origin.file, span[0], span[1]))
        where = place_anchor(f, diff, places, mode)
        if where is None:
            unanchored.append(f)
        else:
            groups.setdefault((where[0], where[1], f.rule), []).append(f)
    ordered = list(groups.items())
    posted, overflow = ordered[:cap], [g for _, g in ordered[cap:]]
    if not posted and not overflow:
        return None
    comments = []
    for (path, line, _rule), group in posted:
        rng = _suggestion_range(group, path, line, diff, report.readers.get(path))
        comment: dict[str, Any] = {"path": path, "side": "RIGHT", "body": _comment_body(group, rng is not None)}
        if rng and rng[0] != rng[1]:
            comment.update(start_line=rng[0], start_side="RIGHT", line=rng[1])
        else:
            comment["line"] = rng[1] if rng else line
        comments.append(comment)
    payload: dict[str, Any] = {
        "event": "COMMENT",
        "body": _review_body(len(fresh), len(comments), overflow, unanchored),
        "comments": comments,
    }
    if report.head_sha:
        payload["commit_id"] = report.head_sha
    return payload


def written_by(comment: Mapping[str, Any], author: str | None) -> bool:
    """Whether `author`, the App's bot login (`<app-slug>[bot]`), wrote `comment`. Anyone can type a
    marker, so only the author makes a comment ours. A review comment names no App, only its `user`,
    and a Bot user with a `[bot]` login is one no person can register. None accepts every comment: for
    bodies we built ourselves (the dry run), never for comments read from GitHub."""
    if author is None:
        return True
    user = comment.get("user") or {}
    return user.get("type") == "Bot" and str(user.get("login", "")).lower() == author.lower()


def open_fingerprints(existing_comments: Iterable[Mapping[str, Any]], author: str | None = None) -> set[str]:
    """Fingerprints `author` already commented on the PR (from `pulls/list-review-comments`)."""
    return {fp for c in existing_comments if written_by(c, author) for fp in parse_fingerprints(c.get("body"))}


def stale_comments(existing_comments: Iterable[Mapping[str, Any]], current_fingerprints: Iterable[str],
                   author: str | None = None) -> list[int]:
    """Ids of `author`'s comments whose findings are all gone and that nobody replied to: a reply is a
    conversation we must not delete, and what we did not write is never ours to delete."""
    comments = list(existing_comments)
    current = set(current_fingerprints)
    replied = {c.get("in_reply_to_id") for c in comments if c.get("in_reply_to_id") is not None}
    out = []
    for c in comments:
        fps = parse_fingerprints(c.get("body"))
        if (fps and written_by(c, author) and not current.intersection(fps) and c.get("id") not in replied
                and c.get("in_reply_to_id") is None):
            out.append(c["id"])
    return out
