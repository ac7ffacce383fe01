"""Running the rule catalogue: environment rules over one rendered environment, repository rules once
over the repository model, each with the repository's severity overrides, parameters, ignored paths
and suppression annotations applied.

The catalogue itself (`rules.all_rules`) only lists rules; every rule sets `check` (environment
scope, called with an EnvContext) and/or `check_repo` (called once with a RepoScope) on its `RULE`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from bot.config import Config
from bot.model import Finding, ResourceId
from bot.objects import EnvContext
from rules import all_rules
from rules.repo_checks import RepoScope
from rules.suppression import ANNOTATION, Suppression, apply_suppressions, parse_ignore, suppressions_of

if TYPE_CHECKING:
    from bot.deadline import Deadline
    from bot.repo.discover import RepoModel


def run_env_rules(ctx: EnvContext, config: Config | None = None, deadline: Deadline | None = None) -> list[Finding]:
    """Every enabled environment-scope rule over `ctx`, with overrides and suppressions applied.

    `ctx.policy` is expected to be `effective_policy(config)`; findings in ignored paths are dropped,
    suppressed ones are kept with `suppressed=True`.
    """
    if config is None:
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
            if rule.id in config.vendor_skip_rules and f.resource in ctx.vendor_chart:
                continue
            if overridden:
                f.severity = severity
            f.message += _chart_source(f)
            forbidden = rule.id in config.forbid_suppression
            out.append(apply_suppressions(f, by_id.get(f.resource, []) if f.resource else [], forbidden))
    return out


def _chart_source(f: Finding) -> str:
    """Where in a chart a finding on chart output comes from, said in the message (bot.render.chart_origin)."""
    via, detail = f.origin.via, f.origin.detail
    if via in ("values", "values-part") and detail:
        return f" The chart takes it from the values key `{detail}`."
    if via == "enclosing" and detail.startswith("values:"):
        keys = detail.removeprefix("values:")
        return (f" The chart reads it from its values: set `{keys}` here in the HelmRelease's `spec.values`."
                if keys else " The chart reads it from the values key on this line.")
    if via == "chart-default" and detail.startswith("values:"):
        keys = detail.removeprefix("values:")
        return (f" It is the chart's default: override it with `{keys}` here in the HelmRelease's `spec.values`."
                if keys else " It is the chart's default for the values key on this line.")
    if via == "template" or (via == "enclosing" and detail.startswith(("templates/", "charts/")) or "/templates/" in detail):
        return f" It is written by the chart's template `{f.origin.file}`."
    if via == "chart":
        return " The object comes from the HelmRelease's chart."
    return ""


def run_repo_rules(
    model: RepoModel,
    config: Config | None = None,
    changed_files: frozenset[str] | None = None,
    *,
    environment_by_path: Callable[[str], str | None] | None = None,
    deadline: Deadline | None = None,
) -> list[Finding]:
    """Every rule with a repository part (`Rule.check_repo`), once over the whole repository model.

    Each finding carries the environment of the path it is about (see rules.repo_checks.RepoScope).
    `changed_files` limits what only changed files can trigger (scripts and CI for `direct-apply`);
    None means every file. `environment_by_path` maps a repository path to an environment ahead of
    the config's paths and the path conventions. Findings in ignored paths are dropped; an
    `infra-review.io/ignore` annotation on the object a finding names suppresses it as for
    environment rules.
    """
    if config is None:
        config = Config.default()
    scope = RepoScope(model, config, changed_files, environment_by_path)
    out: list[Finding] = []
    for rule in all_rules():
        if deadline is not None:
            deadline.check()
        # Repo rules, and environment rules with a repository part (hardcoded-secret on files no
        # target renders), set `check_repo`.
        check = rule.check_repo
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
