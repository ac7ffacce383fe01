"""Flux kustomize-controller emulation: generate → build → commonMetadata → substitute."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from conftest_paths import REPO

from bot.render.build import DiskCache, Renderer
from bot.repo.discover import RepoModel
from bot.repo.tree import RepoTree

FLUX = """\
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: apps
  namespace: flux-system
spec:
  interval: 10m
  path: ./apps
  prune: true
  sourceRef:
    kind: GitRepository
    name: flux-system
  targetNamespace: shop
  commonMetadata:
    labels:
      team: payments
  images:
    - name: ghcr.io/example/api
      newTag: 2.0.0
  patches:
    - patch: |-
        - op: add
          path: /spec/replicas
          value: 4
      target:
        kind: Deployment
  postBuild:
    substitute:
      CLUSTER: prod-eu
    substituteFrom:
      - kind: ConfigMap
        name: cluster-vars
"""

APP = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  annotations:
    cluster: ${CLUSTER}
    region: ${REGION}
    tier: ${TIER:=gold}
    owner: ${OWNER}
spec:
  template:
    spec:
      containers:
        - name: api
          image: ghcr.io/example/api:1.0.0
"""

VARS = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: cluster-vars
  namespace: flux-system
data:
  REGION: eu-west-1
"""


def repo(tmp_path: Path) -> Path:
    for rel, text in {"clusters/production/apps.yaml": FLUX, "clusters/production/vars.yaml": VARS,
                      "apps/api/deployment.yaml": APP}.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(textwrap.dedent(text))
    return tmp_path


def test_flux_target_is_found_with_its_environment(tmp_path):
    model = RepoModel(RepoTree(repo(tmp_path)))
    targets = [t for t in model.targets if t.flux]
    assert [(t.path, t.environment, t.flux.name) for t in targets] == [("apps", "production", "apps")]


def test_flux_emulation_applies_every_step_in_order(tmp_path):
    model = RepoModel(RepoTree(repo(tmp_path)))
    target = next(t for t in model.targets if t.flux)
    out = Renderer(model, cache=DiskCache(None)).render(target)
    assert out.ok, out.error
    (dep,) = [o for o in out.objects if o.kind == "Deployment"]
    obj = dep.obj
    assert obj["metadata"]["namespace"] == "shop"
    assert obj["metadata"]["labels"]["team"] == "payments"
    assert obj["spec"]["replicas"] == 4
    assert obj["spec"]["template"]["spec"]["containers"][0]["image"] == "ghcr.io/example/api:2.0.0"
    ann = obj["metadata"]["annotations"]
    assert ann["cluster"] == "prod-eu" and ann["region"] == "eu-west-1" and ann["tier"] == "gold"
    assert ann["owner"] == "${OWNER}", "an unresolvable variable is left as is"
    assert sum("OWNER" in n for n in out.notes) == 1, "and reported once"


def test_values_flux_set_point_at_the_flux_kustomization(tmp_path):
    model = RepoModel(RepoTree(repo(tmp_path)))
    target = next(t for t in model.targets if t.flux)
    dep = next(o for o in Renderer(model, cache=DiskCache(None)).render(target).objects if o.kind == "Deployment")
    flux_lines = (tmp_path / "clusters/production/apps.yaml").read_text().splitlines()
    ns = dep.origin("metadata.namespace")
    assert ns.file == "clusters/production/apps.yaml" and "targetNamespace" in flux_lines[ns.line - 1]
    sub = dep.origin('metadata.annotations.cluster')
    assert sub.file == "clusters/production/apps.yaml" and "CLUSTER" in flux_lines[sub.line - 1]
    label = dep.origin("metadata.labels.team")
    assert "team" in flux_lines[label.line - 1]
    image = dep.origin("spec.template.spec.containers[api].name")
    assert image.file == "apps/api/deployment.yaml" and image.line == 14


def test_cli_build_flux_and_origins(tmp_path):
    root = repo(tmp_path)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "INFRA_REVIEW_CACHE": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-m", "bot", "build", "apps", "--flux"], cwd=root,
                         capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert "namespace: shop" in out.stdout and "prod-eu" in out.stdout
    assert "OWNER" in out.stderr
    plain = subprocess.run([sys.executable, "-m", "bot", "build", "apps", "--flux", "--origins"], cwd=root,
                           capture_output=True, text=True, env=env)
    assert "metadata.namespace = shop" in plain.stdout and "clusters/production/apps.yaml" in plain.stdout
    missing = subprocess.run([sys.executable, "-m", "bot", "build", "apps"], cwd=root,
                             capture_output=True, text=True, env=env)
    assert missing.returncode == 1 and "kustomization" in missing.stderr


def test_values_set_by_the_flux_kustomizations_own_patches_point_at_them(tmp_path):
    root = repo(tmp_path)
    model = RepoModel(RepoTree(root))
    target = next(t for t in model.targets if t.flux)
    dep = next(o for o in Renderer(model, cache=DiskCache(None)).render(target).objects if o.kind == "Deployment")
    lines = (root / "clusters/production/apps.yaml").read_text().splitlines()
    replicas = dep.origin("spec.replicas")
    assert replicas.file == "clusters/production/apps.yaml" and "value: 4" in lines[replicas.line - 1]
    image = dep.origin("spec.template.spec.containers[api].image")
    # Located like a kustomization's `images:` entry: at the key that set the tag.
    assert image.file == "clusters/production/apps.yaml" and "newTag: 2.0.0" in lines[image.line - 1]


def test_without_post_build_steps_the_output_is_kustomizes_own(tmp_path):
    """Nothing to do after the build: the Flux target prints exactly what kustomize printed."""
    from bot.model import Target

    root = repo(tmp_path)
    (root / "apps/kustomization.yaml").write_text("resources:\n- api/deployment.yaml\n")
    dep = root / "apps/api/deployment.yaml"
    # kustomize prints a multi-line value as a `|` block; re-emitting it with PyYAML would quote it
    dep.write_text(dep.read_text().replace("  annotations:\n", "  annotations:\n    note: |\n      one\n      two\n"))
    flux = (root / "clusters/production/apps.yaml").read_text()
    (root / "clusters/production/apps.yaml").write_text(flux.split("  targetNamespace:")[0])
    model = RepoModel(RepoTree(root))
    renderer = Renderer(model, cache=DiskCache(None))
    via_flux = renderer.render(next(t for t in model.targets if t.flux))
    plain = renderer.render(Target("apps", None, None))
    assert via_flux.ok and via_flux.text == plain.text and "${CLUSTER}" in plain.text
    assert "note: |\n      one\n      two\n" in via_flux.text


def test_substitution_disabled_by_label_or_annotation(tmp_path):
    root = repo(tmp_path)
    path = root / "apps/api/deployment.yaml"
    path.write_text(path.read_text().replace("  annotations:\n",
                                             "  labels:\n    kustomize.toolkit.fluxcd.io/substitute: disabled\n"
                                             "  annotations:\n"))
    model = RepoModel(RepoTree(root))
    target = next(t for t in model.targets if t.flux)
    dep = next(o for o in Renderer(model, cache=DiskCache(None)).render(target).objects if o.kind == "Deployment")
    assert dep.obj["metadata"]["annotations"]["cluster"] == "${CLUSTER}"
