"""The report for people: each source problem said once.

Findings are grouped by the file to change, then into entries: one rule on one resource at one source
line, across every environment it fails in, so a base line that fails in three environments is one
entry naming the three. What every finding of a rule says alike (its consequence, `… so this object is
invisible to them in production`) and the fix they share are said once, in a footer per rule, and the
report ends with a count per rule like the check run's. Colour is a parameter: callers decide it from
the terminal and `NO_COLOR`.
"""

from __future__ import annotations

import posixpath
import re
import textwrap
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import groupby

from bot.model import Finding
from bot.publish import escape
from bot.publish.report import (
    Report,
    env_order,
    headline,
    plural,
    resource_label,
    severity_rank,
    sort_key,
)

_COLOURS = {"error": "31", "warning": "33", "notice": "36", "new": "1;35", "dim": "2", "head": "1"}
NO_FILE = "(no file)"
WIDTH = 100
# Where a finding's sentence turns from what is wrong to why it matters (`…, so traffic …`).
_CLAUSE = re.compile(r"\. |; |: |, so ")
_MIN_SHARED = 20
_ENV = "\x00"


def _paint(text: str, style: str, colour: bool) -> str:
    return f"\x1b[{_COLOURS[style]}m{text}\x1b[0m" if colour else text


def location(f: Finding) -> str:
    o = f.origin
    if not o.file:
        return f"target {f.target}" if f.target else NO_FILE
    return f"{o.file}:{o.line}" if o.line else o.file


def _env_name(env: str | None) -> str:
    return env or "repository"


def subject(f: Finding) -> str:
    """The message without the resource it starts by naming (`Deployment/shop/api: …`,
    `Container 'api' of Deployment/shop/api has …`): the entry names it already."""
    if f.resource is None:
        return f.message
    rid = str(f.resource)
    leads = ([f"Container '{f.container}' of {rid}"] if f.container else []) + [rid]
    for lead in leads:
        for sep in (": ", " "):
            if f.message.startswith(lead + sep):
                return f.message[len(lead) + len(sep):]
    return f.message


def _generic(text: str, env: str | None) -> str:
    return re.sub(rf"\b{re.escape(env)}\b", _ENV, text) if env else text


def _specific(text: str, envs: Iterable[str | None]) -> str:
    """`text` said of these environments (`… invisible to them in production, staging`)."""
    return text.replace(_ENV, ", ".join(_env_name(e) for e in envs))


def shared_tail(messages: list[str]) -> tuple[str, str] | None:
    """The clause every message ends with, and the separator before it: said once per rule. None
    when the messages share no whole clause (or there is one message, which is said whole)."""
    if len(messages) < 2:
        return None
    common = _common_prefix([m[::-1] for m in messages])[::-1]
    first = messages[0]
    for m in _clauses(first):
        if m.start() >= len(first) - len(common) and len(first) - m.end() >= _MIN_SHARED:
            return m.group(), first[m.end():]
    return None


def shared_lead(whats: list[str]) -> str | None:
    """What every finding of a rule says first (all of it, when they say the same), to be said once."""
    if len(whats) < 2:
        return None
    common = _common_prefix(whats)
    if all(w == common for w in whats):
        return common or None
    cuts = [m for m in _clauses(whats[0]) if m.end() <= len(common) and m.start() >= _MIN_SHARED]
    return whats[0][: cuts[-1].start()] if cuts else None


def _clauses(text: str) -> list[re.Match[str]]:
    """Clause boundaries outside code spans."""
    return [m for m in _CLAUSE.finditer(text) if text[: m.start()].count("`") % 2 == 0]


def _common_prefix(texts: list[str]) -> str:
    first, last = min(texts), max(texts)
    n = next((i for i, (a, b) in enumerate(zip(first, last, strict=False)) if a != b), min(len(first), len(last)))
    return first[:n]


@dataclass(frozen=True)
class RuleNotes:
    """What a report says once for a rule: the lead and the tail all its findings share, the usual fix."""

    lead: str | None
    tail: tuple[str, str] | None
    fix: str

    def _generic_what(self, f: Finding) -> str:
        text = _generic(subject(f), f.environment)
        if self.tail and text.endswith("".join(self.tail)):
            text = text[: -len("".join(self.tail))]
        return text

    def what(self, f: Finding) -> str:
        """The finding's own part of its message ('' when the rule's lead says it all), with its
        environment's name left as a placeholder so environments that say the same are said once."""
        text = self._generic_what(f)
        if self.lead and text.startswith(self.lead):
            text = text[len(self.lead):]
            sep = _CLAUSE.match(text)
            text = text[sep.end():] if sep else text
        return text


def rule_notes(findings: Iterable[Finding]) -> dict[str, RuleNotes]:
    by_rule: dict[str, list[Finding]] = {}
    for f in findings:
        by_rule.setdefault(f.rule, []).append(f)
    out = {}
    for rule, group in by_rule.items():
        fixes = Counter(f.remediation for f in group if f.remediation)
        fix = fixes.most_common(1)[0][0] if fixes else ""
        tail = shared_tail([_generic(subject(f), f.environment) for f in group])
        partial = RuleNotes(None, tail, fix)
        out[rule] = RuleNotes(shared_lead([partial._generic_what(f) for f in group]), tail, fix)
    return out


@dataclass(frozen=True)
class Entry:
    """One source problem: the findings of one rule on one resource and field at one source line,
    in every environment that has it (production first)."""

    findings: tuple[Finding, ...]

    @property
    def head(self) -> Finding:
        return self.findings[0]

    @property
    def environments(self) -> list[str | None]:
        return list(dict.fromkeys(f.environment for f in self.findings))


def _entry_key(f: Finding) -> tuple:
    """One source line's problem: an overlay renders a base's object in its own namespace (or with a
    name prefix), so the kind, not the name, says it is the same object."""
    r = f.resource
    rid = (r.group, r.kind) if r else (f.target or "",)
    return (f.origin.file or "", f.origin.line or 0, f.rule, rid, f.container or "", f.field or "")


def entries(findings: Iterable[Finding]) -> list[Entry]:
    """Findings merged into entries, in file and line order (the worst first on one line)."""
    groups: dict[tuple, list[Finding]] = {}
    for f in sorted(findings, key=lambda f: (env_order(f.environment), sort_key(f))):
        groups.setdefault(_entry_key(f), []).append(f)
    ordered = sorted(groups.values(), key=lambda g: (
        g[0].origin.file or "\uffff", g[0].origin.line or 0, min(severity_rank(f.severity) for f in g), g[0].rule))
    return [Entry(tuple(g)) for g in ordered]


def _marker(entry: Entry, colour: bool) -> str:
    new = [f for f in entry.findings if f.new]
    if not new:
        return _paint("existing", "dim", colour)
    if len(new) == len(entry.findings):
        return _paint("NEW", "new", colour)
    envs = ", ".join(_env_name(e) for e in dict.fromkeys(f.environment for f in new))
    return _paint(f"NEW in {envs}", "new", colour)


def _where(f: Finding) -> str:
    """The entry's place inside its folder group: `rbac.yaml:5`."""
    o = f.origin
    if not o.file:
        return location(f)
    name = posixpath.basename(o.file)
    return f"{name}:{o.line}" if o.line else name


def _entry_lines(entry: Entry, notes: RuleNotes, many_envs: bool, colour: bool, widths: tuple[int, int]) -> list[str]:
    head = entry.head
    worst = min((f.severity for f in entry.findings), key=severity_rank)
    parts = [f"  {_where(head):<{widths[0]}}", _paint(f"{worst:<7}", worst, colour), f"{head.rule:<{widths[1]}}"]
    label = _resources(entry)
    if label:
        parts.append(label)
    firsts = {env: next(f for f in entry.findings if f.environment == env) for env in entry.environments}
    if many_envs:
        parts.append("[" + ", ".join(_env_name(env) + ("" if f.severity == worst else f": {f.severity}")
                                     for env, f in firsts.items()) + "]")
    parts.append(_marker(entry, colour))
    out = ["  ".join(parts)]
    if len({notes.what(f) for f in entry.findings}) == 1:
        what = _specific(notes.what(head), entry.environments)
        out += [f"      {what}"] if what else []
    else:
        out += [f"      {_env_name(env)}: {_specific(notes.what(f), [env])}" for env, f in firsts.items()]
    for fix in dict.fromkeys(f.remediation for f in entry.findings if f.remediation and f.remediation != notes.fix):
        out.append(f"      fix: {fix}")
    for s in dict.fromkeys(f.suggestion for f in entry.findings if f.suggestion):
        span = f"line {s.line}" if s.end_line == s.line else f"lines {s.line}-{s.end_line}"
        out.append(f"      suggested replacement for {s.file} {span}:")
        out += ["        | " + line for line in s.text.rstrip("\n").splitlines()]
    return out


def _resources(entry: Entry) -> str:
    """The entry's resource, named once: `Deployment api, container api` when environments render it
    in their own namespaces, each distinct name when they rename it."""
    labels = list(dict.fromkeys(resource_label(f) for f in entry.findings))
    head = entry.head
    if len(labels) <= 1 or head.resource is None:
        return labels[0] if labels else ""
    names = ", ".join(dict.fromkeys(f.resource.name for f in entry.findings if f.resource))
    return f"{head.resource.kind} {names}" + (f", container {head.container}" if head.container else "")


def _folder(entry: Entry) -> str:
    file = entry.head.origin.file
    return (posixpath.dirname(file) or ".") + "/" if file else NO_FILE


def _suppressed_line(entry: Entry, many_envs: bool) -> str:
    f = entry.head
    what = resource_label(f)
    reason = f" ({f.suppression_reason})" if f.suppression_reason else ""
    envs = " [" + ", ".join(_env_name(e) for e in entry.environments) + "]" if many_envs else ""
    return f"  {location(f)}  {f.rule}{' ' + what if what else ''}{reason}{envs}"


def _wrapped(label: str, text: str) -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=f"    {label}: ", subsequent_indent="      ",
                         break_on_hyphens=False, break_long_words=False)


def _footer(report: Report, active: list[Finding], notes: dict[str, RuleNotes], colour: bool) -> list[str]:
    """Each rule once: its title, why its findings matter (in their own words) and the usual fix."""
    out = [_paint("What each rule found, why it matters, and the fix:", "head", colour)]
    by_rule: dict[str, list[Finding]] = {}
    for f in active:
        by_rule.setdefault(f.rule, []).append(f)
    for rule in sorted(by_rule, key=lambda r: (min(severity_rank(f.severity) for f in by_rule[r]), r)):
        meta = report.rules.get(rule)
        out.append(f"  {rule}" + (f": {meta.title}" if meta else ""))
        envs = sorted({f.environment for f in by_rule[rule]}, key=env_order)
        said = notes[rule]
        for label, text in (("each", said.lead), ("why", said.tail[1] if said.tail else None)):
            out += _wrapped(label, _specific(text, envs)) if text else []
        if notes[rule].fix:
            out += _wrapped("fix", notes[rule].fix)
    return out + ["  `infra-review explain RULE` says more about a rule: its parameters and an example.", ""]


def count_table(findings: list[Finding]) -> list[str]:
    """Per rule: its worst severity and how many findings are new, existing and suppressed."""
    rows: dict[str, list] = {}
    for f in findings:
        row = rows.setdefault(f.rule, [f.severity, 0, 0, 0])
        if severity_rank(f.severity) < severity_rank(row[0]):
            row[0] = f.severity
        row[3 if f.suppressed else 1 if f.new else 2] += 1
    width = max([len("rule")] + [len(r) for r in rows])
    out = [f"{'rule':<{width}}  severity  {'new':>5}  {'existing':>8}  {'suppressed':>10}"]
    for rule, (sev, new, old, sup) in sorted(rows.items(), key=lambda kv: (severity_rank(kv[1][0]), kv[0])):
        out.append(f"{rule:<{width}}  {sev:<8}  {new:>5}  {old:>8}  {sup:>10}")
    return out


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
    active = [f for f in report.findings if not f.suppressed]
    many_envs = len({f.environment for f in report.findings}) > 1
    notes = rule_notes(active)
    for folder, grouped in groupby(entries(active), key=_folder):
        group = list(grouped)
        widths = (max(len(_where(e.head)) for e in group), max(len(e.head.rule) for e in group))
        lines.append(_paint(folder, "head", colour))
        for entry in group:
            lines += _entry_lines(entry, notes[entry.head.rule], many_envs, colour, widths)
    suppressed = entries(f for f in report.findings if f.suppressed)
    if suppressed:
        lines.append(_paint(f"suppressed ({len(suppressed)}):", "dim", colour))
        lines += [_paint(_suppressed_line(e, many_envs), "dim", colour) for e in suppressed]
    if lines:
        lines.append("")
    if active:
        lines += _footer(report, active, notes, colour)
    if report.findings:
        lines += count_table(report.findings) + [""]
    failed = [t for t in report.targets if t.status != "ok"]
    if failed:
        lines.append("targets that failed to build: " + ", ".join(t.path for t in failed))
    lines += [f"note: {note}" for note in report.notes]
    lines.append(summary_line(report, fail_on))
    return escape.log_lines("\n".join(lines) + "\n")
