"""The example pull request (examples/ built into a git repository by the demo) as GitHub would serve
it: both trees, the `pulls/list-files` entries, and the payloads that announce it."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

from bot.cli.demo import BASE_BRANCH, PR_BRANCH, build_example_repo
from tests.conftest import load_payload, ours
from tests.fakegh import FakeGitHub, FakePull

REPO = "Codertocat/Hello-World"
NUMBER = 2
CONFIG = ".github/infra-review.yml"
STATUS = {"A": "added", "M": "modified", "D": "removed", "R": "renamed"}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=True, text=True).stdout


def tree_of(repo: Path, ref: str) -> dict[str, bytes]:
    raw = subprocess.run(["git", "-C", str(repo), "archive", "--format=tar", ref], capture_output=True,
                         check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def pr_files(repo: Path, base: str, head: str) -> list[dict]:
    """`pulls/list-files` entries as GitHub computes them: BASE...HEAD, patch = the hunks only."""
    files = []
    for line in git(repo, "diff", "--name-status", "-M", f"{base}...{head}").splitlines():
        code, *paths = line.split("\t")
        path = paths[-1]
        diff = git(repo, "diff", "-M", f"{base}...{head}", "--", *paths)
        patch = diff[diff.index("@@"):].removesuffix("\n")
        body = patch.splitlines()
        entry = {"filename": path, "status": STATUS[code[0]], "patch": patch,
                 "additions": sum(ln.startswith("+") for ln in body),
                 "deletions": sum(ln.startswith("-") for ln in body)}
        if code[0] == "R":
            entry["previous_filename"] = paths[0]
        files.append(entry)
    return files


def example_pr(folder: Path) -> dict:
    """The example PR's SHAs, trees and changed files, from a repository built under `folder`."""
    repo = build_example_repo(folder / "shop")
    base_sha, head_sha = git(repo, "rev-parse", BASE_BRANCH).strip(), git(repo, "rev-parse", PR_BRANCH).strip()
    return {"base_sha": base_sha, "head_sha": head_sha, "base": tree_of(repo, base_sha),
            "head": tree_of(repo, head_sha), "files": pr_files(repo, base_sha, head_sha)}


def seed_example(fakegh: FakeGitHub, example: dict, config: bytes = b"") -> FakePull:
    repo = fakegh.repos[REPO]
    pull = fakegh.add_pull(REPO, FakePull(number=NUMBER, head_sha=example["head_sha"], base_sha=example["base_sha"],
                                          merge_base=example["base_sha"], files=example["files"],
                                          head_ref=PR_BRANCH, base_ref=BASE_BRANCH))
    repo.trees = {example["base_sha"]: example["base"], example["head_sha"]: example["head"],
                  repo.default_branch: {**example["base"], **({CONFIG: config} if config else {})}}
    return pull


def opened(example: dict) -> dict:
    payload = load_payload("pull_request", "opened.payload.json")
    pr = payload["pull_request"]
    pr["head"]["sha"], pr["base"]["sha"] = example["head_sha"], example["base_sha"]
    return payload


def rerequested(example: dict) -> dict:
    payload = ours(load_payload("check_run", "rerequested.payload.json"))
    payload["repository"]["full_name"] = REPO
    payload["repository"]["name"], payload["repository"]["owner"]["login"] = REPO.split("/")[1], REPO.split("/")[0]
    payload["check_run"].update(head_sha=example["head_sha"], external_id=str(NUMBER))
    return payload
