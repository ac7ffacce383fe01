"""The rule catalogue: one module per rule id, each defining `RULE = Rule(...)`.

The registry finds them by walking this package, loads the seed policy from `policy.yaml`, and runs
the environment-scope rules over one rendered environment, applying the repository's severity
overrides, ignored paths and suppression annotations.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from bot.model import Finding, ResourceId
from bot.objects import EnvContext
from rules.base import Rule
from rules.suppression import ANNOTATION, Suppression, apply_suppressions, parse_ignore, suppressions_of

if TYPE_CHECKING:
    from bot.config import Config
    from bot.deadline import Deadline
    from bot.repo.discover import RepoModel

POLICY_FILE = Path(__file__).with_name("policy.yaml")

# The order of the catalogue in spec/rules.md, which docs and reports follow.
CATALOGUE_ORDER = (
    "hardcoded-secret",
    "sops-coverage",
    "missing-resources",
    "latest-tag",
    "missing-probes",
    "single-replica",
    "env-defaults",
    "missing-network-policy",
    "missing-labels",
    "direct-apply",
    "flux-config",
    "build-error",
    "remote-unchecked",
    "probe-port",
    "service-selector",
    "route-backend",
)


@cache
def _registry() -> dict[str, Rule]:
    found: dict[str, Rule] = {}
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        module = importlib.import_module(f"{__name__}.{info.name}")
        rule = getattr(module, "RULE", None)
        if isinstance(rule, Rule):
            if rule.id.replace("-", "_") != info.name:
                raise RuntimeError(
                    f"rules/{info.name}.py defines rule {rule.id!r}; the module must be named after it"
                )
            found[rule.id] = rule
    rank = {rid: i for i, rid in enumerate(CATALOGUE_ORDER)}
    return dict(sorted(found.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))


def all_rules() -> list[Rule]:
    return list(_registry().values())


def get_rule(rule_id: str) -> Rule:
    """The rule with this id; KeyError names the id when there is none."""
    try:
        return _registry()[rule_id]
    except KeyError:
        raise KeyError(f"unknown rule id {rule_id!r}") from None


@cache
def _policy_text() -> str:
    return POLICY_FILE.read_text(encoding="utf-8")


def default_policy() -> dict[str, Any]:
    """A fresh copy of the seed policy (callers may merge into it)."""
    return yaml.safe_load(_policy_text())


def run_env_rules(ctx: EnvContext, config: Config | None = None, deadline: Deadline | None = None) -> list[Finding]:
    """Every enabled environment-scope rule over `ctx`, with overrides and suppressions applied.

    `ctx.policy` is expected to be `effective_policy(config)`; findings in ignored paths are dropped,
    suppressed ones are kept with `suppressed=True`.
    """
    if config is None:
        from bot.config import Config

        config = Config.default()
    by_id: dict[ResourceId, list[Suppression]] = {}
    for obj in ctx.objects:
        by_id.setdefault(obj.id, []).extend(suppressions_of(obj))
    out: list[Finding] = []
    for rule in all_rules():
        if deadline is not None:
            deadline.check()
        check = rule.check
        if rule.scope != "env" or check is None:
            continue
        severity = config.severity_for(rule, ctx.environment)
        if severity is None:
            continue
        overridden = config.has_severity_override(rule.id, ctx.environment)
        effective = replace(rule, params={**rule.params, **config.params_for(rule.id)})
        for f in check(ctx, effective):
            if config.is_ignored(f.origin.file) or (rule.own_workloads and f.resource in ctx.third_party):
                continue
            if overridden:
                f.severity = severity
            forbidden = rule.id in config.forbid_suppression
            out.append(apply_suppressions(f, by_id.get(f.resource, []) if f.resource else [], forbidden))
    return out


def run_repo_rules(
    model: RepoModel,
    config: Config | None = None,
    changed_files: frozenset[str] | None = None,
    *,
    environment_by_path: Callable[[str], str | None] | None = None,
    deadline: Deadline | None = None,
) -> list[Finding]:
    """Every enabled repository-scope rule, once over the whole repository model.

    A repo rule module defines `check_repo(scope, rule)` (see rules.repo_checks.RepoScope); each finding
    carries the environment of the path it is about. `changed_files` limits what only changed files
    can trigger (scripts and CI for `direct-apply`); None means every file. `environment_by_path`
    maps a repository path to an environment ahead of the config's paths and the path conventions.
    Findings in ignored paths are dropped; an `infra-review.io/ignore` annotation on the object a
    finding names suppresses it as for environment rules.
    """
    from rules.repo_checks import RepoScope

    if config is None:
        from bot.config import Config

        config = Config.default()
    scope = RepoScope(model, config, changed_files, environment_by_path)
    out: list[Finding] = []
    for rule in all_rules():
        if deadline is not None:
            deadline.check()
        # Repo rules, and environment rules with a repository part (hardcoded-secret on files no
        # target renders), define `check_repo`.
        check = getattr(importlib.import_module(f"{__name__}.{rule.id.replace('-', '_')}"), "check_repo", None)
        if check is None:
            continue
        effective = replace(rule, params={**rule.params, **config.params_for(rule.id)})
        forbidden = rule.id in config.forbid_suppression
        for f in check(scope, effective):
            if config.is_ignored(f.origin.file):
                continue
            out.append(apply_suppressions(f, _annotated_suppressions(model, f), forbidden))
    return out


def _annotated_suppressions(model: RepoModel, f: Finding) -> list[Suppression]:
    """Suppressions written on the source object a repo finding names (found by resource id in its file)."""
    from bot.yamlpos import YamlError

    if f.resource is None or not f.origin.file:
        return []
    try:
        docs = model.tree.docs(f.origin.file)
    except YamlError:
        return []
    for doc in docs:
        if isinstance(doc.data, dict) and ResourceId.of(doc.data) == f.resource:
            annotations = (doc.data.get("metadata") or {}).get("annotations")
            if isinstance(annotations, dict) and ANNOTATION in annotations:
                return parse_ignore(annotations[ANNOTATION])
    return []
