"""`infra-review check PATH [--base PATH_OR_REF]`: findings for people, CI or tools."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

from bot.cli.terminal import COLOR_CHOICES, Watch, use_colour
from bot.config import Config, ConfigError, parse_config
from bot.publish.report import fails
from bot.publish.select import Selection
from bot.publish.text import summary_line
from bot.render.kustomize import RendererMissing
from bot.repo.git import GitError, git
from bot.repo.tree import choose_root
from rules import all_rules

CONFIG_PATH = ".github/infra-review.yml"


class UsageError(Exception):
    """A problem with the command line or the inputs; the message says what to do."""


def load_config(explicit: Path | None, root: Path) -> Config:
    path = explicit or (root / CONFIG_PATH)
    if explicit is not None and not explicit.is_file():
        raise UsageError(f"--config {explicit}: no such file")
    if not path.is_file():
        return Config.default()
    try:
        return parse_config(path.read_text(encoding="utf-8"), all_rules())
    except ConfigError as exc:
        raise UsageError(f"{path}: {exc}; fix the key or remove it (see docs/rules.md)") from None


def resolve_commit(repo: Path, ref: str, option: str = "--base") -> str:
    """The commit `ref` names in `repo`. A ref starting with '-' is refused before git sees it: git
    would read it as an option, and no branch or tag can be named so."""
    if ref.startswith("-"):
        raise UsageError(f"{option} {ref}: a revision cannot start with '-'; give a branch, tag or commit")
    try:
        out = git(repo, "rev-parse", "--verify", operands=[f"{ref}^{{commit}}"])
    except GitError as exc:
        raise UsageError(f"{option} {ref}: not a directory nor a git revision of {repo} ({exc})") from None
    return out.decode().strip()


def materialize_ref(repo: Path, ref: str, dest: Path, option: str = "--base") -> Path:
    """Extract a git revision of `repo` into `dest` (regular files only)."""
    commit = resolve_commit(repo, ref, option)
    try:
        data = git(repo, "archive", "--format=tar", operands=[commit])
    except GitError as exc:
        raise UsageError(f"{option} {ref}: cannot read it from {repo} ({exc})") from None
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(dest, members=[m for m in tar.getmembers() if m.isfile() or m.isdir()], filter="data")
    return dest


def unresolved_flux_paths(root: Path) -> str | None:
    """When nothing could be checked because no Flux Kustomization's path is a folder of `root`: the
    sentence that says the root looks wrong (rather than that nothing was found)."""
    from bot.repo.discover import RepoModel
    from bot.repo.tree import RepoTree

    try:
        model = RepoModel(RepoTree(root))
        paths = model.declared_paths()
    except (OSError, ValueError):
        return None
    if not paths or any(model.tree.is_dir(p) for p in paths):
        return None
    shown = ", ".join(f"`{p}`" for p in paths[:3]) + (", …" if len(paths) > 3 else "")
    return (f"{root}: none of the {len(paths)} Flux Kustomization paths ({shown}) is a folder of this root, so "
            f"nothing could be built and the root looks wrong: give the repository they are relative to with --root")


def run(args: argparse.Namespace) -> int:
    from bot.publish.github_actions import render_github
    from bot.publish.jsonout import render_json
    from bot.publish.sarif import render_sarif
    from bot.publish.text import render_text
    from bot.review.pipeline import NothingToCheck, run_check

    head = args.path
    selection = Selection(frozenset(args.rule or ()), frozenset(args.skip_rule or ()), args.min_severity,
                          args.new_only)
    unknown = selection.unknown(r.id for r in all_rules())
    if unknown:
        print(f"infra-review check: unknown rule id {', '.join(unknown)}; the rules are: "
              f"{', '.join(r.id for r in all_rules())} (`infra-review rules` lists them)", file=sys.stderr)
        return 2
    watch = Watch(sys.stderr, os.environ, args.verbose)
    try:
        path = args.path.resolve()
        if not path.exists():
            raise UsageError(f"{args.path}: no such file or directory; give a repository or manifest folder")
        choice = choose_root(path, args.root) if path.is_dir() else None
        root = choice.root if choice else path.parent
        if choice and not path.is_relative_to(root):
            raise UsageError(f"{args.path} is outside the root {root} given with --root")
        scope = None
        head = path
        config = load_config(args.config, root if path.is_dir() else path.parent)
        if choice and path != root and choice.kind in ("given", "git"):
            rel = path.relative_to(root).as_posix()
            if choice.kind == "git" and config.is_ignored(rel):
                # The enclosing repository says this folder is not part of it (a nested example
                # repository): check it as a repository of its own.
                root = path
                config = load_config(args.config, path)
            else:
                head, scope = root, rel
        if getattr(args, "offline", False):
            config = dataclasses.replace(config, fetch_enabled=False)
        with tempfile.TemporaryDirectory(prefix="infra-review-base-") as tmp:
            base = None
            if args.base:
                candidate = Path(args.base)
                base = candidate.resolve() if candidate.exists() else materialize_ref(root, args.base, Path(tmp))
                if not candidate.exists() and choice and choice.work_tree and root != choice.work_tree:
                    base = base / root.relative_to(choice.work_tree)  # the revision holds the whole work tree
            report = run_check(head, base, config, envs=args.env, scope=scope, progress=watch.progress)
        if choice and choice.note and head == root:
            report.notes.insert(0, choice.note)
    except (UsageError, RendererMissing, NothingToCheck) as exc:
        watch.status.clear()
        hint = unresolved_flux_paths(head) if isinstance(exc, NothingToCheck) else None
        print(f"infra-review check: {hint or exc}", file=sys.stderr)
        return 2
    watch.finish()
    fail_on = args.fail_on or config.fail_on
    report = dataclasses.replace(report, findings=selection.apply(report.findings))
    shown = report
    if args.quiet:
        shown = dataclasses.replace(report, findings=[f for f in report.findings if f.severity == "error"], notes=[])
    decide = "new" if fail_on == "never" else fail_on
    fmt = args.format
    if fmt == "json":
        out = render_json(shown)
    elif fmt == "sarif":
        out = render_sarif(shown)
    elif fmt == "github":
        out = render_github(shown, decide)
    else:
        colour = use_colour(args.color, sys.stdout, os.environ) and (args.color == "always" or not args.output)
        out = render_text(shown, colour=colour, fail_on=decide)
    out = out if out.endswith("\n") else out + "\n"
    if args.output:
        try:
            args.output.write_text(out, encoding="utf-8")
        except OSError as exc:
            print(f"infra-review check: --output {args.output}: {exc.strerror or exc}; give a writable file",
                  file=sys.stderr)
            return 2
        sys.stdout.write(summary_line(report, decide) + f" — {args.format} written to {args.output}\n")
    else:
        sys.stdout.write(out)
    return 0 if fail_on == "never" else (1 if fails(report.findings, fail_on) else 0)


def add_parser(sub) -> None:
    c = sub.add_parser("check", help="render a repository (or plain manifests) and check it against the rules")
    c.add_argument("path", type=Path, help="repository root, overlay folder, or file/folder of plain manifests")
    c.add_argument("--base", help="a second tree, or a git revision of PATH's repository: findings there are existing")
    c.add_argument("--env", action="append", help="only these environments (repeatable); for plain manifests, "
                                                   "the environment they are judged as (default production)")
    c.add_argument("--format", choices=("text", "json", "sarif", "github"), default="text")
    c.add_argument("--config", type=Path, help=f"config file (default: {CONFIG_PATH} in the repository)")
    c.add_argument("--fail-on", choices=("new", "all", "never"),
                   help="exit 1 on new errors (default), on any error, or never (the report only)")
    c.add_argument("--output", type=Path, help="write the report (any --format) to this file; stdout gets the summary")
    c.add_argument("--rule", action="append", metavar="ID", help="only this rule (repeatable)")
    c.add_argument("--skip-rule", action="append", metavar="ID", help="leave this rule out (repeatable)")
    c.add_argument("--min-severity", choices=("error", "warning", "notice"), default="notice",
                   help="leave out findings below this severity")
    c.add_argument("--new-only", action="store_true", help="only findings new against --base")
    c.add_argument("--quiet", action="store_true", help="only errors and the summary")
    c.add_argument("--color", choices=COLOR_CHOICES, default="auto",
                   help="colour the text report: auto (a terminal, unless NO_COLOR is set), always, never")
    c.add_argument("--verbose", action="store_true", help="print the time each stage took (on stderr)")
    c.add_argument("--root", type=Path, help="the repository root Flux paths are relative to (default: PATH or "
                                             "its git work tree, whichever more of the Flux paths resolve from)")
    c.add_argument("--offline", action="store_true", help="fetch nothing: remote resources are reported as not "
                                                          "checked (same as `fetch: {enabled: false}`)")
    c.set_defaults(func=run)
