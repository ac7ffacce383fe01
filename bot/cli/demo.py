"""`python -m bot demo`: the bundled example pull request, checked and reviewed offline.

Builds a throwaway git repository from `examples/repo` (branch `main`) with the example pull request
applied on branch `pull-request`, then prints what `check` and the App's dry-run `review` say.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from bot.repo.git import git

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BASE_BRANCH = "main"
PR_BRANCH = "pull-request"
_GIT_ENV = {"GIT_AUTHOR_NAME": "infra-review demo", "GIT_AUTHOR_EMAIL": "demo@example.invalid",
            "GIT_COMMITTER_NAME": "infra-review demo", "GIT_COMMITTER_EMAIL": "demo@example.invalid",
            "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}


def _git(repo: Path, *command: str, operands: tuple[str, ...] = ()) -> None:
    git(repo, *command, operands=operands, env={**os.environ, **_GIT_ENV}, timeout=60)


def build_example_repo(dest: Path, examples: Path = EXAMPLES) -> Path:
    """A git repository at `dest`: `main` is examples/repo, `pull-request` has the patch applied (checked out)."""
    import shutil

    shutil.copytree(examples / "repo", dest)
    _git(dest, "-c", f"init.defaultBranch={BASE_BRANCH}", "init", "-q")
    _git(dest, "add", "-A")
    _git(dest, "commit", "-q", "-m", "main: the shop before the pull request")
    _git(dest, "checkout", "-q", "-b", PR_BRANCH)
    _git(dest, "apply", operands=(str((examples / "pull-request.patch").resolve()),))
    _git(dest, "add", "-A")
    _git(dest, "commit", "-q", "-m", "the example pull request")
    return dest


def _section(title: str) -> None:
    print(f"\n{'#' * 100}\n# {title}\n{'#' * 100}\n", flush=True)


def run(args: argparse.Namespace) -> int:
    from bot.__main__ import main

    with tempfile.TemporaryDirectory(prefix="infra-review-demo-") as tmp:
        repo = build_example_repo(Path(tmp) / "shop")
        _section(f"infra-review check <repo> --base {BASE_BRANCH}   (the pull request's tree; NEW = introduced by it)")
        check_rc = main(["check", str(repo), "--base", BASE_BRANCH])
        _section(f"infra-review review --repo <repo> --base {BASE_BRANCH} --head {PR_BRANCH}   "
                 "(what the GitHub App would post)")
        review_rc = main(["review", "--repo", str(repo), "--base", BASE_BRANCH, "--head", PR_BRANCH])
    if check_rc == 2 or review_rc == 2:
        return 2
    print(f"\nThe check run would be required-failing (exit code {review_rc}): the demo itself succeeded.")
    return 0


def add_parser(sub) -> None:
    d = sub.add_parser("demo", help="check and dry-run review the bundled example pull request (offline)")
    d.set_defaults(func=run)
