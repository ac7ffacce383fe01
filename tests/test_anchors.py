"""Anchors on real diffs: a real Deployment (podinfo's, carried in tests/fixtures), edited in a throwaway git repo."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest_paths import PODINFO

from bot.model import Finding, Origin, ResourceId
from bot.review.anchors import anchor, from_pr_files, parse_diff

DEPLOY = "kustomize/deployment.yaml"
pytestmark = pytest.mark.skipif(not shutil.which("git"), reason="needs git")


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def _delete_block(lines: list[str], first: str, indent: str) -> list[str]:
    """Remove the line starting with `first` and the more-indented lines under it."""
    i = next(n for n, line in enumerate(lines) if line.startswith(first))
    j = i + 1
    while j < len(lines) and lines[j].startswith(indent):
        j += 1
    return lines[:i] + lines[j:]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pr")
    _git(root, "init", "-q")
    _git(root, "config", "user.email", "t@example.invalid")
    _git(root, "config", "user.name", "t")
    (root / "kustomize").mkdir()
    for name in ("deployment.yaml", "hpa.yaml", "service.yaml", "kustomization.yaml"):
        shutil.copy(PODINFO / name, root / "kustomize" / name)
    _git(root, "add", ".")
    _git(root, "commit", "-qm", "base")
    _git(root, "tag", "base")

    dep = root / DEPLOY
    lines = dep.read_text().splitlines(keepends=True)
    lines = [line.replace("podinfo:6.14.1", "podinfo:latest") for line in lines]
    lines = _delete_block(lines, "        readinessProbe:", "          ")
    lines = _delete_block(lines, "          limits:", "            ")
    dep.write_text("".join(lines))
    (root / "kustomize/autoscaling").mkdir()
    _git(root, "mv", "kustomize/hpa.yaml", "kustomize/autoscaling/hpa.yaml")
    hpa = root / "kustomize/autoscaling/hpa.yaml"
    hpa.write_text(hpa.read_text().replace("minReplicas: 2", "minReplicas: 1"))
    _git(root, "mv", "kustomize/service.yaml", "kustomize/svc.yaml")
    (root / "kustomize/configmap.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\ndata:\n  KEY: value\n")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "head")
    return root


@pytest.fixture(scope="module")
def diff_text(repo: Path) -> str:
    return _git(repo, "diff", "-M", "base", "HEAD")


@pytest.fixture(scope="module")
def head_lines(repo: Path) -> list[str]:
    return (repo / DEPLOY).read_text().splitlines()


def _line_of(lines: list[str], text: str) -> int:
    return next(n for n, line in enumerate(lines, 1) if text in line)


def _finding(file: str, line: int | None, via: str = "manifest", rule: str = "latest-tag") -> Finding:
    return Finding(rule, "error", "production", "msg", "fix",
                   resource=ResourceId("apps", "v1", "Deployment", "production", "podinfo"),
                   container="podinfod", origin=Origin(file, line, line, via))


def test_added_context_and_deletion_borders(diff_text: str, head_lines: list[str]) -> None:
    fd = parse_diff(diff_text).files[DEPLOY]
    image = _line_of(head_lines, "podinfo:latest")
    assert fd.status == "modified"
    assert image in fd.added
    assert image - 1 in fd.context and image - 1 not in fd.near_deletions  # a replacement, not a deletion
    after_liveness = _line_of(head_lines, "        resources:") - 1
    assert {after_liveness, after_liveness + 1} <= fd.near_deletions
    assert fd.near_deletions <= fd.commentable
    assert fd.in_one_hunk(image, image) and not fd.in_one_hunk(image, after_liveness)


def test_rename_new_file_and_pure_rename(diff_text: str) -> None:
    files = parse_diff(diff_text).files
    hpa = files["kustomize/autoscaling/hpa.yaml"]
    assert hpa.status == "renamed" and hpa.old_path == "kustomize/hpa.yaml"
    assert len(hpa.added) == 1 and "kustomize/hpa.yaml" not in files
    new = files["kustomize/configmap.yaml"]
    assert new.status == "added" and new.added == frozenset(range(1, 7)) and not new.context
    svc = files["kustomize/svc.yaml"]
    assert svc.status == "renamed" and not svc.commentable


def test_anchor_own_line_by_mode(diff_text: str, head_lines: list[str]) -> None:
    d = parse_diff(diff_text)
    image = _line_of(head_lines, "podinfo:latest")
    assert anchor(_finding(DEPLOY, image), d) == image
    context_line = image - 1
    assert anchor(_finding(DEPLOY, context_line), d) is None
    assert anchor(_finding(DEPLOY, context_line), d, mode="diff") == context_line
    outside = _line_of(head_lines, "kind: Deployment")
    assert anchor(_finding(DEPLOY, outside), d, mode="diff") is None
    assert anchor(_finding("kustomize/kustomization.yaml", 1), d) is None
    assert anchor(_finding("kustomize/configmap.yaml", 4), d) == 4
    with pytest.raises(ValueError):
        anchor(_finding(DEPLOY, image), d, mode="everything")


def test_deleted_probe_anchors_where_it_was_removed(diff_text: str, head_lines: list[str]) -> None:
    d = parse_diff(diff_text)
    container = _line_of(head_lines, "- name: podinfod")
    span = (1, len(head_lines))
    missing_probe = _finding(DEPLOY, container, via="enclosing", rule="missing-probes")
    assert anchor(missing_probe, d) is None
    where = anchor(missing_probe, d, object_span=span)
    assert where == _line_of(head_lines, "timeoutSeconds: 5")  # last line before the removed readinessProbe
    assert "liveness" not in head_lines[where - 1] and where in d.files[DEPLOY].near_deletions
    # a present-field finding takes the nearest changed line instead (the image edit next to it)
    assert anchor(_finding(DEPLOY, container), d, object_span=span) == container + 1
    # a span the PR did not touch gives no anchor
    assert anchor(missing_probe, d, object_span=(1, 5)) is None


def test_pr_file_patches_match_full_diff(repo: Path, diff_text: str) -> None:
    """`pulls/list-files` gives hunks without headers; both inputs must give the same lines."""
    full = parse_diff(diff_text)
    entries = []
    for path, fd in full.files.items():
        text = _git(repo, "diff", "-M", "base", "HEAD", "--", *(p for p in (fd.old_path, path) if p))
        patch = text[text.index("@@"):] if "@@" in text else None
        entry = {"filename": path, "status": fd.status, "patch": patch}
        if fd.old_path:
            entry["previous_filename"] = fd.old_path
        entries.append(entry)
    pr = from_pr_files(entries)
    assert set(pr.files) == set(full.files)
    for path, fd in full.files.items():
        got = pr.files[path]
        assert (got.added, got.context, got.near_deletions, got.hunks) == (
            fd.added, fd.context, fd.near_deletions, fd.hunks), path
        assert got.old_path == fd.old_path


def test_missing_or_broken_patch_offers_no_line() -> None:
    d = from_pr_files([
        {"filename": "big.yaml", "status": "modified"},
        {"filename": "odd.yaml", "status": "modified", "patch": "@@ -1,2 +1,9 @@\n+a\n"},
        {"filename": "gone.yaml", "status": "removed", "patch": "@@ -1,2 +0,0 @@\n-a\n-b"},
    ])
    assert d.files["big.yaml"].patch_missing and not d.files["big.yaml"].commentable
    assert d.files["odd.yaml"].patch_missing
    assert anchor(_finding("gone.yaml", 1), d) is None
    assert not d.files["gone.yaml"].commentable


def test_not_a_diff_is_an_error() -> None:
    with pytest.raises(ValueError):
        parse_diff("@@ -1 +1 @@\n+x\n@@ broken")


def test_place_anchor_moves_to_another_document_of_the_object():
    """A probe deleted in a base: the finding's own line is the container in an unchanged overlay
    patch, and the comment goes where the deletion happened in the base."""
    from bot.model import Finding, Origin
    from bot.review.anchors import parse_diff, place_anchor

    diff = parse_diff(
        "diff --git a/base/d.yaml b/base/d.yaml\n--- a/base/d.yaml\n+++ b/base/d.yaml\n"
        "@@ -8,6 +8,3 @@\n         image: app:1\n         livenessProbe: {}\n-        readinessProbe:\n"
        "-          httpGet: {path: /ready, port: 8080}\n-          periodSeconds: 5\n         ports: []\n"
    )
    f = Finding("missing-probes", "error", "production", "m", "r",
                origin=Origin("overlays/production/patch.yaml", 10, 10, "enclosing"))
    assert place_anchor(f, diff, []) is None
    where = place_anchor(f, diff, [("overlays/production/patch.yaml", 1, 20), ("base/d.yaml", 1, 30)])
    assert where is not None and where[0] == "base/d.yaml" and where[1] in diff.get("base/d.yaml").near_deletions
    assert place_anchor(f, diff, [("base/d.yaml", 20, 30)]) is None, "outside the object's span"
