"""examples/fleet: a team's own fleet repository running infra-review from this repository's deploy/ without
a fork. Checked twice, offline: as the team's repository alone (what infra-review reviews there), and with
the part of this repository that its GitRepository `infra-review` fetches, so that the reusable base is
rendered with the team's patches and components as Flux would render it, and judged too."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest_paths import REPO
from trees import run_bot

import bot

FLEET = REPO / "examples" / "fleet"
INFRA_REVIEW_URL = "https://github.com/infra-review/infra-review"
ENVS = ("development", "production")
# What each cluster of the example sets in its Flux Kustomization `infra-review`.
REPLICAS = {"development": 1, "production": 3}
REDIS = {"development": None, "production": "10.60.8.0/28"}
HOSTS = {"development": "infra-review.dev.example.org", "production": "infra-review.example.org"}
SQLITE = "sqlite:////var/lib/infra-review/data/queue.sqlite3"


def checked(*args: str) -> dict:
    out = run_bot("check", *args, "--offline", "--format", "json")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    doc = json.loads(out.stdout)
    assert doc["findings"] == [] and all(t["status"] == "ok" for t in doc["targets"]), doc
    return doc


def flux_docs(env: str) -> dict[str, dict]:
    """The Flux objects of clusters/<env>/infra-review.yaml, by `Kind/name`."""
    docs = yaml.safe_load_all((FLEET / "clusters" / env / "infra-review.yaml").read_text())
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in docs if d}


def test_the_teams_repository_passes_on_its_own():
    """What infra-review judges in the fleet repository itself: each cluster's Flux objects (the
    bootstrap's own target renders them) and the team's SOPS Secret. The base comes from another
    repository (the GitRepository `infra-review`): no target here, so it is not rendered in this check,
    and the report says so."""
    doc = checked("examples/fleet")
    assert {(t["path"], t["environment"]) for t in doc["targets"]} == {
        *((f"clusters/{env}", env) for env in ENVS), *((f"apps/infra-review/{env}", env) for env in ENVS)}
    (note,) = [n for n in doc["notes"] if "another repository" in n]
    assert note.startswith(f"{len(ENVS)} Flux Kustomizations apply another repository's content")
    assert "flux-system/infra-review from GitRepository/infra-review" in note


@pytest.mark.parametrize("env", ENVS)
def test_the_fleet_follows_the_release(env):
    """The GitRepository fetches only deploy/ at the release tag, and the image is that release's."""
    objs = flux_docs(env)
    source = objs["GitRepository/infra-review"]["spec"]
    assert source["url"] == INFRA_REVIEW_URL and source["ref"] == {"tag": f"v{bot.__version__}"}
    assert source["ignore"].split() == ["/*", "!/deploy/"]
    app = objs["Kustomization/infra-review"]["spec"]
    assert app["sourceRef"] == {"kind": "GitRepository", "name": "infra-review"}
    assert app["path"] == "./deploy/base/infra-review" and (REPO / app["path"]).is_dir()
    assert app["images"] == [{"name": "ghcr.io/infra-review/infra-review", "newTag": bot.__version__}]
    secrets = objs["Kustomization/infra-review-secrets"]["spec"]
    assert secrets["sourceRef"] == {"kind": "GitRepository", "name": "flux-system"}
    assert secrets["decryption"]["provider"] == "sops" and (FLEET / secrets["path"]).is_dir()


@pytest.fixture(scope="module")
def as_flux_sees_it(tmp_path_factory) -> Path:
    """The fleet repository with what its GitRepository `infra-review` brings (deploy/, less this
    repository's own overlays and clusters, which the fleet never applies) in one tree, the source's URL
    made the bootstrap's so that infra-review reads it as part of the repository."""
    root = tmp_path_factory.mktemp("fleet") / "fleet"
    shutil.copytree(FLEET, root)
    for part in (REPO / "deploy").iterdir():
        if part.is_dir() and part.name not in ("overlays", "clusters"):
            shutil.copytree(part, root / "deploy" / part.name)
    boot = yaml.safe_load_all((FLEET / "clusters/production/flux-system/gotk-sync.yaml").read_text())
    fleet_url = next(d for d in boot if d and d["kind"] == "GitRepository")["spec"]["url"]
    for path in (root / "clusters").glob("*/infra-review.yaml"):
        path.write_text(path.read_text().replace(f"url: {INFRA_REVIEW_URL}", f"url: {fleet_url}"))
    return root


def test_the_base_passes_with_the_teams_values(as_flux_sees_it):
    doc = checked(str(as_flux_sees_it), "--root", str(as_flux_sees_it))
    assert {("deploy/base/infra-review", env) for env in ENVS} <= {(t["path"], t["environment"]) for t in doc["targets"]}


def test_the_teams_values_reach_what_flux_applies(as_flux_sees_it):
    out = run_bot("build", str(as_flux_sees_it / "deploy/base/infra-review"), "--flux", "--offline",
                  "--root", str(as_flux_sees_it))
    assert out.returncode == 0, out.stderr
    by_env: dict[str, dict[str, dict]] = {}
    for obj in (d for d in yaml.safe_load_all(out.stdout) if d):
        env = obj["metadata"]["labels"]["app.kubernetes.io/instance"].removeprefix("infra-review-")
        by_env.setdefault(env, {})[f"{obj['kind']}/{obj['metadata']['name']}"] = obj
    assert set(by_env) == set(ENVS)
    for env, objs in by_env.items():
        deployment = objs["Deployment/infra-review"]
        assert deployment["spec"]["replicas"] == REPLICAS[env]
        assert objs["HTTPRoute/infra-review"]["spec"]["hostnames"] == [HOSTS[env]]
        assert objs["ConfigMap/infra-review-config"]["data"]["ENVIRONMENT"] == env
        ranges = {(b["ipBlock"]["cidr"], p["port"]) for rule in objs["NetworkPolicy/infra-review"]["spec"]["egress"]
                  for b in rule["to"] if "ipBlock" in b for p in rule["ports"]}
        assert ((REDIS[env], 6379) in ranges) if REDIS[env] else not [r for r in ranges if r[1] == 6379]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        env_vars = {e["name"]: e for e in container["env"]}
        if env == "development":  # the SQLite component: no Redis, the queue on the claim
            assert env_vars["QUEUE_URL"] == {"name": "QUEUE_URL", "value": SQLITE}
            assert deployment["spec"]["strategy"] == {"type": "Recreate"}
            assert "PersistentVolumeClaim/infra-review-data" in objs
            assert {"name": "data", "mountPath": "/var/lib/infra-review/data"} in container["volumeMounts"]
        # The team's Secret holds every key the base reads from it.
        read = {e["valueFrom"]["secretKeyRef"]["key"] for e in env_vars.values() if "valueFrom" in e}
        secret = yaml.safe_load((FLEET / "apps/infra-review" / env / "secret.yaml").read_text())
        assert read == set(secret["stringData"]), env
