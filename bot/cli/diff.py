"""`infra-review diff PATH --base PATH|REF`: what a change does to each environment, as Flux applies it."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
from pathlib import Path

from bot import __version__
from bot.cli.check import CONFIG_PATH, UsageError, load_config, materialize_ref
from bot.cli.terminal import Watch
from bot.publish.report import TOOL_NAME
from bot.render.kustomize import RendererMissing
from bot.repo.tree import choose_root


def run(args: argparse.Namespace) -> int:
    from bot.publish.diff import render_json, render_markdown, render_text
    from bot.review.pipeline import run_diff

    watch = Watch(sys.stderr, os.environ, args.verbose)
    try:
        path = args.path.resolve()
        if not path.is_dir():
            raise UsageError(f"{args.path}: not a directory; give the repository (or a checkout of the change)")
        choice = choose_root(path, args.root)
        root = choice.root
        config = load_config(args.config, root)
        if args.offline:
            config = dataclasses.replace(config, fetch_enabled=False)
        with tempfile.TemporaryDirectory(prefix="infra-review-diff-") as tmp:
            candidate = Path(args.base)
            if candidate.is_dir():
                base = candidate.resolve()
            else:
                base = materialize_ref(root, args.base, Path(tmp))
                if choice.work_tree and root != choice.work_tree:
                    base = base / root.relative_to(choice.work_tree)
            result = run_diff(root, base, config, envs=args.env, progress=watch.progress)
    except (UsageError, RendererMissing) as exc:
        watch.status.clear()
        print(f"infra-review diff: {exc}", file=sys.stderr)
        return 2
    watch.finish()
    tool = {"name": TOOL_NAME, "version": __version__, "kustomize": result.kustomize_version,
            "helm": result.helm_version}
    if args.format == "json":
        out = render_json(result.changes, tool)
    elif args.format == "markdown":
        out = render_markdown(result.changes, limit=sys.maxsize) or "No object changes in any environment.\n"
    else:
        out = render_text(result.changes)
    sys.stdout.write(out if out.endswith("\n") else out + "\n")
    return 0


def add_parser(sub) -> None:
    d = sub.add_parser("diff", help="what a change does to each environment: objects added, removed and changed "
                                    "as Flux would apply them (secrets masked)")
    d.add_argument("path", type=Path, help="the repository with the change (its work tree)")
    d.add_argument("--base", required=True, help="the tree before the change: a folder, or a git revision of PATH")
    d.add_argument("--env", action="append", help="only these environments (repeatable)")
    d.add_argument("--format", choices=("text", "json", "markdown"), default="text")
    d.add_argument("--config", type=Path, help=f"config file (default: {CONFIG_PATH} in the repository)")
    d.add_argument("--root", type=Path, help="the repository root Flux paths are relative to")
    d.add_argument("--offline", action="store_true", help="fetch nothing (remote resources and charts)")
    d.add_argument("--verbose", action="store_true", help="print the time each stage took (on stderr)")
    d.set_defaults(func=run)
