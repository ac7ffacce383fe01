"""`infra-review check PATH [--base PATH_OR_REF]`: findings for people, CI or tools."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

from bot.config import Config, ConfigError, parse_config
from bot.model import Finding
from bot.render.kustomize import RendererMissing
from bot.repo.tree import find_root

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
        return parse_config(path.read_text(encoding="utf-8"))
    except ConfigError as exc:
        raise UsageError(f"{path}: {exc}; fix the key or remove it (see docs/rules.md)") from None


def materialize_ref(repo: Path, ref: str, dest: Path) -> Path:
    """Extract a git revision of `repo` into `dest` (regular files only)."""
    try:
        out = subprocess.run(["git", "-C", str(repo), "archive", "--format=tar", ref],
                             capture_output=True, timeout=120, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise UsageError(f"--base {ref}: cannot run git ({exc}); give a directory instead") from None
    if out.returncode != 0:
        msg = out.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["unknown revision"]
        raise UsageError(f"--base {ref}: not a directory nor a git revision of {repo} ({msg[0]})")
    with tarfile.open(fileobj=BytesIO(out.stdout)) as tar:
        tar.extractall(dest, members=[m for m in tar.getmembers() if m.isfile() or m.isdir()], filter="data")
    return dest


def failing(findings: list[Finding], fail_on: str) -> bool:
    return any(f.severity == "error" and not f.suppressed and (f.new or fail_on == "all") for f in findings)


def run(args: argparse.Namespace) -> int:
    from bot.publish.github_actions import render_github
    from bot.publish.jsonout import render_json
    from bot.publish.sarif import render_sarif
    from bot.publish.text import render_text
    from bot.review.pipeline import run_check

    try:
        path = args.path.resolve()
        if not path.exists():
            raise UsageError(f"{args.path}: no such file or directory; give a repository or manifest folder")
        root = find_root(path) if path.is_dir() else path.parent
        scope = None
        head = path
        config = load_config(args.config, root if path.is_dir() else path.parent)
        if path.is_dir() and path != root and (root / ".git").exists():
            rel = path.relative_to(root).as_posix()
            if config.is_ignored(rel):
                # The enclosing repository says this folder is not part of it (a nested example
                # repository): check it as a repository of its own.
                root = path
                config = load_config(args.config, path)
            else:
                head, scope = root, rel
        with tempfile.TemporaryDirectory(prefix="infra-review-base-") as tmp:
            base = None
            if args.base:
                candidate = Path(args.base)
                base = candidate.resolve() if candidate.exists() else materialize_ref(root, args.base, Path(tmp))
            report = run_check(head, base, config, envs=args.env, scope=scope)
    except UsageError as exc:
        print(f"infra-review check: {exc}", file=sys.stderr)
        return 2
    except RendererMissing as exc:
        print(f"infra-review check: {exc}", file=sys.stderr)
        return 2
    fail_on = args.fail_on or config.fail_on
    fmt = args.format
    if fmt == "json":
        out = render_json(report)
    elif fmt == "sarif":
        out = render_sarif(report)
    elif fmt == "github":
        out = render_github(report)
    else:
        out = render_text(report, colour=sys.stdout.isatty())
    sys.stdout.write(out if out.endswith("\n") else out + "\n")
    return 1 if failing(report.findings, fail_on) else 0


def add_parser(sub) -> None:
    c = sub.add_parser("check", help="render a repository (or plain manifests) and check it against the rules")
    c.add_argument("path", type=Path, help="repository root, overlay folder, or file/folder of plain manifests")
    c.add_argument("--base", help="a second tree, or a git revision of PATH's repository: findings there are existing")
    c.add_argument("--env", action="append", help="only these environments (repeatable); for plain manifests, "
                                                   "the environment they are judged as (default production)")
    c.add_argument("--format", choices=("text", "json", "sarif", "github"), default="text")
    c.add_argument("--config", type=Path, help=f"config file (default: {CONFIG_PATH} in the repository)")
    c.add_argument("--fail-on", choices=("new", "all"), help="exit 1 on new errors (default) or on any error")
    c.set_defaults(func=run)
