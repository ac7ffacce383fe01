"""The repository root is where Flux's paths resolve (issue §3): a GitOps repository kept inside an
unrelated git work tree is checked from its own root, `--root` forces one, and when no Flux path
resolves one finding says the root looks wrong instead of one "path not found" per Kustomization."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from trees import flux_kustomization, run_bot, write

from bot.repo.tree import choose_root

CONFIGMAP = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  key: value\n"



def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                   env={"PATH": "/usr/bin:/bin", "HOME": str(repo), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x"})


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_bot(*args, cwd=cwd)


def gitops(root: Path) -> Path:
    """A small Flux repository: two clusters' Kustomizations, the overlays they apply, a base."""
    return write(root, {
        "clusters/production/apps.yaml": flux_kustomization("./apps/production", "apps"),
        "clusters/staging/apps.yaml": flux_kustomization("./apps/staging", "apps"),
        "apps/production/kustomization.yaml": "resources:\n- ../base\n",
        "apps/staging/kustomization.yaml": "resources:\n- ../base\n",
        "apps/base/kustomization.yaml": "resources:\n- cm.yaml\n",
        "apps/base/cm.yaml": CONFIGMAP.format(name="settings"),
    })


def outer_with(tmp_path: Path, ignored: bool) -> tuple[Path, Path]:
    """An unrelated git work tree holding the GitOps repository at vendor/gitops (ignored or not)."""
    outer = write(tmp_path / "mono", {"README.md": "a monorepo\n", "src/main.py": "print()\n"})
    if ignored:
        write(outer, {".gitignore": "vendor/\n"})
    git(outer, "init", "-q")
    git(outer, "add", "-A")
    git(outer, "commit", "-q", "-m", "outer")
    return outer, gitops(outer / "vendor" / "gitops")


@pytest.mark.parametrize("ignored", [True, False], ids=["ignored-folder", "plain-subfolder"])
def test_a_gitops_repository_inside_an_unrelated_work_tree_resolves_from_itself(tmp_path, ignored):
    outer, inner = outer_with(tmp_path, ignored)
    res = cli("check", str(inner), "--format", "json", cwd=tmp_path)
    doc = json.loads(res.stdout)
    assert [(t["path"], t["status"]) for t in doc["targets"]] == [("apps/production", "ok"), ("apps/staging", "ok")]
    assert not [f for f in doc["findings"] if f["rule"] in ("flux-config", "build-error") and "path" in f["message"]
                and ("not a directory" in f["message"] or "root looks wrong" in f["message"])]
    text = cli("check", str(inner), cwd=tmp_path).stdout
    assert (f"note: `{inner}` sits inside the git work tree `{outer}` but was checked as a repository of its own "
            f"(2 of the 2 Flux Kustomization paths in it resolve from it, 0 from the work tree); give --root to "
            f"choose another root.") in text


def test_root_forces_the_root_and_the_report_says_which(tmp_path):
    outer, inner = outer_with(tmp_path, ignored=False)
    res = cli("check", str(inner), "--root", str(outer), "--format", "json", cwd=tmp_path)
    doc = json.loads(res.stdout)
    assert f"Paths were resolved from the root `{outer}`, as given with --root." in doc["notes"]
    [wrong] = [f for f in doc["findings"] if f["rule"] == "flux-config" and f["field"] == "spec.path"]
    assert f"is a folder of the repository root used, `{outer}`, so the root looks wrong" in wrong["message"]
    res = cli("check", str(inner), "--root", str(inner), "--format", "json", cwd=tmp_path)
    doc = json.loads(res.stdout)
    assert [t["status"] for t in doc["targets"]] == ["ok", "ok"]
    assert f"Paths were resolved from the root `{inner}`, as given with --root." in doc["notes"]
    res = cli("check", str(inner), "--root", str(tmp_path / "elsewhere"), cwd=tmp_path)
    assert res.returncode == 2 and "is outside the root" in res.stderr


def test_a_folder_of_a_repository_still_resolves_from_the_work_tree(tmp_path):
    """`check repo/clusters/production`: the Flux paths resolve from the repository, not the folder."""
    repo = gitops(tmp_path / "repo")
    git(repo, "init", "-q")
    choice = choose_root(repo / "clusters" / "production")
    assert (choice.root, choice.kind, choice.note) == (repo, "git", None)
    res = cli("check", str(repo / "clusters" / "production"), "--format", "json", cwd=tmp_path)
    doc = json.loads(res.stdout)
    assert [(t["path"], t["status"]) for t in doc["targets"]] == [("apps/production", "ok")]


def test_a_tie_keeps_the_work_tree_unless_it_ignores_the_folder(tmp_path):
    """No Flux path tells the roots apart (an overlay folder refers to `../../base`): the work tree."""
    outer = write(tmp_path / "repo", {
        "overlays/production/kustomization.yaml": "resources:\n- ../../base\n",
        "base/kustomization.yaml": "resources:\n- cm.yaml\n", "base/cm.yaml": CONFIGMAP.format(name="cm"),
        "vendor/other/overlays/production/kustomization.yaml": "resources:\n- cm.yaml\n",
        "vendor/other/overlays/production/cm.yaml": CONFIGMAP.format(name="cm"),
    })
    git(outer, "init", "-q")
    assert choose_root(outer / "overlays" / "production").root == outer
    assert choose_root(outer / "vendor" / "other").root == outer
    write(outer, {".gitignore": "vendor/\n"})
    choice = choose_root(outer / "vendor" / "other")
    assert (choice.root, choice.kind) == (outer / "vendor" / "other", "path")
    assert "the work tree's .gitignore leaves it out" in choice.note


def test_when_no_flux_path_resolves_one_finding_says_the_root_looks_wrong(tmp_path):
    repo = write(tmp_path / "repo", {
        "clusters/production/apps.yaml": flux_kustomization("./gitops/apps/production", "apps"),
        "clusters/production/infra.yaml": flux_kustomization("./gitops/infrastructure", "infra"),
        "clusters/staging/apps.yaml": flux_kustomization("./gitops/apps/staging", "apps"),
        "overlays/production/kustomization.yaml": "resources:\n- cm.yaml\n",
        "overlays/production/cm.yaml": CONFIGMAP.format(name="cm"),
    })
    git(repo, "init", "-q")
    doc = json.loads(cli("check", str(repo), "--format", "json", cwd=tmp_path).stdout)
    paths = [f for f in doc["findings"] if f["rule"] == "flux-config" and f["field"] == "spec.path"]
    assert len(paths) == 1, [f["message"] for f in paths]
    [wrong] = paths
    assert wrong["severity"] == "error" and (wrong["file"], wrong["line"]) == ("clusters/production/apps.yaml", 8)
    assert wrong["message"].startswith(
        "Kustomization flux-system/apps (`clusters/production/apps.yaml`, in production): none of the 3 Flux "
        "Kustomizations' `spec.path`s (`./gitops/apps/production`, `./gitops/infrastructure`, "
        f"`./gitops/apps/staging`) is a folder of the repository root used, `{repo}`, so the root looks wrong")
    assert "--root" in wrong["remediation"]


def test_one_missing_path_among_resolving_ones_is_its_own_finding(tmp_path):
    repo = gitops(tmp_path / "repo")
    write(repo, {"clusters/staging/infra.yaml": flux_kustomization("./infrastructure", "infra")})
    git(repo, "init", "-q")
    doc = json.loads(cli("check", str(repo), "--format", "json", cwd=tmp_path).stdout)
    [missing] = [f for f in doc["findings"] if f["rule"] == "flux-config" and f["field"] == "spec.path"]
    assert missing["file"] == "clusters/staging/infra.yaml" and "kustomization path not found" in missing["message"]


def test_nothing_to_check_because_no_flux_path_resolves_says_the_root_looks_wrong(tmp_path):
    repo = write(tmp_path / "repo", {
        "clusters/production/apps.yaml": flux_kustomization("./gitops/apps", "apps"),
        "clusters/production/infra.yaml": flux_kustomization("./gitops/infra", "infra"),
    })
    git(repo, "init", "-q")
    res = cli("check", str(repo), cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr.strip() == (
        f"infra-review check: {repo}: none of the 2 Flux Kustomization paths (`gitops/apps`, `gitops/infra`) is a "
        f"folder of this root, so nothing could be built and the root looks wrong: give the repository they are "
        f"relative to with --root")
