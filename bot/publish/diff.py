"""The rendered diff for people and tools: one line per environment, then each object's diff.

`environment_line` is what the check run's summary starts with; `render_markdown` is the check run's
collapsible per-object diffs within GitHub's limit (whole objects left out, counted, never a cut
line); `render_text` and `render_json` are the CLI's, always whole. Secrets were masked when the diff
was computed (bot.diff.mask), so every format is safe to publish.
"""

from __future__ import annotations

import json
from typing import Any

from bot.diff.model import Changes, EnvironmentChanges, ObjectChange, resource_name
from bot.publish import escape
from bot.publish.report import plural

MAX_LINE_OBJECTS = 6
HEADING = "## What changes in each environment\n"


def describe(change: ObjectChange) -> str:
    """`Deployment/api: image 2.1.0 → 2.2.0, replicas 3 → 4`, `Service/new added`."""
    name = resource_name(change.resource)
    if change.status != "changed":
        return f"{name} {change.status}"
    said = list(change.meaning)
    if change.renamed_from:
        said.insert(0, f"renamed from {change.renamed_from}")
    return f"{name}: {', '.join(said)}" if said else f"{name} changed"


def _rank(change: ObjectChange) -> int:
    """What a reviewer reads first: workloads and releases, then the rest; additions and removals last."""
    if change.status != "changed":
        return 2
    return 0 if change.resource.kind in _FIRST else 1


_FIRST = ("Deployment", "StatefulSet", "DaemonSet", "CronJob", "Job", "HelmRelease", "HorizontalPodAutoscaler")


def environment_line(env: EnvironmentChanges) -> str:
    """`production: 3 objects change — Deployment/api: image 2.1.0 → 2.2.0; Service/new added`."""
    objects = sorted(env.objects, key=_rank)
    shown = "; ".join(describe(c) for c in objects[:MAX_LINE_OBJECTS])
    more = f"; and {len(objects) - MAX_LINE_OBJECTS} more" if len(objects) > MAX_LINE_OBJECTS else ""
    verb = "changes" if len(objects) == 1 else "change"
    return f"{env.name}: {plural(len(objects), 'object')} {verb} — {shown}{more}"


def summary_lines(changes: Changes) -> list[str]:
    if changes.empty:
        return ["No object changes in any environment."]
    return [environment_line(env) for env in changes.environments]


def render_text(changes: Changes) -> str:
    lines = summary_lines(changes)
    for env in changes.environments:
        for target in env.targets:
            lines += ["", f"== {env.name}: {target.target} =="]
            for change in target.objects:
                said = describe(change) if change.status == "changed" else resource_name(change.resource)
                lines.append(f"{change.status:<7} {said}")
                lines += ["    " + line for line in change.diff.splitlines()]
    return escape.log_lines("\n".join(lines) + "\n")


def to_json(changes: Changes, tool: dict[str, Any]) -> dict[str, Any]:
    """The public contract of `diff --format json` (version 1)."""
    return {"version": 1, "tool": tool, "environments": [env.to_json() for env in changes.environments]}


def render_json(changes: Changes, tool: dict[str, Any]) -> str:
    return json.dumps(to_json(changes, tool), indent=2) + "\n"


def _details(env: str, target: str, change: ObjectChange) -> str:
    title = escape.inline(f"{env} · {target} · {describe(change)}")
    if not change.diff:
        return f"- {title}"
    fence = escape.fence(change.diff)
    return (f"<details><summary>{title}</summary>\n\n{fence}diff\n{change.diff}\n{fence}\n\n</details>")


def render_markdown(changes: Changes, limit: int) -> str:
    """Every object as a collapsible diff (added and removed ones as a line), in `limit` characters at
    most: objects that do not fit are left out whole and counted."""
    if changes.empty:
        return ""
    head = HEADING
    blocks = [_details(env.name, t.target, c) for env in changes.environments for t in env.targets for c in t.objects]
    note = "\n\n_{} not shown here (GitHub allows {:,} characters): `infra-review diff` shows them all._"
    room = limit - len(head) - len(note.format(plural(len(blocks), "more object"), limit))
    shown: list[str] = []
    used = 0
    for block in blocks:
        if used + len(block) + 2 > room:
            break
        shown.append(block)
        used += len(block) + 2
    text = head + "\n\n".join(shown)
    left = len(blocks) - len(shown)
    return text + (note.format(plural(left, "more object"), limit) if left else "")
