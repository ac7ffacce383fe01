"""`pip install infra-review` from a built wheel gives a working `infra-review`: the package data the
engine reads at run time (the policy table, the vendored CRD schemas, the Helm child) is in the wheel."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest_paths import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".venv", ".git", "__pycache__", "*.egg-info", "build"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w",
                    str(work / "dist"), str(src)], check=True, capture_output=True, timeout=600)
    (wheel,) = (work / "dist").glob("infra_review-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for data in ("rules/policy.yaml", "bot/validate/crds/flux.json", "bot/validate/crds/gateway-api.json",
                 "bot/render/helm_child.py"):
        assert data in names, f"{data} is not in the wheel"
    target = work / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                    str(wheel)], check=True, capture_output=True, timeout=600)
    return target


def run(target: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The installed console script, with the dependencies of this interpreter and nothing of the source tree."""
    env = {**os.environ, "PYTHONPATH": str(target), "PYTHONSAFEPATH": "1"}
    return subprocess.run([str(target / "bin" / "infra-review"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_the_installed_command_checks_the_example(installed, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(REPO / "examples" / "repo", repo)
    where = subprocess.run([sys.executable, "-c", "import bot, rules; print(bot.__file__, rules.__file__)"], cwd=tmp_path,
                           env={**os.environ, "PYTHONPATH": str(installed), "PYTHONSAFEPATH": "1"},
                           capture_output=True, text=True, timeout=60)
    assert where.stdout.split() == [str(installed / "bot" / "__init__.py"), str(installed / "rules" / "__init__.py")]
    version = run(installed, "--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("infra-review ")
    out = run(installed, "check", str(repo), "--format", "json", cwd=tmp_path)
    assert out.returncode in (0, 1), out.stderr
    doc = json.loads(out.stdout)
    assert doc["tool"]["helm"].startswith("v"), "the chart was rendered by the packaged Helm child"
    # Flux's kinds are validated against the packaged CRDs: no note says a kind had no schema.
    assert not [n for n in doc["notes"] if "without a schema" in n]
    explained = run(installed, "explain", "invalid-manifest", cwd=tmp_path)
    assert explained.returncode == 0 and "kubernetes-validate" in explained.stdout
    listed = run(installed, "rules", cwd=tmp_path)
    assert "pod-security" in listed.stdout and "invalid-manifest" in listed.stdout
