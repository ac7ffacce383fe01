"""infra-review's own deployment passes infra-review (the before-stop hook runs the same command)."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest_paths import REPO


def test_deploy_passes_its_own_check():
    out = subprocess.run([sys.executable, "-m", "bot", "check", "deploy", "--format", "json"], cwd=REPO,
                         capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO),
                                                               "HOME": "/tmp",
                                                               "INFRA_REVIEW_CACHE": os.environ.get("INFRA_REVIEW_CACHE", "")})
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr
    import json

    doc = json.loads(out.stdout)
    assert {t["path"] for t in doc["targets"]} == {"deploy/overlays/development", "deploy/overlays/production",
                                                      "deploy/overlays/staging"}
    assert all(t["status"] == "ok" for t in doc["targets"])
    assert doc["findings"] == []


def test_ignored_paths_are_not_part_of_the_repository(tmp_path):
    """A nested example repository with its own bootstrap GitRepository would otherwise decide which
    sources count as this repository."""
    from bot.config import parse_config
    from bot.review.pipeline import make_model

    nested = tmp_path / "examples/fleet/clusters/prod/flux-system"
    nested.mkdir(parents=True)
    (nested / "gotk-sync.yaml").write_text(
        "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata:\n  name: flux-system\n"
        "  namespace: flux-system\nspec:\n  url: https://example.com/fleet\n")
    (tmp_path / "deploy/overlays/prod").mkdir(parents=True)
    (tmp_path / "deploy/overlays/prod/kustomization.yaml").write_text("resources: []\n")
    (tmp_path / "deploy/clusters").mkdir(parents=True)
    (tmp_path / "deploy/clusters/app.yaml").write_text(
        "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata:\n  name: app\nspec:\n"
        "  url: https://example.com/app\n---\napiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\n"
        "metadata:\n  name: app\nspec:\n  path: ./deploy/overlays/prod\n  sourceRef:\n    kind: GitRepository\n"
        "    name: app\n")
    seen = make_model(tmp_path, parse_config(None))
    assert [t.flux for t in seen.targets] == [None], "the nested bootstrap source hides ours"
    model = make_model(tmp_path, parse_config("ignore: [examples/**]\n"))
    assert [(t.path, t.flux.name) for t in model.targets] == [("deploy/overlays/prod", "app")]


def test_an_ignored_folder_is_checked_as_a_repository_of_its_own():
    out = subprocess.run([sys.executable, "-m", "bot", "check", "examples/repo", "--format", "json"], cwd=REPO,
                         capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO),
                                                               "HOME": "/tmp",
                                                               "INFRA_REVIEW_CACHE": os.environ.get("INFRA_REVIEW_CACHE", "")})
    import json

    doc = json.loads(out.stdout)
    assert out.returncode == 0 and len(doc["targets"]) == 6
    assert all(not t["path"].startswith("examples/") for t in doc["targets"]), "paths relative to its own root"
