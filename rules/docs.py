"""Generate docs/rules.md (and the README's rule table) from the rule modules and policy.yaml.

python -m rules.docs           rewrite docs/rules.md
python -m rules.docs --check   exit 1 if docs/rules.md is stale
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bot.generated import write_or_check
from bot.model import get_path
from bot.policy import default_policy
from bot.publish.report import rule_anchor
from rules import all_rules
from rules.base import Example, Rule
from rules.examples import changed_files
from rules.suppression import ANNOTATION

DOC_PATH = Path(__file__).resolve().parents[1] / "docs" / "rules.md"
ENV_ORDER = ("production", "staging", "development")

GENERAL = f"""\
## How rules are applied

- Rules run on **rendered** objects (what Flux would apply), once per environment, and each finding is
  mapped to the source file and line that set the value. A missing field is located where adding it
  fixes it: where the pull request or a patch removed it, else at its deepest existing ancestor (the
  base's container, unless only an overlay has the block the field belongs in).
- **Third-party objects** — from files that declare themselves generated (`DO NOT EDIT`, `Code
  generated`), Flux's own install (`flux-system/gotk-components.yaml`), `vendor/` and `third_party/`
  folders, or the repository's `third_party:` globs — are not judged by the rules for the team's own
  workloads (marked below); the security rules still apply. The summary says how many there were.
- **Workloads** are Deployment, StatefulSet, DaemonSet, ReplicaSet (group `apps`, or the legacy
  `extensions`), Job, CronJob (`batch`) and Pod (core). A kind only counts with its real API group:
  `apiVersion: v1` + `kind: Deployment` is not a Deployment (the API server rejects it), and OpenShift's
  `DeploymentConfig` is not a workload here (it still gets `missing-labels`). **Long-running** means all
  workloads but Jobs and CronJobs.
- An environment not in the table below is judged with the production column and the production
  row of the environment table (fail safe), unless `.github/infra-review.yml` defines it.
- **Suppression**: the annotation `{ANNOTATION}: "<rule>[,<rule>]: <reason>"` on a resource or its pod
  template suppresses those rules for that resource (several entries may be separated by `;` or new
  lines). Suppressed findings are kept, marked `suppressed` with the reason. An entry without a reason
  does not suppress: the finding stays active and its message says the annotation needs a reason. A
  repository can forbid suppression of chosen rules with `forbid_suppression:`; the finding then says
  so too.
- **Examples**: each rule's example below is a test: the rule flags the first version and not the fixed
  one, checked as `infra-review check --offline` checks the files (a repository, or plain manifests).
- **Per-repo settings** (`.github/infra-review.yml`): `rules.<id>.severity` (one value, or per
  environment; `off` disables), `rules.<id>.params` (the parameters listed per rule), `policy:` (overrides
  the table and lists below: mappings merge, lists replace), `environments.aliases`/`paths`, `ignore`
  (globs; findings located in matching files are dropped), `fail_on: new|all`, `comments: added|diff|none`,
  `forbid_suppression`, `third_party` (globs), `creators`, `fetch` (`enabled`, `allow`),
  `flux.no_remote_bases`. Any unknown key is an error naming the key.
"""


def _sev(value: str | None) -> str:
    return value or "off"


def _policy_section(policy: dict[str, Any]) -> list[str]:
    envs = policy.get("environments") or {}
    names = [e for e in ("development", "staging", "production") if e in envs]
    out = ["## Default policy (`rules/policy.yaml`)", "", "| setting | " + " | ".join(names) + " |"]
    out.append("|---|" + "---|" * len(names))
    rows: list[tuple[str, tuple[str, ...]]] = [("replicas (minimum)", ("replicas",))]
    rows += [(f"{part}.{res}", (part, res)) for part in ("requests", "limits") for res in ("cpu", "memory")]
    rows.append(("log level", ("log_level",)))
    for label, path in rows:
        out.append(f"| {label} | " + " | ".join(str(get_path(envs[n], path)) for n in names) + " |")
    labels = policy.get("labels") or {}
    out += [
        "",
        "Required labels: " + ", ".join(f"`{x}`" for x in labels.get("required") or [])
        + f"; `app.kubernetes.io/managed-by` must be `{labels.get('managed_by')}`.",
        "",
        "Environment aliases: " + ", ".join(f"`{a}` → {e}" for a, e in (policy.get("aliases") or {}).items()) + ".",
        "",
        "Sensitive-name patterns (case-insensitive substrings): "
        + ", ".join(f"`{x}`" for x in policy.get("sensitive_names") or []) + ".",
        "",
        "Credential-shaped values:",
        "",
    ]  # fmt: skip
    out += [f"- {p['name']}: `{p['regex']}`" for p in policy.get("credential_patterns") or []]
    return out + [""]


def _fenced(files: dict[str, str]) -> list[str]:
    out: list[str] = []
    for path, text in files.items():
        out += ["```yaml", f"# {path}", *text.splitlines(), "```", ""]
    return out


def _example_section(example: Example) -> list[str]:
    """The bad files, then those the fix changes (`rules.examples`: a test holds the rule to both)."""
    return [f"**Example.** {example.note}".rstrip(), "", f"Flagged in {example.environment}:", "",
            *_fenced(example.bad), "Fixed (the files that change):", "", *_fenced(changed_files(example))]


def _rule_section(rule: Rule) -> list[str]:
    sev = " / ".join(_sev(rule.severity.get(e)) for e in ENV_ORDER)
    out = [
        f"### `{rule.id}`: {rule.title}",
        "",
        f"- Severity (production / staging / development): {sev}",
        f"- Scope: {'rendered objects, per environment' if rule.scope == 'env' else 'repository (files, Flux objects, builds)'}",
        *(["- Judges the team's own workloads: third-party objects are skipped"] if rule.own_workloads else []),
        "",
        f"**Why it matters.** {rule.rationale}",
        "",
        f"**How to fix.** {rule.remediation}",
        "",
        *(_example_section(rule.example) if rule.example else []),
    ]
    if rule.params:
        out += ["**Parameters** (`rules." + rule.id + ".params`):", ""]
        out += [f"- `{k}`: default `{json.dumps(v)}`" for k, v in rule.params.items()]
        out.append("")
    if rule.edge_cases:
        out += ["**Edge cases.**", ""] + [f"- {e}" for e in rule.edge_cases] + [""]
    return out


def render_markdown() -> str:
    rules = all_rules()
    lines = [
        "# Rules",
        "",
        "<!-- Generated by `python -m rules.docs` from rules/*.py and rules/policy.yaml; do not edit. -->",
        "",
        "Rule ids are a public contract: they appear in JSON/SARIF output, suppressions and config.",
        "",
        readme_table(link_prefix=""),
        "",
        GENERAL,
    ]
    lines += _policy_section(default_policy())
    lines += ["## Rules", ""]
    for rule in rules:
        lines += _rule_section(rule)
    return "\n".join(lines).rstrip("\n") + "\n"


def readme_table(link_prefix: str = "docs/rules.md") -> str:
    """The rule table for the README: id (linked to its section), title, severities."""
    out = ["| id | what it flags | production / staging / development |", "|---|---|---|"]
    for rule in all_rules():
        sev = " / ".join(_sev(rule.severity.get(e)) for e in ENV_ORDER)
        out.append(f"| [`{rule.id}`]({link_prefix}#{rule_anchor(rule.id, rule.title)}) | {rule.title} | {sev} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rules.docs", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/rules.md is stale")
    args = parser.parse_args(argv)
    return write_or_check(DOC_PATH, render_markdown(), "python -m rules.docs", args.check)


if __name__ == "__main__":
    sys.exit(main())
