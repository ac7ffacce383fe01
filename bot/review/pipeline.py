"""One pipeline for the CLI and the App: source → graph → render → rules → compare.

Over trees on disk: the App fetches the two trees; `check` and `review` read them locally; both end
in a `Report` that any reporter can print or publish. The only network access is the renderer's
policed fetcher, for remote Kustomize resources (bot.fetch; off with `fetch: {enabled: false}`).
"""

from __future__ import annotations

import collections
import dataclasses
import difflib
import posixpath
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rules as rulebook
from bot import __version__
from bot.config import Config, effective_policy
from bot.deadline import Deadline
from bot.diff.compute import compare_rendered
from bot.diff.mask import Masker
from bot.diff.model import Changes
from bot.fetch import FetchSettings
from bot.model import Finding, Origin, ResourceId, Target
from bot.objects import EnvContext, RenderedObject
from bot.plain import load_plain
from bot.publish.report import Report, TargetStatus, plural
from bot.render.build import DiskCache, Rendered, Renderer, default_cache_dir
from bot.render.helm import Helm, HelmMissing, find_helm
from bot.render.kustomize import Kustomize, find_kustomize
from bot.render.releases import (
    Release,
    ReleaseRenderer,
    cached_lint,
    chart_folders,
    copy_chart,
    is_helm_release,
)
from bot.repo.discover import RepoModel
from bot.repo.tree import PathEscape, RepoTree, changed_files
from bot.review.progress import Progress
from bot.review.run_rules import run_env_rules, run_repo_rules
from bot.review.verdicts import Verdict, Verdicts, verdict_of
from bot.validate.schemas import CRD, Catalog, repository_crds
from bot.yamlpos import YamlError
from rules import chart_error, chart_lint, chart_unavailable, remote_unchecked
from rules.hardcoded_secret import redact, secret_values
from rules.thirdparty import third_party

DEFAULT_ENVIRONMENT = "production"
SHOWN = 3  # names listed in a note before "and N more"


class NothingToCheck(ValueError):
    """The check cannot run as asked (an environment no target has, a folder with nothing to check);
    the message says what to do instead."""


def _some(names: list[str]) -> str:
    shown = ", ".join(f"`{n}`" for n in names[:SHOWN])
    return shown + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


@dataclass
class Side:
    """The findings of one tree (the PR head or its base)."""

    findings: list[Finding] = field(default_factory=list)
    statuses: list[TargetStatus] = field(default_factory=list)
    rendered: list[Rendered] = field(default_factory=list)
    model: RepoModel | None = None
    third_party: int = 0  # objects from vendored or generated files, over every environment
    releases: list[Release] = field(default_factory=list)  # every HelmRelease of the rendered targets
    helm_version: str = ""  # the engine that rendered them
    targets: list[Target] = field(default_factory=list)  # every target checked, rendered now or not
    reused: list[Verdict] = field(default_factory=list)  # environments judged by an earlier check


def make_model(root: Path, config: Config, cache: DiskCache | None = None) -> RepoModel:
    """The repository model of `root`, its files parsed once per content into `cache` when given."""
    tree = RepoTree(root, parsed=cache.sources if cache is not None else None)
    model = RepoModel(tree, aliases=config.aliases, default_environment=DEFAULT_ENVIRONMENT)
    try:
        model.tree.files  # noqa: B018 - listed now: a tree too large to check is said here, not mid-check
    except PathEscape as exc:
        raise NothingToCheck(f"{root}: {exc}, more than one check reads; check a folder of it") from None
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
    env = _env(target)
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
    """Group what Flux applies by environment (Kustomize output and what its HelmReleases install); an
    object rendered by two targets counts once."""
    by_env: dict[str, dict[ResourceId, RenderedObject]] = {}
    vendor: dict[str, set[ResourceId]] = {}
    shown: dict[str, set[ResourceId]] = {}
    charted: dict[str, set[ResourceId]] = {}
    for r in rendered:
        env = _env(r.target)
        bucket = by_env.setdefault(env, {})
        for ro in r.applied:
            bucket.setdefault(ro.id, ro)
        vendor.setdefault(env, set()).update(ro.id for release in r.releases if release.chart is not None
                                             and not release.chart.in_repository for ro in release.objects)
        shown.setdefault(env, set()).update(release.hr_object.id for release in r.releases
                                            if release.status == "rendered")
        charted.setdefault(env, set()).update(ro.id for release in r.releases for ro in release.objects)
    policy = effective_policy(config)
    read = model.tree.lines if model else (lambda _f: [])
    return [EnvContext(env, list(objs.values()), policy, repo=model, read_lines=read, changed_files=changed,
                       third_party=frozenset(third_party(objs.values(), config, read)), creators=config.creators,
                       vendor_chart=frozenset(vendor.get(env, ())), rendered_releases=frozenset(shown.get(env, ())),
                       from_charts=frozenset(charted.get(env, ())), kube_version=config.kube_version)
            for env, objs in sorted(by_env.items())]


def lint_charts(model: RepoModel, config: Config, changed: frozenset[str] | None, deadline: Deadline,
                cache: DiskCache | None = None) -> list[Finding]:
    """`helm lint` of every chart folder of the repository (those a change touched, in a review), as
    chart-lint findings, kept in the render cache by the chart's content; nothing when no Helm engine
    is installed (the releases say so)."""
    folders = [f for f in chart_folders(model.tree) if not config.is_ignored(f)
               and (changed is None or any(p == f or p.startswith(f.rstrip("/") + "/") or f == "." for p in changed))]
    if not folders or config.severity_for(chart_lint.RULE, None) is None:
        return []
    try:
        helm = find_helm()
    except HelmMissing:
        return []
    out: list[Finding] = []
    with tempfile.TemporaryDirectory(prefix="infra-review-lint-") as tmp:
        for i, folder in enumerate(folders):
            deadline.check()
            chart = copy_chart(model.tree, folder, Path(tmp) / str(i) / posixpath.basename(folder.rstrip("/") or "chart"))
            out.extend(chart_lint.findings(folder, cached_lint(helm, chart, config.kube_version, cache, deadline),
                                           config))
    return [f for f in out if not config.is_ignored(f.origin.file)]


def render_releases(model: RepoModel, config: Config, renderer: Renderer, rendered: list[Rendered],
                    deadline: Deadline) -> tuple[list[Release], str]:
    """What the HelmReleases of the built targets install (bot.render.releases), charts fetched through
    the renderer's fetcher unless fetching is off; and the Helm version that rendered them."""
    if not any(is_helm_release(ro) for r in rendered for ro in r.objects):
        return [], ""
    try:
        helm: Helm | None = find_helm()
        missing = ""
    except HelmMissing as exc:
        helm, missing = None, str(exc)
    fetcher = renderer.remote.fetcher if renderer.fetch is not None and renderer.fetch.enabled else None
    releases = ReleaseRenderer(model, helm, renderer.kustomize, fetcher, kube_version=config.kube_version,
                               api_versions=config.api_versions, deadline=deadline, missing_engine=missing,
                               cache=renderer.cache)
    return releases.render_all(rendered), helm.version if helm is not None else ""


def check_repository(model: RepoModel, config: Config, *, targets: list[Target] | None = None,
                     changed: frozenset[str] | None = None, kustomize: Kustomize | None = None,
                     cache: DiskCache | None = None, deadline: Deadline | None = None,
                     progress: Progress | None = None) -> Side:
    """Render the given targets (default: all) of a repository and run every rule; Stopped as soon
    as `deadline` says so (between targets, during a build, between rules)."""
    deadline = deadline or Deadline()
    progress = progress or Progress()
    side, renderer = render_side(model, config, targets=targets, kustomize=kustomize, cache=cache, deadline=deadline,
                                 progress=progress)
    with progress.stage("rules"):
        _judge(side, model, config, changed, deadline)
    with progress.stage("chart lint"):
        side.findings.extend(lint_charts(model, config, changed, deadline, renderer.cache))
    attach_places(side.findings, side.rendered)
    return side


def check_whole(model: RepoModel, config: Config, targets: list[Target], *, kustomize: Kustomize | None,
                cache: DiskCache, deadline: Deadline | None = None, progress: Progress | None = None) -> Side:
    """check_repository over every target of a whole-repository check, reusing the verdict of each
    environment that nothing it reads has changed for since a check kept it (bot.review.verdicts);
    the others are rendered and judged, and their verdicts kept. Reports what check_repository would."""
    deadline = deadline or Deadline()
    progress = progress or Progress()
    todo = [t for t in targets if not config.is_ignored(t.path)]
    by_env: dict[str, list[Target]] = {}
    for t in todo:
        by_env.setdefault(_env(t), []).append(t)
    renderer = Renderer(model, kustomize=kustomize, cache=cache, deadline=deadline,
                        fetch=FetchSettings.from_config(config))
    renderer.prefetch(todo)  # what changed is being built while the verdicts are looked up
    try:
        with progress.stage("verdicts"):
            store = Verdicts(model, config, renderer, cache.verdicts, readers(model, list(model.targets)))
            keys = {env: store.key(env, ts) for env, ts in by_env.items()}
            kept = {env: v for env, key in keys.items() if key is not None and (v := store.get(key)) is not None
                    and len(v.target_findings) == len(by_env[env])}
            if any(v.helm for v in kept.values()):
                helm = _helm_version()
                kept = {env: v for env, v in kept.items() if v.helm in ("", helm)}
        for env in kept:
            for _t in by_env[env]:
                progress.counted("verdict", True)
        side, renderer = render_side(model, config, targets=[t for t in todo if _env(t) not in kept],
                                     kustomize=kustomize, cache=cache, deadline=deadline, progress=progress,
                                     renderer=renderer)
    finally:
        renderer.finish()
    policy = effective_policy(config)
    with progress.stage("rules"):
        done: dict[str, list[tuple[Rendered, TargetStatus, list[Finding]]]] = {}
        for r in side.rendered:  # in the order of `todo`, so of each environment's targets
            done.setdefault(_env(r.target), []).append((r, _status(r), _target_findings(r, model, config, policy)))
        env_findings: dict[str, list[Finding]] = {env: v.env_findings for env, v in kept.items()}
        third: dict[str, int] = {env: v.third_party for env, v in kept.items()}
        for ctx in environment_contexts([r for r in side.rendered if r.ok], model, config, None):
            third[ctx.environment] = len(ctx.third_party)
            env_findings[ctx.environment] = run_env_rules(ctx, config, deadline=deadline)
        repository = run_repo_rules(model, config, changed_files=None, deadline=deadline)
        attach_places([f for rows in done.values() for _r, _s, fs in rows for f in fs] + repository
                      + [f for env, fs in env_findings.items() if env not in kept for f in fs], side.rendered)
        for env, rows in done.items():
            key = keys[env]
            verdict = verdict_of([r for r, _s, _fs in rows], [s for _r, s, _fs in rows], [fs for _r, _s, fs in rows],
                                 env_findings.get(env, []), third.get(env, 0), side.helm_version) \
                if key is not None else None
            if key is not None and verdict is not None:
                store.put(key, verdict)
        position = {env: 0 for env in by_env}
        side.statuses, side.findings = [], []
        for t in todo:
            env = _env(t)
            i, position[env] = position[env], position[env] + 1
            status, found = ((kept[env].statuses[i], kept[env].target_findings[i]) if env in kept
                             else done[env][i][1:])
            side.statuses.append(status)
            side.findings.extend(found)
        for env in sorted(env_findings):
            side.findings.extend(env_findings[env])
        side.third_party = sum(third.values())
        side.findings.extend(repository)
    with progress.stage("chart lint"):
        side.findings.extend(lint_charts(model, config, None, deadline, renderer.cache))
    side.targets, side.reused = todo, list(kept.values())
    side.helm_version = side.helm_version or next((v.helm for v in side.reused if v.helm), "")
    return side


def _helm_version() -> str:
    try:
        return find_helm().version
    except HelmMissing:
        return ""


def _env(target: Target) -> str:
    return target.environment or DEFAULT_ENVIRONMENT


def _status(r: Rendered) -> TargetStatus:
    return TargetStatus(r.target.path, _env(r.target), "ok" if r.ok else "error", len(r.objects))


def _target_findings(r: Rendered, model: RepoModel, config: Config, policy: dict[str, Any]) -> list[Finding]:
    """What the pipeline itself says of one rendered target: it cannot be built, what it fetches was
    not checked, its HelmReleases' charts fail or are not available."""
    out = [_build_error(r.target, r, model, policy)] if not r.ok else []
    out += remote_unchecked.findings(r.unfetched, r.target.path, _env(r.target), config, r.unbuilt)
    return out + chart_error.findings(r.releases, config) + chart_unavailable.findings(r.releases, config)


def render_side(model: RepoModel, config: Config, *, targets: list[Target] | None, kustomize: Kustomize | None,
                cache: DiskCache | None, deadline: Deadline, progress: Progress,
                renderer: Renderer | None = None) -> tuple[Side, Renderer]:
    """What the targets (default: all) apply, their HelmReleases' output included; no rule is run."""
    side = Side(model=model)
    todo = list(model.targets if targets is None else targets)
    todo = side.targets = [t for t in todo if not config.is_ignored(t.path)]
    renderer = renderer or Renderer(model, kustomize=kustomize, cache=cache, deadline=deadline,
                                    fetch=FetchSettings.from_config(config))
    progress.expect(len(todo))
    with progress.stage("render (kustomize)"):
        side.rendered = renderer.render_all(todo, on_done=lambda r: progress.rendered(r.target.path, r.cached))
    with progress.stage("render (helm)"):
        side.releases, side.helm_version = render_releases(model, config, renderer,
                                                           [r for r in side.rendered if r.ok], deadline)
    for release in side.releases:
        if release.status == "rendered":
            progress.counted("helm", release.cached)
    return side, renderer


def _judge(side: Side, model: RepoModel, config: Config, changed: frozenset[str] | None, deadline: Deadline) -> None:
    """Every rule's findings on what `side` rendered: the pipeline's own, per environment, per repository."""
    policy = effective_policy(config)
    for r in side.rendered:
        side.statuses.append(_status(r))
        side.findings.extend(_target_findings(r, model, config, policy))
    for ctx in environment_contexts([r for r in side.rendered if r.ok], model, config, changed):
        side.third_party += len(ctx.third_party)
        side.findings.extend(run_env_rules(ctx, config, deadline=deadline))
    side.findings.extend(run_repo_rules(model, config, changed_files=changed, deadline=deadline))


def attach_places(findings: list[Finding], rendered: list[Rendered]) -> None:
    """Give each finding the documents that define or patch its resource (for review anchors)."""
    index: dict[tuple[str, ResourceId], RenderedObject] = {}
    for r in rendered:
        for ro in r.applied:
            index.setdefault((r.target.path, ro.id), ro)
    for f in findings:
        placed = index.get((f.target or "", f.resource)) if f.resource else None
        if placed is not None:
            f.places = tuple(placed.places())


def check_plain(path: Path, environment: str, config: Config, root: Path | None = None) -> Side:
    """A file or folder of plain manifests, checked as one rendered environment (paths relative to
    `root`, default the folder itself). No statuses when it holds no Kubernetes object."""
    side = Side()
    try:
        objects = load_plain(path, root)
    except YamlError as exc:
        rule = rulebook.get_rule("build-error")
        side.findings.append(Finding(rule.id, "error", environment, f"{exc.message}", rule.remediation,
                                     origin=Origin(path.name, exc.line, exc.line, "build")))
        return side
    if not objects:
        return side
    tree = RepoTree(root or (path if path.is_dir() else path.parent))
    ctx = EnvContext(environment, objects, effective_policy(config), read_lines=tree.lines,
                     third_party=frozenset(third_party(objects, config, tree.lines)), creators=config.creators)
    side.findings.extend(run_env_rules(ctx, config))
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


def _objects(side: Side) -> dict[tuple[str, str, ResourceId], RenderedObject]:
    index: dict[tuple[str, str, ResourceId], RenderedObject] = {}
    for r in side.rendered:
        for ro in r.applied:
            index.setdefault((r.target.path, _env(r.target), ro.id), ro)
    return index


def with_base(findings: list[Finding], head: Side, base: Side) -> None:
    """Each new finding beside its object on the base revision. A field that the base had and the pull
    request removed is located where it was removed, in every output alike, rather than where it
    would be added anew; and a rule may take its suggestion from the base (`Rule.from_base`: the tag
    an image had before it floated)."""
    if head.model is None or base.model is None:
        return
    before, after = _objects(base), _objects(head)
    for f in findings:
        if not f.new or f.located is None or f.resource is None or f.target is None or f.environment is None:
            continue
        now, was = (side.get((f.target, f.environment, f.resource)) for side in (after, before))
        if now is None or was is None:
            continue
        if now.value(f.located) is None and was.value(f.located) is not None:
            _relocate_removed(f, was, head.model.tree, base.model.tree)
        rule = rulebook.get_rule(f.rule)
        if rule.from_base is not None and f.suggestion is None and f.origin.file and f.origin.line:
            f.suggestion = rule.from_base(f, now, was, head.model.tree.lines(f.origin.file))


def _relocate_removed(f: Finding, was: RenderedObject, head: RepoTree, base: RepoTree) -> None:
    origin = was.origin(f.located or "")
    if not origin.file or not origin.line or not head.is_file(origin.file):
        return
    line = removal_point(base.lines(origin.file), head.lines(origin.file), origin.line)
    if line is not None:
        f.origin = Origin(origin.file, line, line, "enclosing", "removed")


def filter_envs(findings: list[Finding], envs: list[str] | None, config: Config) -> list[Finding]:
    if not envs:
        return findings
    from bot.config import normalise_env

    wanted = {normalise_env(e, config) for e in envs}
    return [f for f in findings if f.environment in wanted or f.environment is None]


def make_report(side: Side, findings: list[Finding], kustomize: Kustomize | None, head_sha: str | None = None,
                notes: list[str] | None = None) -> Report:
    findings = sorted(findings, key=lambda f: (f.environment or "", f.origin.file or "", f.origin.line or 0, f.rule))
    return Report(findings=findings, targets=side.statuses, tool_version=__version__,
                  kustomize_version=kustomize.version if kustomize else "", helm_version=side.helm_version,
                  rules={r.id: r for r in rulebook.all_rules()}, head_sha=head_sha, notes=notes or [])


def top_level(model: RepoModel, config: Config) -> list[Target]:
    """A repository with kustomizations but no `overlays/<env>/` folder and no Flux Kustomization: its
    top-level kustomizations (those no other includes) stand for what would be applied."""
    dirs = [d for d in model.kustomization_dirs if not config.is_ignored(d)]
    included = {inner for d in dirs for inner in model.graph.kustomization_inputs(d).dirs - model.graph.cycle_mates(d)}
    return [Target(d, model.environment_of(d, None), None) for d in dirs if d not in included]


def choose_targets(model: RepoModel, config: Config, envs: list[str] | None,
                   scope: str | None) -> tuple[list[Target], list[str]]:
    """The targets a `check` renders, and what to say about the choice. Raises NothingToCheck rather
    than pass having looked at nothing."""
    notes: list[str] = []
    targets = [t for t in model.targets if not config.is_ignored(t.path)]
    if not targets:
        targets = top_level(model, config)
        if targets:
            notes.append(f"No `overlays/<env>/` folder and no Flux Kustomization here: the top-level "
                         f"kustomizations {_some([t.path for t in targets])} were checked as what would be applied.")
    if envs:
        from bot.config import normalise_env

        known = sorted({_env(t) for t in targets})
        wanted = {normalise_env(e, config) for e in envs}
        if not wanted & set(known):
            raise NothingToCheck(f"--env {', '.join(envs)}: no target is in that environment; the environments "
                                 f"here are {', '.join(known) or 'none'}")
        targets = [t for t in targets if _env(t) in wanted]
    if scope and scope != ".":
        inside = [t for t in targets if in_scope(t.path, scope)]
        if not inside:
            inside = [t for t in targets if any(in_scope(f, scope) for f in model.inputs(t).files)]
            if inside:
                notes.append(f"`{scope}` is not a target of its own: the {plural(len(inside), 'target')} that "
                             f"include it ({_some([t.path for t in inside])}) were checked, and the findings "
                             f"located in it are shown.")
        targets = inside
    return targets, notes


def coverage_notes(model: RepoModel, side: Side, config: Config) -> list[str]:
    """What the rendered targets leave unchecked or assumed: said once each, in every output."""
    rendered = side.rendered
    notes: list[str] = []
    table = effective_policy(config).get("environments") or {}
    unknown = sorted({t.environment for t in side.targets if t.environment} - set(table))
    if unknown:
        notes.append(f"{_some(unknown)} {'is' if len(unknown) == 1 else 'are'} no environment of the policy "
                     f"({', '.join(sorted(table))}): judged with production's severities and defaults. Map "
                     f"{'it' if len(unknown) == 1 else 'them'} with `environments.aliases` or `environments.paths` "
                     f"in .github/infra-review.yml.")
    guessed = sorted({t.path for t in side.targets if model.named_environment(t.path, t.flux) is None})
    if guessed:
        notes.append(f"The environment of {_some(guessed)} could not be told from the paths; judged as "
                     f"{DEFAULT_ENVIRONMENT}. Name it with `environments.paths` in .github/infra-review.yml.")
    failed = [s.path for s in side.statuses if s.status == "error"]
    if failed:
        notes.append(f"{plural(len(failed), 'target')} of {len(side.statuses)} could not be built ({_some(failed)}): "
                     f"nothing in them was checked (see the build-error findings).")
    releases = [(release.status, len(release.objects)) for r in rendered for release in r.releases]
    releases += [release for v in side.reused for release in v.releases]
    if releases:
        notes.append(release_note(releases))
    unvalidated = schema_coverage(model, rendered, config, side.reused)
    if unvalidated:
        notes.append(unvalidated)
    foreign = elsewhere(model, config)
    if foreign:
        notes.append(f"{plural(len(foreign), 'Flux Kustomization')} {'applies' if len(foreign) == 1 else 'apply'} "
                     f"another repository's content ({_some(foreign)}): not checked here; review that repository "
                     f"(or give its manifests to `infra-review check`).")
    if side.third_party:
        notes.append(f"{plural(side.third_party, 'object')} from vendored or generated files (Flux's own install, "
                     f"`third_party` globs) were not judged by the rules for the team's own workloads; the "
                     f"security rules still apply to them.")
    return notes


def elsewhere(model: RepoModel, config: Config) -> list[str]:
    """Flux Kustomizations whose source is another repository, an OCI artifact or a bucket
    (`flux-system/infra-review from GitRepository/infra-review`): Flux applies them, we never see them."""
    out = []
    for ref in model.flux_kustomizations():
        if config.is_ignored(ref.file) or model.flux_path(ref) is not None:
            continue
        source = ref.spec.get("sourceRef")
        source = source if isinstance(source, dict) else {}
        out.append(f"{ref.namespace or 'default'}/{ref.name} from {source.get('kind') or 'GitRepository'}/"
                   f"{source.get('name') or '?'}")
    return sorted(out)


def schema_coverage(model: RepoModel, rendered: list[Rendered], config: Config,
                    reused: Iterable[Verdict] = ()) -> str | None:
    """What invalid-manifest could not validate: objects of kinds with no schema here, said once."""
    reused = list(reused)
    objects = {(r.target.environment, ro.id): ro.obj for r in rendered if r.ok for ro in r.applied}
    crds = [o for o in objects.values() if o.get("kind") == CRD] + [c for v in reused for c in v.crds]
    schemas = Catalog.for_objects(config.kube_version, crds + repository_crds(model))
    applied = [(str(o.get("apiVersion")), str(o.get("kind"))) for o in objects.values()]
    kinds = collections.Counter(f"{kind} ({api})" for api, kind in applied + [k for v in reused for k in v.kinds]
                                if schemas.compiled(api, kind) is None)
    if not kinds:
        return None
    n = sum(kinds.values())
    return (f"{plural(n, 'object')} of {plural(len(kinds), 'kind')} without a schema were not validated "
            f"({_some(sorted(kinds))}): add their CustomResourceDefinitions to the repository to validate them.")


def release_note(releases: list[tuple[str, int]]) -> str:
    """How many HelmReleases were rendered, and why the others were not (each given as its status
    and how many objects it installs)."""
    rendered = sum(1 for status, _n in releases if status == "rendered")
    objects = sum(n for _status, n in releases)
    said = f"{plural(len(releases), 'HelmRelease')}: {rendered} rendered ({plural(objects, 'object')} checked)"
    for status, meaning in (("unavailable", "chart not available here, see chart-unavailable"),
                            ("error", "Flux would fail, see chart-error"), ("suspended", "suspended")):
        n = sum(1 for s, _n in releases if s == status)
        if n:
            said += f", {n} not rendered ({meaning})"
    return said + "."


def in_scope(path: str | None, scope: str | None) -> bool:
    return not scope or scope == "." or (path is not None and (path == scope or path.startswith(scope + "/")))


def run_check(head: Path, base: Path | None, config: Config, envs: list[str] | None = None,
              changed: frozenset[str] | None = None, affected_only: bool = False,
              cache: DiskCache | None = None, scope: str | None = None, deadline: Deadline | None = None,
              progress: Progress | None = None, diff: bool = False) -> Report:
    """`check` and `review`: findings of `head`, marked new against `base` when given (and with `diff`,
    what changes in each environment between the two, `report.changes`).

    `scope` (a repository-relative folder) limits the targets and findings to that folder while
    the whole tree stays visible, so Flux paths written from the repository root still resolve.
    With `affected_only` (a pull request), only targets a changed file reaches are rendered, on
    both sides; repo-level rules still see the whole tree.
    """
    progress = progress or Progress()
    cache = cache if cache is not None else DiskCache(default_cache_dir())
    with progress.stage("discover"):
        head_model = make_model(head, config, cache)
    notes: list[str] = []
    if not is_repository(head_model) and not (head / "kustomization.yaml").exists():
        return check_plain_sides(head, base, (envs or [DEFAULT_ENVIRONMENT])[0], config, strict=not affected_only)
    kustomize = find_kustomize()
    head_targets: list[Target] | None = None
    base_targets: list[Target] | None = None
    if not affected_only:
        head_targets, notes = choose_targets(head_model, config, envs, scope)
        if not head_targets and scope and scope != ".":
            folder = head / scope
            note = f"No target includes `{scope}`: its manifests were checked as they are."
            return check_plain_sides(folder, base / scope if base else None, (envs or [DEFAULT_ENVIRONMENT])[0],
                                     config, root=head, notes=[note])
        if not head_targets:
            raise NothingToCheck(f"{head} holds nothing to check: no overlay, Flux Kustomization or kustomization "
                                 f"was found (give a repository, an overlay or a folder of manifests)")
    with progress.stage("discover"):
        base_model = make_model(base, config, cache) if base is not None else None
    if base_model is not None and envs and not affected_only:
        wanted = {t.environment for t in head_targets or ()}
        base_targets = [t for t in base_model.targets if t.environment in wanted]
    if affected_only and changed is not None:
        head_targets, base_targets = affected_pair(head_model, base_model, changed)
    if base_model is None and changed is None and not affected_only and head_targets is not None:
        head_side = check_whole(head_model, config, head_targets, kustomize=kustomize, cache=cache,
                                deadline=deadline, progress=progress)
    else:
        head_side = check_repository(head_model, config, targets=head_targets, changed=changed, kustomize=kustomize,
                                     cache=cache, deadline=deadline, progress=progress)
    findings = head_side.findings
    changes = None
    if base_model is not None:
        base_side = check_repository(base_model, config, targets=base_targets, changed=changed, kustomize=kustomize,
                                     cache=cache, deadline=deadline, progress=progress)
        with progress.stage("compare"):
            findings = compare(findings, base_side.findings)
            with_base(findings, head_side, base_side)
        if diff:
            with progress.stage("diff"):
                changes = rendered_changes(head_side, base_side, config, envs, scope)
    if scope and scope != ".":
        findings = [f for f in findings if in_scope(f.origin.file, scope) or in_scope(f.target, scope)]
    notes += coverage_notes(head_model, head_side, config)
    report = make_report(head_side, filter_envs(findings, envs, config), kustomize, notes=notes)
    report.readers = readers(head_model, head_side.targets)
    report.changes = changes
    return report


def affected_pair(head: RepoModel, base: RepoModel | None, changed: frozenset[str]) -> tuple[list[Target], list[Target]]:
    """The targets a change reaches on each side: a target either side's change reaches is rendered on
    both, so what it applies can be compared."""
    head_targets = head.affected(changed=changed, previous=base)
    if base is None:
        return head_targets, []
    keys = {t.key for t in head_targets} | {t.key for t in base.affected(changed=changed, previous=head)}
    return [t for t in head.targets if t.key in keys], [t for t in base.targets if t.key in keys]


def rendered_changes(head: Side, base: Side, config: Config, envs: list[str] | None = None,
                     scope: str | None = None) -> Changes:
    """What changes in each environment between the two sides' renderings, secrets masked."""
    from bot.config import normalise_env

    changes = compare_rendered(head.rendered, base.rendered, Masker(effective_policy(config)), DEFAULT_ENVIRONMENT)
    wanted = {normalise_env(e, config) for e in envs} if envs else None
    kept = tuple(dataclasses.replace(env, targets=tuple(t for t in env.targets if scope in (None, ".")
                                                         or in_scope(t.target, scope)))
                 for env in changes.environments if wanted is None or env.name in wanted)
    return dataclasses.replace(changes, environments=tuple(e for e in kept if e.targets))


@dataclass
class DiffResult:
    changes: Changes
    kustomize_version: str = ""
    helm_version: str = ""


def run_diff(head: Path, base: Path, config: Config, envs: list[str] | None = None, cache: DiskCache | None = None,
             deadline: Deadline | None = None, progress: Progress | None = None) -> DiffResult:
    """`diff`: render the targets the change between the two trees reaches, on both sides, and compare
    what they apply. No rule runs."""
    deadline = deadline or Deadline()
    progress = progress or Progress()
    cache = cache if cache is not None else DiskCache(default_cache_dir())
    with progress.stage("discover"):
        head_model, base_model = make_model(head, config, cache), make_model(base, config, cache)
        changed = changed_files(head_model.tree, base_model.tree)
        head_targets, base_targets = affected_pair(head_model, base_model, changed)
    kustomize = find_kustomize()
    sides = [render_side(model, config, targets=targets, kustomize=kustomize, cache=cache, deadline=deadline,
                         progress=progress)[0]
             for model, targets in ((head_model, head_targets), (base_model, base_targets))]
    with progress.stage("diff"):
        changes = rendered_changes(sides[0], sides[1], config, envs)
    return DiffResult(changes, kustomize.version if kustomize else "", sides[0].helm_version or sides[1].helm_version)


def readers(model: RepoModel, targets: list[Target]) -> dict[str, frozenset[str]]:
    """Each input file of the checked targets, with the environments that read them."""
    out: dict[str, set[str]] = {}
    for t in targets:
        for rel in model.inputs(t).files:
            out.setdefault(rel, set()).add(_env(t))
    return {rel: frozenset(envs) for rel, envs in out.items()}


def check_plain_sides(head: Path, base: Path | None, environment: str, config: Config, root: Path | None = None,
                      notes: list[str] | None = None, strict: bool = True) -> Report:
    """Plain manifests on both sides, compared. `strict` (a check someone asked for): NothingToCheck
    when the head holds none, or is a file that is not a Kubernetes manifest."""
    head_side = check_plain(head, environment, config, root)
    if strict and head.is_file() and not head_side.statuses:
        raise NothingToCheck(f"{head} is not a Kubernetes manifest (YAML with apiVersion and kind): give a manifest, "
                             f"a folder of manifests or a repository")
    if strict and not head_side.statuses and not head_side.findings:
        raise NothingToCheck(f"{head} holds nothing to check: no kustomization, Flux object or Kubernetes manifest "
                             f"(give a repository, an overlay or a folder of manifests)")
    if not head_side.statuses and not head_side.findings:
        notes = [*(notes or []), "Nothing to check here: no kustomization, Flux object or Kubernetes manifest."]
    base_side = check_plain(base, environment, config, root) if base and base.exists() else None
    findings = compare(head_side.findings, base_side.findings) if base_side else head_side.findings
    return make_report(head_side, findings, None, notes=notes)
