"""The bundled example (main and pull-request states) and infra-review's own deploy/ must build with the
real Kustomize and say what examples/README.md and deploy/README.md claim: the demo and the end-to-end
tests are only meaningful if the scenario under them is what we think it is."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from unidiff import PatchSet

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "repo"
PATCH = ROOT / "examples" / "pull-request.patch"
DEPLOY = ROOT / "deploy"
FLEET = ROOT / "examples" / "fleet"
# Where deploy/components/sqlite keeps the queue: on its PersistentVolumeClaim.
SQLITE_QUEUE = "sqlite:////var/lib/infra-review/data/queue.sqlite3"
ENVS = ("development", "staging", "production")
SERVICES = ("api", "web", "worker")
LABELS = ("name", "instance", "version", "component", "part-of", "managed-by")
# The seed's environment table: replicas, requests (memory, cpu), limits (memory, cpu).
TABLE = {
    "development": (1, ("128Mi", "50m"), ("256Mi", "100m")),
    "staging": (2, ("256Mi", "100m"), ("512Mi", "200m")),
    "production": (3, ("512Mi", "250m"), ("1Gi", "500m")),
}
ENC = re.compile(r"^ENC\[AES256_GCM,data:[A-Za-z0-9+/=]+,iv:[A-Za-z0-9+/=]+,tag:[A-Za-z0-9+/=]+,type:\w+\]$")


def _kustomize() -> list[str] | None:
    if os.environ.get("KUSTOMIZE_BIN"):
        return [os.environ["KUSTOMIZE_BIN"], "build"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


KUSTOMIZE = _kustomize()
needs_kustomize = pytest.mark.skipif(
    KUSTOMIZE is None, reason="no kustomize binary (KUSTOMIZE_BIN, kustomize or kubectl) on this machine"
)


def build(path: Path) -> list[dict]:
    assert KUSTOMIZE is not None
    proc = subprocess.run([*KUSTOMIZE, str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"kustomize build {path} failed:\n{proc.stderr}"
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def find(objs: list[dict], kind: str, name: str) -> dict:
    matches = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} objects"
    return matches[0]


def container(deployment: dict, name: str | None = None) -> dict:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if name is None or c["name"] == name)


def apply_patch(tree: Path, patch: Path) -> None:
    """`git apply` in a throw-away repository when git exists (what a reviewer does), else `patch -p1`."""
    if shutil.which("git"):
        git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "-c", "commit.gpgsign=false"]
        for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "main"], ["apply", str(patch)]):
            subprocess.run([*git, *args], cwd=tree, check=True, capture_output=True)
    elif shutil.which("patch"):
        subprocess.run(["patch", "-p1", "-s", "-i", str(patch)], cwd=tree, check=True, capture_output=True)
    else:
        pytest.skip("neither git nor patch is available to apply examples/pull-request.patch")


@pytest.fixture(scope="module")
def pr_tree(tmp_path_factory) -> Path:
    tree = tmp_path_factory.mktemp("pr") / "repo"
    shutil.copytree(EXAMPLE, tree)
    apply_patch(tree, PATCH)
    return tree


@pytest.fixture(scope="module")
def main_envs() -> dict[str, list[dict]]:
    return {env: build(EXAMPLE / "overlays" / env) for env in ENVS} if KUSTOMIZE else {}


@pytest.fixture(scope="module")
def pr_envs(pr_tree) -> dict[str, list[dict]]:
    return {env: build(pr_tree / "overlays" / env) for env in ENVS} if KUSTOMIZE else {}


def quantity(text: str) -> float:
    """CPU in cores or memory in bytes, for the suffixes these manifests use."""
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def assert_labels(objs: list[dict], env: str) -> None:
    for obj in objs:
        labels = obj["metadata"].get("labels", {})
        where = f"{obj['kind']}/{obj['metadata']['name']} in {env}"
        assert all(f"app.kubernetes.io/{k}" in labels for k in LABELS), where
        assert labels["app.kubernetes.io/managed-by"] == "flux", where
        assert labels["app.kubernetes.io/instance"].endswith(f"-{env}"), where


# --- the example, main state -------------------------------------------------------------------


@needs_kustomize
@pytest.mark.parametrize("rel", [f"overlays/{e}" for e in ENVS] + [f"overlays/{e}/{s}" for e in ENVS for s in SERVICES])
def test_every_overlay_builds_on_both_states(rel, pr_tree):
    for tree in (EXAMPLE, pr_tree):
        assert build(tree / rel), f"{tree / rel} rendered nothing"


@needs_kustomize
@pytest.mark.parametrize("env", ENVS)
def test_main_follows_the_seed(env, main_envs):
    objs = main_envs[env]
    assert_labels(objs, env)
    assert {o["metadata"].get("namespace") for o in objs} == {env}
    replicas, requests, limits = TABLE[env]
    for svc in SERVICES:
        deployment = find(objs, "Deployment", svc)
        assert deployment["spec"]["replicas"] == replicas
        c = container(deployment, svc)
        assert c["resources"]["requests"] == {"memory": requests[0], "cpu": requests[1]}
        assert c["resources"]["limits"] == {"memory": limits[0], "cpu": limits[1]}
        assert re.fullmatch(r"ghcr\.io/example/[a-z]+:\d+\.\d+\.\d+", c["image"])
        assert c["livenessProbe"]["httpGet"]["path"] == "/health"
        policy = find(objs, "NetworkPolicy", svc)
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"] and policy["spec"]["egress"]
        assert find(objs, "ConfigMap", f"{svc}-config")["data"]["ENVIRONMENT"] == env


@needs_kustomize
def test_main_carries_the_documented_existing_findings(main_envs):
    assert "readinessProbe" not in container(find(main_envs["development"], "Deployment", "worker"))
    for env in ("staging", "production"):
        assert container(find(main_envs[env], "Deployment", "worker"))["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert find(main_envs["staging"], "ConfigMap", "web-config")["data"]["LOG_LEVEL"] == "debug"
    assert find(main_envs["production"], "ConfigMap", "web-config")["data"]["LOG_LEVEL"] == "info"
    assert container(find(main_envs["production"], "Deployment", "api"))["image"] == "ghcr.io/example/api:1.4.2"


@needs_kustomize
def test_production_api_reads_secrets_by_reference_only(main_envs):
    env = {e["name"]: e for e in container(find(main_envs["production"], "Deployment", "api"))["env"]}
    assert set(env) == {"DB_PASSWORD", "PAYMENTS_API_KEY"}
    assert all("value" not in e and e["valueFrom"]["secretKeyRef"]["name"] == "api-secrets" for e in env.values())
    secret = find(main_envs["production"], "Secret", "api-secrets")
    assert set(secret["stringData"]) == set(env)


# --- the pull request --------------------------------------------------------------------------


def test_patch_is_a_git_diff_of_the_documented_files():
    patch = PatchSet(PATCH.read_text())
    modified = {f.path for f in patch if f.is_modified_file}
    added = {f.path for f in patch if f.is_added_file}
    assert modified == {
        "base/api/deployment.yaml",
        "base/web/configmap.yaml",
        "overlays/production/api/kustomization.yaml",
        "overlays/production/web/patch-deployment.yaml",
        "overlays/production/worker/patch-deployment.yaml",
        "overlays/staging/api/patch-deployment.yaml",
        "clusters/production/search.yaml",
    }
    assert added == {"overlays/staging/cache/kustomization.yaml", "overlays/staging/cache/cache.yaml"}
    assert all((EXAMPLE / p).is_file() for p in modified) and not any((EXAMPLE / p).exists() for p in added)
    assert not any(f.is_removed_file for f in patch)


@needs_kustomize
def test_pull_request_introduces_the_documented_problems(pr_envs, pr_tree):
    production, staging = pr_envs["production"], pr_envs["staging"]
    assert container(find(production, "Deployment", "api"))["image"] == "ghcr.io/example/api:latest"
    assert find(production, "Deployment", "worker")["spec"]["replicas"] == 1
    for env in ENVS:
        assert "readinessProbe" not in container(find(pr_envs[env], "Deployment", "api"))
    web = container(find(production, "Deployment", "web"))["resources"]
    assert "limits" not in web and web["requests"] == {"memory": "512Mi", "cpu": "250m"}
    staged = {e["name"]: e for e in container(find(staging, "Deployment", "api"))["env"]}
    assert "value" in staged["DB_PASSWORD"] and "valueFrom" not in staged["DB_PASSWORD"]
    # the harmless change
    assert '"newCheckout": true' in find(production, "ConfigMap", "web-config")["data"]["FEATURE_FLAGS"]
    # the new overlay builds on its own but no Flux Kustomization reaches it
    assert not [o for o in staging if o["metadata"]["name"] == "cache"]
    cache = build(pr_tree / "overlays" / "staging" / "cache")
    assert_labels(cache, "staging")
    assert {o["kind"] for o in cache} == {"Deployment", "Service", "NetworkPolicy"}
    assert "cache" not in (pr_tree / "overlays" / "staging" / "kustomization.yaml").read_text()


@needs_kustomize
def test_pull_request_leaves_the_rest_alone(main_envs, pr_envs):
    for env in ENVS:
        for kind, name in (("Deployment", "web"), ("Deployment", "worker"), ("Service", "api")):
            if (env, name) in (("production", "web"), ("production", "worker")):
                continue
            assert find(main_envs[env], kind, name) == find(pr_envs[env], kind, name), (env, kind, name)
        assert_labels(pr_envs[env], env)


# --- Flux and SOPS, both trees -----------------------------------------------------------------


def flux_kustomizations(folder: Path) -> list[tuple[Path, dict]]:
    found = []
    for path in sorted(folder.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("apiVersion") == "kustomize.toolkit.fluxcd.io/v1" and doc["kind"] == "Kustomization":
                found.append((path, doc))
    return found


@pytest.mark.parametrize("tree", [EXAMPLE, DEPLOY], ids=["example", "deploy"])
def test_flux_kustomizations_are_complete_and_reach_every_overlay(tree):
    """Flux paths are relative to the source's root: examples/repo is its own repository, deploy/ is not."""
    repo_root = EXAMPLE if tree == EXAMPLE else ROOT
    clusters = tree / "clusters"
    found = flux_kustomizations(clusters)
    assert found
    reached = set()
    for path, doc in found:
        spec = doc["spec"]
        target = (repo_root / spec["path"]).resolve()
        assert target.is_dir(), f"{path}: spec.path {spec['path']} does not exist"
        assert spec["prune"] is True and spec["interval"] and spec["sourceRef"]["kind"] == "GitRepository"
        env = path.relative_to(clusters).parts[0]
        if spec["path"] != f"./clusters/{env}":  # the bootstrap root sync is exactly what flux writes
            assert spec.get("healthChecks") or spec.get("wait") is True, path
            assert target.name == env and target.parent.name == "overlays"
        reached.add(target)
    assert {p.resolve() for p in (tree / "overlays").iterdir() if p.is_dir()} <= reached


def sops_rules(repo: Path) -> list[str]:
    if repo == DEPLOY:
        readme = (DEPLOY / "README.md").read_text()
        block = next(b for b in re.findall(r"```yaml\n(.*?)```", readme, re.S) if "creation_rules" in b)
        return [r["path_regex"] for r in yaml.safe_load(block)["creation_rules"]]
    return [r["path_regex"] for r in yaml.safe_load((repo / ".sops.yaml").read_text())["creation_rules"]]


@pytest.mark.parametrize(("repo", "prefix"), [(EXAMPLE, ""), (DEPLOY, "deploy/"), (FLEET, "")],
                         ids=["example", "deploy", "fleet"])
def test_secrets_are_sops_encrypted_and_covered(repo, prefix):
    secrets = [p for p in repo.rglob("*.yaml") if "kind: Secret" in p.read_text()]
    assert secrets
    rules = sops_rules(repo)
    for path in secrets:
        doc = yaml.safe_load(path.read_text())
        assert doc["kind"] == "Secret"
        values = {**doc.get("data", {}), **doc.get("stringData", {})}
        assert values and all(ENC.match(v) for v in values.values()), path
        meta = doc["sops"]
        assert meta["age"][0]["recipient"].startswith("age1") and "AGE ENCRYPTED FILE" in meta["age"][0]["enc"]
        assert ENC.match(meta["mac"]) and meta["lastmodified"] and meta["version"]
        rel = prefix + path.relative_to(repo).as_posix()
        assert any(re.search(rule, rel) for rule in rules), f"{rel} matches no creation rule"


# --- infra-review's own deployment -------------------------------------------------------------


@needs_kustomize
@pytest.mark.parametrize(("env", "replicas"), [("development", 1), ("staging", 2), ("production", 3)])
def test_deploy_passes_its_own_rules(env, replicas):
    objs = build(DEPLOY / "overlays" / env)
    assert build(DEPLOY / "overlays" / env / "infra-review")
    assert_labels(objs, env)
    deployment = find(objs, "Deployment", "infra-review")
    assert deployment["spec"]["replicas"] == replicas
    c = container(deployment, "infra-review")
    assert re.fullmatch(r"ghcr\.io/infra-review/infra-review:\d+\.\d+\.\d+", c["image"])
    port = next(p for p in c["ports"] if p["name"] == "http")
    assert port["containerPort"] == 8080
    for probe, path in (("livenessProbe", "/health"), ("readinessProbe", "/ready")):
        assert c[probe]["httpGet"]["path"] == path and c[probe]["httpGet"]["port"] in ("http", 8080)
    _, requests, limits = TABLE[env]
    for got, floor in ((c["resources"]["requests"], requests), (c["resources"]["limits"], limits)):
        assert quantity(got["memory"]) >= quantity(floor[0]) and quantity(got["cpu"]) >= quantity(floor[1])

    env_vars = {e["name"]: e for e in c["env"]}
    assert set(env_vars) == {"GITHUB_APP_ID", "GITHUB_PRIVATE_KEY", "GITHUB_WEBHOOK_SECRET", "QUEUE_URL"}
    if env == "development":  # the SQLite queue (deploy/components/sqlite), not a Secret's Redis URL
        assert env_vars.pop("QUEUE_URL") == {"name": "QUEUE_URL", "value": SQLITE_QUEUE}
    secret = find(objs, "Secret", "infra-review-secrets")
    assert set(secret["stringData"]) == set(env_vars)
    for name, var in env_vars.items():
        ref = var["valueFrom"]["secretKeyRef"]
        assert "value" not in var and ref == {"name": "infra-review-secrets", "key": name}
        assert name in secret["stringData"]
    config = find(objs, "ConfigMap", c["envFrom"][0]["configMapRef"]["name"])["data"]
    assert config["LOG_LEVEL"] == "info" and config["ENVIRONMENT"] == env

    policy = find(objs, "NetworkPolicy", "infra-review")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert any(
        any(p.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name") == "gateway-system"
            for p in rule["from"]) and {p["port"] for p in rule["ports"]} == {8080}
        for rule in policy["ingress"]
    )
    egress_ports = {p["port"] for rule in policy["egress"] for p in rule["ports"]}
    assert egress_ports == ({53, 443} if env == "development" else {53, 443, 6379})

    service = find(objs, "Service", "infra-review")
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    route = find(objs, "HTTPRoute", "infra-review")["spec"]
    backends = [b for rule in route["rules"] for b in rule["backendRefs"]]
    service_ports = {p["port"]: p["targetPort"] for p in service["spec"]["ports"]}
    assert backends and all(b["name"] == "infra-review" and b["port"] in service_ports for b in backends)
    assert all(service_ports[b["port"]] == "http" for b in backends)
    assert [m["path"]["value"] for rule in route["rules"] for m in rule["matches"]] == ["/webhook"]


@needs_kustomize
def test_development_is_the_trial_on_sqlite_without_redis():
    """One pod, its queue on a PersistentVolumeClaim (deploy/components/sqlite), replaced rather than
    rolled (the claim attaches to one pod), labelled like everything else."""
    objs = build(DEPLOY / "overlays" / "development")
    deployment = find(objs, "Deployment", "infra-review")
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    claim = find(objs, "PersistentVolumeClaim", "infra-review-data")
    assert claim["metadata"]["namespace"] == "infra-review" and claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    pod = deployment["spec"]["template"]["spec"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "infra-review-data"}} in pod["volumes"]
    mounts = {m["mountPath"]: m["name"] for m in container(deployment, "infra-review")["volumeMounts"]}
    assert mounts["/var/lib/infra-review/data"] == "data"
    assert_labels(objs, "development")
