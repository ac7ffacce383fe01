"""`infra-review build DIR`: the target's output, byte for byte what `kustomize build DIR` prints.

DIR is read through the same repository model as `check` (bot/review/pipeline.make_model, with the
repository's .github/infra-review.yml): environment aliases and paths apply, Flux objects under
`ignore` paths are not part of the repository, and a folder the repository ignores is built as a
repository of its own.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

from bot.config import Config
from bot.fetch import FetchSettings
from bot.model import Target
from bot.render.build import Rendered, Renderer
from bot.render.kustomize import RendererMissing
from bot.render.releases import Release
from bot.repo.discover import RepoModel
from bot.repo.tree import find_root


def leaves(value: Any, prefix: str = ""):
    """Every scalar of an object with its field path (list items by `[name]` where they have one)."""
    from bot.model import format_path, parse_path

    if isinstance(value, dict):
        for k, v in value.items():
            yield from leaves(v, format_path(parse_path(prefix) + (k,)) if prefix else format_path((k,)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            key = ("name", str(v["name"])) if isinstance(v, dict) and "name" in v else i
            yield from leaves(v, format_path(parse_path(prefix) + (key,)))
    else:
        yield prefix, value


def show_origins(rendered: Rendered, out) -> None:
    """Every scalar of every object with the source line that set it, for people."""
    for ro in rendered.applied:
        out.write(f"# {ro.id}\n")
        for path, value in leaves(ro.obj):
            origin = ro.origin(path)
            shown = str(value).splitlines()[0] if str(value) else ""
            if len(shown) > 60:
                shown = shown[:57] + "..."
            out.write(f"{path} = {shown!s:<30}  <- {origin} [{origin.via}]\n")


def nested_root(root: Path, rel: str, config: Config) -> Path | None:
    """The repository of its own that `rel` lies in when the enclosing repository's `ignore` paths
    exclude it (a nested example repository): the outermost ignored folder on the way down to `rel`,
    which is `rel` itself when it is the ignored folder. None when `rel` belongs to `root`."""
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    for i in range(1, len(parts) + 1):
        if config.is_ignored("/".join(parts[:i])):
            return root.joinpath(*parts[:i])
    return None


def repository(directory: Path, explicit_root: Path | None, config_file: Path | None) -> tuple[RepoModel, str]:
    """The repository model `check` would use for `directory` (the configuration's environment aliases
    and paths, its `ignore`), and the directory's path in it. Raises UsageError."""
    from bot.cli.check import UsageError, load_config
    from bot.review.pipeline import make_model

    root = find_root(directory, explicit_root)
    if not directory.is_relative_to(root):
        raise UsageError(f"{directory} is outside the repository root {root}; pass --root")
    config = load_config(config_file, root)
    rel = os.path.relpath(directory, root).replace(os.sep, "/")
    nested = nested_root(root, rel, config)
    if nested is not None:
        # As `check` does: the enclosing repository says this folder is not part of it, so it is a
        # repository of its own, with its own configuration.
        root = nested
        config = load_config(config_file, root)
        rel = os.path.relpath(directory, root).replace(os.sep, "/")
    return make_model(root, config), rel


def fetch_settings(args: argparse.Namespace, root: Path) -> FetchSettings:
    """What may be fetched for remote entries: the repository's `fetch:` settings, off with --offline;
    `flux.no_remote_bases` only with --flux (without it the build is plain `kustomize build`)."""
    from bot.cli.check import load_config

    config = load_config(getattr(args, "config", None), root)
    settings = FetchSettings.from_config(config, offline=getattr(args, "offline", False))
    return settings if args.flux else dataclasses.replace(settings, no_remote_bases=False)


def run(args: argparse.Namespace) -> int:
    from bot.cli.check import UsageError

    directory = args.dir.resolve()
    if not directory.is_dir():
        print(f"infra-review build: {args.dir} is not a directory; give a kustomization directory", file=sys.stderr)
        return 2
    try:
        model, rel = repository(directory, args.root, getattr(args, "config", None))
    except UsageError as exc:
        print(f"infra-review build: {exc}", file=sys.stderr)
        return 2
    root = model.tree.root
    try:
        renderer = Renderer(model, fetch=fetch_settings(args, root))
    except UsageError as exc:
        print(f"infra-review build: {exc}", file=sys.stderr)
        return 2
    except RendererMissing as exc:
        print(f"infra-review build: {exc}", file=sys.stderr)
        return 2
    if args.flux:
        targets = [t for t in model.targets if t.flux is not None and t.path == rel]
        if not targets:
            outside = " outside the configured `ignore` paths" if model.ignored is not None else ""
            print(f"infra-review build: no Flux Kustomization{outside} in {root} has spec.path {rel}; "
                  "drop --flux to build the kustomization as it is", file=sys.stderr)
            return 2
    else:
        targets = [Target(rel, model.environment_of(rel, None), None)]
    status = 0
    for i, target in enumerate(targets):
        rendered = Renderer.render(renderer, target)
        for u in rendered.unfetched:
            print(f"note: {u.file}:{u.line}: remote `{u.via or u.value}` was not fetched and is left out: {u.reason}",
                  file=sys.stderr)
        if not rendered.ok or rendered.unbuilt:
            print(f"Error: {rendered.error or rendered.unbuilt}", file=sys.stderr)
            status = 1
            continue
        if len(targets) > 1:
            flux = target.flux
            assert flux is not None
            env = f", environment {target.environment}" if target.environment else ""
            sys.stdout.write(("" if i == 0 else "---\n") + f"# Flux Kustomization {flux.namespace}/{flux.name} "
                             f"({flux.file}{env})\n")
        if args.flux:
            status = max(status, _releases(model, rendered, args))
        if args.origins:
            show_origins(rendered, sys.stdout)
        else:
            sys.stdout.write(rendered.text)
            for release in rendered.releases:
                sys.stdout.write(release_text(release))
        for note in rendered.notes:
            print(f"note: {note}", file=sys.stderr)
    return status


def _releases(model: RepoModel, rendered: Rendered, args: argparse.Namespace) -> int:
    """Render the target's HelmReleases as Flux's helm-controller would (bot.render.releases); 1 when one
    of them cannot be installed, with Helm's sentence."""
    from bot.cli.check import load_config
    from bot.deadline import Deadline
    from bot.review.pipeline import render_releases

    config = load_config(getattr(args, "config", None), model.tree.root)
    renderer = Renderer(model, fetch=fetch_settings(args, model.tree.root))
    rendered.releases, _version = render_releases(model, config, renderer, [rendered], Deadline())
    status = 0
    for release in rendered.releases:
        if release.status != "rendered":
            origin = release.origin
            print(f"note: {origin}: HelmRelease {release.hr.namespace}/{release.hr.name} not rendered "
                  f"({release.status}): {release.reason}", file=sys.stderr)
            status = status or int(release.status == "error")
    return status


def release_text(release: Release) -> str:
    """What a rendered HelmRelease installs, as YAML documents after a comment naming it."""
    import yaml

    if release.status != "rendered":
        return ""
    head = f"---\n# HelmRelease {release.hr.namespace}/{release.hr.name}: release {release.hr.release_name} " \
           f"in {release.hr.release_namespace}, chart {release.chart}\n"
    docs = [yaml.safe_dump(ro.obj, sort_keys=False) for ro in release.objects]
    return head + "---\n".join(docs)
