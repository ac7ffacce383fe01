"""`infra-review build` reads DIR through the same repository model as `check`: the repository's
.github/infra-review.yml applies (environment aliases and paths, `ignore`), and a folder the
repository ignores is built as a repository of its own, with its own configuration."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from trees import write

from bot.__main__ import main
from bot.render.kustomize import find_kustomize

CONFIG = ".github/infra-review.yml"
CONFIGMAP = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  key: value\n"
FLUX = """\
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: {name}
  namespace: flux-system
spec:
  interval: 10m
  path: ./apps
  prune: true
  sourceRef:
    kind: GitRepository
    name: flux-system
  targetNamespace: {namespace}
"""
APPS = {"apps/kustomization.yaml": "resources:\n- cm.yaml\n", "apps/cm.yaml": CONFIGMAP.format(name="app")}



def build(root: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["build", *args, "--root", str(root)])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_plain_build_prints_exactly_what_kustomize_prints(tmp_path, capsys):
    root = write(tmp_path, {**APPS, "overlays/production/kustomization.yaml": "resources:\n- ../../apps\n"
                            "namePrefix: prod-\n", CONFIG: "ignore: [legacy/**]\n"})
    code, out, err = build(root, str(root / "overlays/production"), capsys=capsys)
    kustomize = find_kustomize()
    expected = subprocess.run([*kustomize.argv, "overlays/production"], cwd=root, capture_output=True, text=True,
                              check=True).stdout
    assert code == 0, err
    assert out == expected and "name: prod-app" in out


def test_flux_kustomizations_under_ignored_paths_are_not_part_of_the_repository(tmp_path, capsys):
    root = write(tmp_path, {**APPS, "clusters/production/apps.yaml": FLUX.format(name="apps", namespace="shop"),
                            "legacy/clusters/production/apps.yaml": FLUX.format(name="apps-old", namespace="old")})
    code, out, err = build(root, str(root / "apps"), "--flux", capsys=capsys)
    assert code == 0, err
    assert "# Flux Kustomization flux-system/apps-old (legacy/clusters/production/apps.yaml" in out, \
        "without configuration both Flux Kustomizations apply the folder"

    write(root, {CONFIG: "ignore: [legacy/**]\n"})
    code, out, err = build(root, str(root / "apps"), "--flux", capsys=capsys)
    assert code == 0, err
    assert "namespace: shop" in out and "old" not in out and "# Flux Kustomization" not in out, out

    write(root, {CONFIG: "ignore: [legacy/**, clusters/**]\n"})
    code, out, err = build(root, str(root / "apps"), "--flux", capsys=capsys)
    assert code == 2 and out == ""
    assert "no Flux Kustomization outside the configured `ignore` paths" in err


def test_environment_aliases_and_paths_name_each_flux_target_as_check_does(tmp_path, capsys):
    root = write(tmp_path, {**APPS, "clusters/qa/apps.yaml": FLUX.format(name="apps-qa", namespace="qa"),
                            "clusters/eu-1/apps.yaml": FLUX.format(name="apps-eu", namespace="eu")})
    code, out, _ = build(root, str(root / "apps"), "--flux", capsys=capsys)
    assert code == 0
    assert "(clusters/qa/apps.yaml, environment qa)" in out and "(clusters/eu-1/apps.yaml, environment eu-1)" in out

    write(root, {CONFIG: "environments:\n  aliases: {qa: staging}\n  paths: {production: ['clusters/eu-*/**']}\n"})
    code, out, err = build(root, str(root / "apps"), "--flux", capsys=capsys)
    assert code == 0, err
    headers = [line for line in out.splitlines() if line.startswith("# Flux Kustomization")]
    assert headers == ["# Flux Kustomization flux-system/apps-eu (clusters/eu-1/apps.yaml, environment production)",
                       "# Flux Kustomization flux-system/apps-qa (clusters/qa/apps.yaml, environment staging)"]
    assert "namespace: eu" in out and "namespace: qa" in out

    main(["check", str(root), "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    assert sorted((t["path"], t["environment"]) for t in report["targets"]) == [
        ("apps", "production"), ("apps", "staging")], "check sees the same targets"


def test_an_ignored_folder_is_built_as_a_repository_of_its_own(tmp_path, capsys):
    """Like `check`: a nested repository (an example shipped inside this one) has its own root, so its
    Flux paths resolve from there, its overlays reach its bases, and its own configuration applies."""
    shop = "examples/shop/"
    root = write(tmp_path, {
        CONFIG: "ignore: [examples/**]\n",
        **{shop + rel: text for rel, text in APPS.items()},
        shop + "clusters/production/apps.yaml": FLUX.format(name="apps", namespace="shop"),
        shop + "clusters/old/apps.yaml": FLUX.format(name="apps-old", namespace="old"),
        shop + CONFIG: "ignore: [clusters/old/**]\n",
        shop + "base/kustomization.yaml": "resources:\n- cm.yaml\n",
        shop + "base/cm.yaml": CONFIGMAP.format(name="base"),
        shop + "overlays/production/kustomization.yaml": "resources:\n- ../../base\nnamespace: prod\n",
    })
    code, out, err = build(root, str(root / shop / "apps"), "--flux", capsys=capsys)
    assert code == 0, err
    assert "namespace: shop" in out and "# Flux Kustomization" not in out, "its own `ignore` left one target"

    code, out, err = build(root, str(root / shop / "overlays/production"), capsys=capsys)
    assert code == 0, err
    assert "name: base" in out and "namespace: prod" in out

    write(root, {CONFIG: "ignore: []\n"})
    code, out, err = build(root, str(root / shop / "apps"), "--flux", capsys=capsys)
    assert code == 2 and "no Flux Kustomization" in err, "part of the outer repository, its Flux paths miss"


def test_a_configuration_error_is_a_usage_error_naming_the_key(tmp_path, capsys):
    root = write(tmp_path, {**APPS, CONFIG: "ignroe: [legacy/**]\n"})
    code, out, err = build(root, str(root / "apps"), capsys=capsys)
    assert code == 2 and out == ""
    assert err.startswith("infra-review build: ") and "ignroe" in err and CONFIG in err


def test_an_explicit_config_file_is_the_one_read(tmp_path, capsys):
    root = write(tmp_path, {**APPS, "clusters/qa/apps.yaml": FLUX.format(name="apps", namespace="qa"),
                            "other.yml": "ignore: [clusters/**]\n"})
    code, out, err = build(root, str(root / "apps"), "--flux", capsys=capsys)
    assert code == 0 and "namespace: qa" in out, err
    code, out, err = build(root, str(root / "apps"), "--flux", "--config", str(root / "other.yml"), capsys=capsys)
    assert code == 2 and "no Flux Kustomization outside the configured `ignore` paths" in err
