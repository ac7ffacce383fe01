"""One pipeline for the CLI and the App: source → graph → render → rules → compare.

Pure over trees on disk: no network. The App fetches the two trees; `check` and `review` read
them locally; both end in a `Report` that any reporter can print or publish.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rules as rulebook
from bot import __version__
from bot.config import Config, effective_policy
from bot.deadline import Deadline
from bot.model import Finding, Origin, ResourceId, Target
from bot.objects import EnvContext, RenderedObject
from bot.plain import load_plain
from bot.publish.report import Report, TargetStatus
from bot.render.build import DiskCache, Rendered, Renderer
from bot.render.kustomize import Kustomize, find_kustomize
from bot.repo.discover import RepoModel
from bot.repo.tree import RepoTree
from bot.yamlpos import YamlError
from rules.hardcoded_secret import redact, secret_values

DEFAULT_ENVIRONMENT = "production"


@dataclass
class Side:
    """The findings of one tree (the PR head or its base)."""

    findings: list[Finding] = field(default_factory=list)
    statuses: list[TargetStatus] = field(default_factory=list)
    rendered: list[Rendered] = field(default_factory=list)
    model: RepoModel | None = None


def make_model(root: Path, config: Config) -> RepoModel:
    model = RepoModel(RepoTree(root), aliases=config.aliases, default_environment=DEFAULT_ENVIRONMENT)
    model.env_override = config.env_for_path
    model.ignored = config.is_ignored if config.ignore else None
    return model


def is_repository(model: RepoModel) -> bool:
    """A tree is treated as a GitOps repository when it has something to build."""
    return bool(model.kustomization_dirs or model.flux_kustomizations())


def _build_error(target: Target, rendered: Rendered, model: RepoModel, policy: dict[str, Any]) -> Finding:
    """The renderer's error as a finding; renderers echo their inputs (a generator literal without
    `=`), so the message is redacted like every finding about secrets."""
    rule = rulebook.get_rule("build-error")
    err = rendered.error
    assert err is not None
    env = target.environment or DEFAULT_ENVIRONMENT
    said = redact(err.message, secret_values(model.tree, model.inputs(target).files, policy), policy)
    return Finding(
        rule=rule.id, severity=rule.severity_for(env) or "error", environment=env,
        message=f"`{target.path}` cannot be built: {said}. Flux would fail to apply it, "
                f"and nothing in it could be checked.",
        remediation=rule.remediation, target=target.path,
        origin=Origin(err.file, err.line, err.line, "build"),
    )


def environment_contexts(rendered: Iterable[Rendered], model: RepoModel | None, config: Config,
                         changed: frozenset[str] | None) -> list[EnvContext]:
    """Group rendered objects by environment; an object rendered by two targets counts once."""
    by_env: dict[str, dict[ResourceId, RenderedObject]] = {}
    for r in rendered:
        env = r.target.environment or DEFAULT_ENVIRONMENT
        bucket = by_env.setdefault(env, {})
        for ro in r.objects:
            bucket.setdefault(ro.id, ro)
    policy = effective_policy(config)
    read = model.tree.lines if model else (lambda _f: [])
    return [EnvContext(env, list(objs.values()), policy, repo=model, read_lines=read, changed_files=changed)
            for env, objs in sorted(by_env.items())]


def check_repository(root: Path, config: Config, *, targets: list[Target] | None = None,
                     changed: frozenset[str] | None = None, kustomize: Kustomize | None = None,
                     cache: DiskCache | None = None, deadline: Deadline | None = None) -> Side:
    """Render the given targets (default: all) of a repository and run every rule; Stopped as soon
    as `deadline` says so (between targets, during a build, between rules)."""
    deadline = deadline or Deadline()
    model = make_model(root, config)
    side = Side(model=model)
    todo = list(model.targets if targets is None else targets)
    todo = [t for t in todo if not config.is_ignored(t.path)]
    renderer = Renderer(model, kustomize=kustomize, cache=cache, deadline=deadline)
    side.rendered = renderer.render_all(todo)
    policy = effective_policy(config)
    for r in side.rendered:
        side.statuses.append(TargetStatus(r.target.path, r.target.environment or DEFAULT_ENVIRONMENT,
                                          "ok" if r.ok else "error", len(r.objects)))
        if not r.ok:
            side.findings.append(_build_error(r.target, r, model, policy))
    for ctx in environment_contexts([r for r in side.rendered if r.ok], model, config, changed):
        side.findings.extend(rulebook.run_env_rules(ctx, config, deadline=deadline))
    side.findings.extend(rulebook.run_repo_rules(model, config, changed_files=changed, deadline=deadline))
    attach_places(side.findings, side.rendered)
    return side


def attach_places(findings: list[Finding], rendered: list[Rendered]) -> None:
    """Give each finding the documents that define or patch its resource (for review anchors)."""
    index: dict[tuple[str, ResourceId], RenderedObject] = {}
    for r in rendered:
        for ro in r.objects:
            index.setdefault((r.target.path, ro.id), ro)
    for f in findings:
        ro = index.get((f.target or "", f.resource)) if f.resource else None
        if ro is not None:
            f.places = tuple(ro.places())


def check_plain(path: Path, environment: str, config: Config) -> Side:
    """A file or folder of plain manifests, checked as one rendered environment."""
    side = Side()
    try:
        objects = load_plain(path)
    except YamlError as exc:
        rule = rulebook.get_rule("build-error")
        side.findings.append(Finding(rule.id, "error", environment, f"{exc.message}", rule.remediation,
                                     origin=Origin(path.name, exc.line, exc.line, "build")))
        return side
    root = path if path.is_dir() else path.parent
    tree = RepoTree(root)
    ctx = EnvContext(environment, objects, effective_policy(config), read_lines=tree.lines)
    side.findings.extend(rulebook.run_env_rules(ctx, config))
    side.statuses.append(TargetStatus(path.name, environment, "ok", len(objects)))
    return side


def compare(head: list[Finding], base: list[Finding]) -> list[Finding]:
    """Mark head findings new unless the base has one with the same fingerprint."""
    seen = {f.fingerprint for f in base}
    for f in head:
        f.new = f.fingerprint not in seen
    return head


def removal_point(before: list[str], after: list[str], line: int) -> int | None:
    """Where line `line` of a file's old text went in its new text, when the change removed or
    replaced it: the last line kept before the removal (the first line of a replacement)."""
    matcher = difflib.SequenceMatcher(None, before, after, autojunk=False)
    for tag, i1, i2, j1, _j2 in matcher.get_opcodes():
        if i1 < line <= i2 and tag in ("delete", "replace"):
            return j1 + 1 if tag == "replace" else max(j1, 1)
    return None


def relocate_removed(findings: list[Finding], head: Side, base: Side) -> None:
    """A new finding about a field that the base had and the pull request removed sits where it was
    removed, in every output alike, rather than where it would be added anew."""
    def objects(side: Side) -> dict[tuple[str, str, ResourceId], RenderedObject]:
        index: dict[tuple[str, str, ResourceId], RenderedObject] = {}
        for r in side.rendered:
            for ro in r.objects:
                index.setdefault((r.target.path, r.target.environment or DEFAULT_ENVIRONMENT, ro.id), ro)
        return index

    if head.model is None or base.model is None:
        return
    before, after = objects(base), objects(head)
    for f in findings:
        if not f.new or f.located is None or f.resource is None or f.target is None or f.environment is None:
            continue
        now, was = (side.get((f.target, f.environment, f.resource)) for side in (after, before))
        if now is None or was is None or now.value(f.located) is not None or was.value(f.located) is None:
            continue
        origin = was.origin(f.located)
        if not origin.file or not origin.line or not head.model.tree.is_file(origin.file):
            continue
        line = removal_point(base.model.tree.lines(origin.file), head.model.tree.lines(origin.file), origin.line)
        if line is not None:
            f.origin = Origin(origin.file, line, line, "enclosing", "removed")


def filter_envs(findings: list[Finding], envs: list[str] | None, config: Config) -> list[Finding]:
    if not envs:
        return findings
    from bot.config import normalise_env

    wanted = {normalise_env(e, config) for e in envs}
    return [f for f in findings if f.environment in wanted or f.environment is None]


def make_report(side: Side, findings: list[Finding], kustomize: Kustomize | None, head_sha: str | None = None) -> Report:
    findings = sorted(findings, key=lambda f: (f.environment or "", f.origin.file or "", f.origin.line or 0, f.rule))
    return Report(findings=findings, targets=side.statuses, tool_version=__version__,
                  kustomize_version=kustomize.version if kustomize else "",
                  rules={r.id: r for r in rulebook.all_rules()}, head_sha=head_sha)


def in_scope(path: str | None, scope: str | None) -> bool:
    return not scope or scope == "." or (path is not None and (path == scope or path.startswith(scope + "/")))


def run_check(head: Path, base: Path | None, config: Config, envs: list[str] | None = None,
              changed: frozenset[str] | None = None, affected_only: bool = False,
              cache: DiskCache | None = None, scope: str | None = None, deadline: Deadline | None = None) -> Report:
    """`check` and `review`: findings of `head`, marked new against `base` when given.

    `scope` (a repository-relative folder) limits the targets and findings to that folder while
    the whole tree stays visible, so Flux paths written from the repository root still resolve.
    With `affected_only` (a pull request), only targets a changed file reaches are rendered, on
    both sides; repo-level rules still see the whole tree.
    """
    head_model = make_model(head, config)
    if not is_repository(head_model) and not (head / "kustomization.yaml").exists():
        env = (envs or [DEFAULT_ENVIRONMENT])[0]
        head_side = check_plain(head, env, config)
        base_side = check_plain(base, env, config) if base else None
        findings = compare(head_side.findings, base_side.findings) if base_side else head_side.findings
        return make_report(head_side, findings, None)
    kustomize = find_kustomize()
    head_targets = base_targets = None
    if scope and scope != ".":
        head_targets = [t for t in head_model.targets if in_scope(t.path, scope)]
    if affected_only and changed is not None:
        base_model = make_model(base, config) if base is not None else None
        head_targets = head_model.affected(changed=changed, previous=base_model)
        if base_model is not None:
            base_targets = base_model.affected(changed=changed, previous=head_model)
            keys = {t.key for t in head_targets} | {t.key for t in base_targets}
            head_targets = [t for t in head_model.targets if t.key in keys]
            base_targets = [t for t in base_model.targets if t.key in keys]
    head_side = check_repository(head, config, targets=head_targets, changed=changed, kustomize=kustomize, cache=cache,
                                 deadline=deadline)
    findings = head_side.findings
    if base is not None:
        base_side = check_repository(base, config, targets=base_targets, changed=changed, kustomize=kustomize,
                                     cache=cache, deadline=deadline)
        findings = compare(findings, base_side.findings)
        relocate_removed(findings, head_side, base_side)
    if scope and scope != ".":
        findings = [f for f in findings if in_scope(f.origin.file, scope) or in_scope(f.target, scope)]
    return make_report(head_side, filter_envs(findings, envs, config), kustomize)
