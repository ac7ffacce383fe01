"""`infra-review review --repo PATH --base REF --head REF`: the App's review, printed instead of posted.

Same pipeline as the App (affected targets of BASE...HEAD, both sides rendered, findings marked
new), same payload builders, so what is printed is what the App would send for that pull request.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from bot.cli.check import UsageError, load_config, materialize_ref, resolve_commit
from bot.model import Finding
from bot.publish.report import fails
from bot.render.kustomize import RendererMissing
from bot.repo.git import GitError, git
from bot.review.anchors import parse_diff
from bot.review.spans import object_spans


def _diff(repo: Path, span: str, *options: str) -> str:
    try:
        out = git(repo, "diff", "-M", *options, operands=[span], paths=[])
    except GitError as exc:
        raise UsageError(f"git diff {span}: {exc}") from None
    return out.decode("utf-8", errors="replace")


def changed_paths(name_status: str) -> frozenset[str]:
    """Paths of `git diff --name-status -M` output, renamed files under both names."""
    paths: set[str] = set()
    for line in name_status.splitlines():
        parts = line.split("\t")
        if len(parts) >= 2:
            paths.update(p for p in parts[1:] if p)
    return frozenset(paths)


def run(args: argparse.Namespace) -> int:
    from bot.publish import github
    from bot.publish.dryrun import render_dry_run
    from bot.review.pipeline import run_check

    repo = args.repo.resolve()
    try:
        if not (repo / ".git").exists():
            raise UsageError(f"--repo {args.repo}: not a git repository")
        base_sha, head_sha = resolve_commit(repo, args.base, "--base"), resolve_commit(repo, args.head, "--head")
        span = f"{base_sha}...{head_sha}"
        changed = changed_paths(_diff(repo, span, "--name-status"))
        diff = parse_diff(_diff(repo, span))
        with tempfile.TemporaryDirectory(prefix="infra-review-review-") as tmp:
            head = materialize_ref(repo, head_sha, Path(tmp) / "head", "--head")
            base = materialize_ref(repo, base_sha, Path(tmp) / "base", "--base")
            config = load_config(args.config, base)
            report = run_check(head, base, config, changed=changed, affected_only=True, diff=True)
            spans = object_spans(head, report.findings)
    except (UsageError, RendererMissing) as exc:
        print(f"infra-review review: {exc}", file=sys.stderr)
        return 2

    def object_span(f: Finding) -> tuple[int, int] | None:
        return spans.get(id(f))

    if args.format == "json":
        payload = {
            "check_run": github.check_run_complete(report, 0, fail_on=config.fail_on),
            "review": github.review_payload(report, diff, (), mode=config.comments, object_span=object_span),
        }
        out = json.dumps(payload, indent=2, sort_keys=True)
    else:
        out = render_dry_run(report, diff, mode=config.comments, fail_on=config.fail_on, object_span=object_span)
    sys.stdout.write(out if out.endswith("\n") else out + "\n")
    return 1 if fails(report.findings, config.fail_on) else 0


def add_parser(sub) -> None:
    r = sub.add_parser("review", help="dry run of the App on a local git repository: the check run and review "
                                      "comments it would post for BASE...HEAD")
    r.add_argument("--repo", type=Path, default=Path("."), help="the git repository (default: cwd)")
    r.add_argument("--base", required=True, help="the branch the pull request merges into (diff from the merge base)")
    r.add_argument("--head", required=True, help="the pull request's head revision")
    r.add_argument("--format", choices=("text", "json"), default="text")
    r.add_argument("--config", type=Path, help="config file (default: .github/infra-review.yml of BASE, as the App reads it "
                                                         "from the default branch)")
    r.set_defaults(func=run)
