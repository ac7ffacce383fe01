"""`infra-review rules` lists the catalogue; `infra-review explain RULE` says one rule whole."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from typing import Any

ENVIRONMENTS = ("production", "staging", "development")


def _severity(rule: Any) -> str:
    return " / ".join(rule.severity.get(env) or "off" for env in ENVIRONMENTS)


def describe(rule: Any) -> dict[str, Any]:
    """A rule as `rules --format json` gives it."""
    return {"id": rule.id, "title": rule.title, "scope": rule.scope,
            "severity": {env: rule.severity.get(env) for env in ENVIRONMENTS},
            "params": rule.params, "docs": docs_url(rule)}


def docs_url(rule: Any) -> str:
    from bot.publish.report import rule_docs_url

    return rule_docs_url(rule.id, rule.title)


def example_text(example: Any) -> list[str]:
    """A rule's example for a terminal: the bad files, then those the fix changes, each under its path,
    the lines the fix removes marked `-` and those it writes `+`."""
    from rules.examples import changed_files, changed_lines

    out = [f"Example ({example.environment}):", *textwrap.wrap(example.note, width=100, initial_indent="  ",
                                                              subsequent_indent="  ")]
    for side, files in (("bad", example.bad), ("good", changed_files(example))):
        mark = "-" if side == "bad" else "+"
        for path, text in files.items():
            marked = changed_lines(example, path)[side == "good"]
            out += ["", f"  # {side}: {path}"]
            out += [f"  {mark if i in marked else ' '} {line}".rstrip() for i, line in enumerate(text.splitlines())]
    return out


def run_rules(args: argparse.Namespace) -> int:
    from rules import all_rules

    catalogue = all_rules()
    if args.format == "json":
        sys.stdout.write(json.dumps([describe(r) for r in catalogue], indent=2) + "\n")
        return 0
    width = max(len(r.id) for r in catalogue)
    print(f"{'id':<{width}}  {'production / staging / development':<36}  what it flags")
    for r in catalogue:
        print(f"{r.id:<{width}}  {_severity(r):<36}  {r.title}")
    print(f"\n{len(catalogue)} rules; `infra-review explain RULE` says why and how to fix, and its parameters.")
    return 0


def run_explain(args: argparse.Namespace) -> int:
    from rules import all_rules

    catalogue = {r.id: r for r in all_rules()}
    rule = catalogue.get(args.rule)
    if rule is None:
        print(f"infra-review explain: no rule {args.rule!r}; the rules are: {', '.join(catalogue)}", file=sys.stderr)
        return 2
    wrap = textwrap.TextWrapper(width=100)
    out = [f"{rule.id}: {rule.title}", "", f"severity (production / staging / development): {_severity(rule)}", "",
           "Why:", *wrap.wrap(rule.rationale), "", "Fix:", *wrap.wrap(rule.remediation)]
    if rule.example is not None:
        out += ["", *example_text(rule.example)]
    if rule.params:
        out += ["", "Parameters (`rules: {" + rule.id + ": {params: ...}}` in .github/infra-review.yml):"]
        out += [f"  {k}: {json.dumps(v)}" for k, v in rule.params.items()]
    if rule.edge_cases:
        out += ["", "What it judges, exactly:"]
        for case in rule.edge_cases:
            out += textwrap.wrap(case, width=100, initial_indent="  - ", subsequent_indent="    ")
    out += ["", f"More: {docs_url(rule)}"]
    sys.stdout.write("\n".join(out) + "\n")
    return 0


def add_parsers(sub) -> None:
    r = sub.add_parser("rules", help="list every rule: id, per-environment severity, what it flags")
    r.add_argument("--format", choices=("text", "json"), default="text")
    r.set_defaults(func=run_rules)
    e = sub.add_parser("explain", help="why a rule exists, how to fix what it flags, its parameters")
    e.add_argument("rule", help="a rule id (see `infra-review rules`)")
    e.set_defaults(func=run_explain)
