"""`infra-review build DIR`: the target's output, byte for byte what `kustomize build DIR` prints."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from bot.model import Target
from bot.render.build import Rendered, Renderer
from bot.render.kustomize import RendererMissing
from bot.repo.discover import RepoModel
from bot.repo.tree import RepoTree, find_root


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
    for ro in rendered.objects:
        out.write(f"# {ro.id}\n")
        for path, value in leaves(ro.obj):
            origin = ro.origin(path)
            shown = str(value).splitlines()[0] if str(value) else ""
            if len(shown) > 60:
                shown = shown[:57] + "..."
            out.write(f"{path} = {shown!s:<30}  <- {origin} [{origin.via}]\n")


def run(args: argparse.Namespace) -> int:
    directory = args.dir.resolve()
    if not directory.is_dir():
        print(f"infra-review build: {args.dir} is not a directory; give a kustomization directory", file=sys.stderr)
        return 2
    root = find_root(directory, args.root)
    if not directory.is_relative_to(root):
        print(f"infra-review build: {args.dir} is outside the repository root {root}; pass --root", file=sys.stderr)
        return 2
    rel = os.path.relpath(directory, root).replace(os.sep, "/")
    model = RepoModel(RepoTree(root))
    try:
        renderer = Renderer(model)
    except RendererMissing as exc:
        print(f"infra-review build: {exc}", file=sys.stderr)
        return 2
    if args.flux:
        targets = [t for t in model.targets if t.flux is not None and t.path == rel]
        if not targets:
            print(f"infra-review build: no Flux Kustomization in {root} has spec.path {rel}; "
                  "drop --flux to build the kustomization as it is", file=sys.stderr)
            return 2
    else:
        targets = [Target(rel, None, None)]
    status = 0
    for i, target in enumerate(targets):
        rendered = Renderer.render(renderer, target)
        if not rendered.ok:
            print(f"Error: {rendered.error}", file=sys.stderr)
            status = 1
            continue
        if len(targets) > 1:
            sys.stdout.write(f"# Flux Kustomization {target.flux.namespace}/{target.flux.name}\n" if i == 0 else
                             f"---\n# Flux Kustomization {target.flux.namespace}/{target.flux.name}\n")
        if args.origins:
            show_origins(rendered, sys.stdout)
        else:
            sys.stdout.write(rendered.text)
        for note in rendered.notes:
            print(f"note: {note}", file=sys.stderr)
    return status
