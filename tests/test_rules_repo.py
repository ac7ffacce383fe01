"""Repository-scope rules (sops-coverage, direct-apply, flux-config) on small repos and the real corpus."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from trees import write

from bot.config import parse_config
from bot.repo.discover import RepoModel
from bot.repo.tree import RepoTree
from bot.review.run_rules import run_repo_rules
from rules.direct_apply import mutating_commands
from rules.testing import apply_suggestion, of_rule
from tests.conftest_paths import CORPUS, REPO, needs

AGE_PROD = "age1ca5s5x7lsgulu0h3z65yk8nwv0u7zexzz7s3pyaszw2nyxl6fasl2h5alg"
AGE_STG = "age162gx56gneg7yce4ny7engu63zm79mhw4dh2r28fgkn2tzgfwqfa9as97qr"



def run(root: Path, rule: str | None = None, config: str | None = None, changed=None):
    found = run_repo_rules(RepoModel(RepoTree(root)), parse_config(config), changed_files=changed)
    return of_rule(found, rule) if rule else found


def apply(root: Path, suggestion) -> None:
    path = root / suggestion.file
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(apply_suggestion(lines, suggestion)) + "\n", encoding="utf-8")


SECRET = """
apiVersion: v1
kind: Secret
metadata:
  name: {name}
type: Opaque
stringData:
  password: {value}
"""


# --- sops-coverage ---------------------------------------------------------------------------


def test_without_sops_yaml_every_secret_file_is_flagged_with_the_environments_severity(tmp_path):
    write(tmp_path, {
        "overlays/production/api/secret.yaml": SECRET.format(name="db", value="hunter2-but-longer"),
        "overlays/development/api/secret.yaml": SECRET.format(name="db", value="dev-password-123"),
        "base/api/configmap.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {a: b}\n",
    })
    found = {f.environment: f for f in run(tmp_path, "sops-coverage")}
    assert set(found) == {"production", "development"}
    prod, dev = found["production"], found["development"]
    assert (prod.severity, dev.severity) == ("error", "warning")
    assert (prod.origin.file, prod.origin.line) == ("overlays/production/api/secret.yaml", 4)
    assert prod.resource.kind == "Secret" and prod.resource.name == "db"
    assert "no `.sops.yaml`" in prod.message and "hunter2" not in prod.message
    assert prod.suggestion is None


def test_creation_rules_match_by_regex_search_like_sops(tmp_path):
    write(tmp_path, {
        ".sops.yaml": f"""
            creation_rules:
              - path_regex: overlays/production/.*\\.yaml$
                encrypted_regex: ^(data|stringData)$
                age: {AGE_PROD}
              - path_regex: overlays/staging/.*\\.yaml$
                encrypted_regex: ^(data|stringData)$
                age: {AGE_STG}
            """,
        "overlays/production/api/secret.yaml": SECRET.format(name="db", value="ENC[AES256_GCM,data:x,iv:y]"),
        "overlays/staging/api/secret.yaml": SECRET.format(name="db", value="ENC[AES256_GCM,data:x,iv:y]"),
        "clusters/staging/secrets/registry.yaml": "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"
                                                 "---\n" + SECRET.format(name="registry", value="tok3n-v4lue").lstrip(),
    })
    (f,) = run(tmp_path, "sops-coverage")
    assert (f.origin.file, f.origin.line, f.environment, f.severity) == (
        "clusters/staging/secrets/registry.yaml", 9, "staging", "error")
    assert "`.sops.yaml`" in f.message and "no matching creation rules" in f.message
    # The suggested rule copies the staging rule's key, so applying it makes the file covered.
    assert f.suggestion.file == ".sops.yaml" and AGE_STG in f.suggestion.text and AGE_PROD not in f.suggestion.text
    apply(tmp_path, f.suggestion)
    assert run(tmp_path, "sops-coverage") == []


def test_rule_without_path_regex_covers_everything_and_nearest_config_applies(tmp_path):
    write(tmp_path, {
        ".sops.yaml": "creation_rules:\n  - age: " + AGE_PROD + "\n",
        "apps/secret.yaml": SECRET.format(name="a", value="s3cr3t-value"),
    })
    assert run(tmp_path, "sops-coverage") == []
    write(tmp_path, {
        "kubernetes/.sops.yaml": "creation_rules:\n  - path_regex: ^apps/.*\\.sops\\.yaml$\n    age: " + AGE_PROD + "\n",
        "kubernetes/apps/db.sops.yaml": SECRET.format(name="db", value="s3cr3t-value"),
        "kubernetes/apps/plain.yaml": SECRET.format(name="plain", value="s3cr3t-value"),
    })
    (f,) = run(tmp_path, "sops-coverage")
    assert f.origin.file == "kubernetes/apps/plain.yaml" and "kubernetes/.sops.yaml" in f.message


@pytest.mark.parametrize("value", ["op://vault/item/field", "${DB_PASSWORD}", "<path:secret/data/db#pw>", "''"])
def test_secrets_holding_only_references_or_nothing_need_no_encryption(tmp_path, value):
    write(tmp_path, {"overlays/production/secret.yaml": SECRET.format(name="ref", value=value)})
    assert run(tmp_path, "sops-coverage") == []


def test_helm_chart_templates_are_not_secret_manifests(tmp_path):
    write(tmp_path, {
        "charts/web/Chart.yaml": "apiVersion: v2\nname: web\nversion: 1.0.0\n",
        "charts/web/templates/secret.yaml": SECRET.format(name="web", value="'{{ .Values.password }}'"),
        "charts/web/secret.yaml": SECRET.format(name="loose", value="not-in-templates"),
    })
    assert [f.origin.file for f in run(tmp_path, "sops-coverage")] == ["charts/web/secret.yaml"]


def test_sops_coverage_honours_ignore_severity_overrides_and_suppression(tmp_path):
    write(tmp_path, {
        "legacy/secret.yaml": SECRET.format(name="old", value="old-password-1"),
        "overlays/development/secret.yaml": SECRET.format(name="dev", value="dev-password-1"),
        "overlays/staging/secret.yaml": """
            apiVersion: v1
            kind: Secret
            metadata:
              name: tls
              annotations:
                infra-review.io/ignore: "sops-coverage: encrypted by the cert pipeline before apply"
            stringData: {tls.key: not-a-real-key}
            """,
    })
    found = run(tmp_path, "sops-coverage", "ignore: ['legacy/**']\nrules: {sops-coverage: {severity: {dev: off}}}")
    assert [(f.environment, f.suppressed) for f in found] == [("staging", True)]
    assert found[0].suppression_reason == "encrypted by the cert pipeline before apply"


# --- direct-apply: scripts and CI ------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("kubectl apply -k overlays/production", ["apply"]),
    ("kubectl --context prod-eu -n web apply -f web.yaml", ["apply"]),
    ("  - run: kubectl -n flux-system delete pod -l app=x", ["delete"]),
    ("kubectl apply --dry-run=server -f x.yaml", []),
    ("kubectl apply --dry-run=client -f x.yaml", []),
    ("kubectl apply --dry-run -f x.yaml", []),
    ("kubectl apply --dry-run=none -f x.yaml", ["apply"]),
    ("kubectl kustomize overlays/prod | kubeconform -strict", []),
    ("kubectl diff -k overlays/staging", []),
    ("kubectl -n flux-system wait kustomization/apps --for=condition=ready", []),
    ("# kubectl apply -f x.yaml", []),
    ("echo ok  # kubectl delete ns prod", []),
    ("kubectl create ns web --dry-run=client -o yaml | kubectl apply -f -", ["apply"]),
    ("helm upgrade --install web ./charts/web -n production", ["upgrade"]),
    ("helm --kube-context staging install cache bitnami/memcached", ["install"]),
    ("helm template ./charts/web | kubectl apply --dry-run=client -f -", []),
    ("helm lint ./charts/podinfo/", []),
    ("\t$(KUBECTL) scale deploy/web --replicas=0", ["scale"]),
    ("kubectl set image deploy/web web=web:1.2", ["set"]),
    ("/usr/local/bin/kubectl delete -f old.yaml", ["delete"]),
    ("sh 'kubectl apply -f k8s/'", ["apply"]),
    ("run kubectl/flux/cluster commands only when asked", []),
])
def test_mutating_commands_on_realistic_lines(text, expected):
    assert [c.verb for c in mutating_commands([text])] == expected


def test_continued_lines_are_one_command_at_their_first_line():
    (cmd,) = mutating_commands(["set -e", "kubectl \\", "  --context production \\", "  apply -k overlays/x"])
    assert cmd.line == 2 and "--context production" in cmd.text


WORKFLOW = """
name: deploy
on: {push: {branches: [main]}}
jobs:
  deploy:
    runs-on: ubuntu-latest
    environment: production
    steps:
      - uses: actions/checkout@v4
      - run: kubectl kustomize overlays/production > out.yaml
      - run: kubectl apply -f out.yaml
"""


def test_scripts_and_ci_are_errors_when_they_name_production_else_warnings(tmp_path):
    write(tmp_path, {
        ".github/workflows/deploy.yaml": WORKFLOW,
        "scripts/reset-sandbox.sh": "#!/bin/sh\nset -eu\nkubectl delete namespace sandbox\n",
        "Makefile": "deploy-staging:\n\tkubectl --context stg apply -k overlays/staging\n",
        "docs/howto.yaml": "note: kubectl apply -f everything.yaml\n",
    })
    found = {f.origin.file: f for f in run(tmp_path, "direct-apply")}
    assert set(found) == {".github/workflows/deploy.yaml", "scripts/reset-sandbox.sh", "Makefile"}
    wf, script, make = found[".github/workflows/deploy.yaml"], found["scripts/reset-sandbox.sh"], found["Makefile"]
    assert (wf.severity, wf.environment, wf.origin.line) == ("error", "production", 10)
    assert (script.severity, script.environment, script.origin.line) == ("warning", None, 3)
    assert (make.severity, make.environment) == ("warning", "staging")
    assert "kubectl apply" in wf.message and "production" in wf.message


def test_only_changed_scripts_are_judged_and_fingerprints_survive_line_shifts(tmp_path):
    write(tmp_path, {"deploy.sh": "kubectl apply -k overlays/prod\n"})
    assert run(tmp_path, "direct-apply", changed=frozenset({"README.md"})) == []
    (before,) = run(tmp_path, "direct-apply", changed=frozenset({"deploy.sh"}))
    write(tmp_path, {"deploy.sh": "#!/bin/sh\n\nkubectl apply -k overlays/prod\nkubectl delete -k overlays/prod\n"})
    after = run(tmp_path, "direct-apply", changed=frozenset({"deploy.sh"}))
    assert [f.origin.line for f in after] == [3, 4]
    assert after[0].fingerprint == before.fingerprint != after[1].fingerprint


# --- direct-apply: overlays nobody applies ---------------------------------------------------


def small_flux_repo(root: Path) -> Path:
    return write(root, {
        "clusters/staging/apps.yaml": """
            apiVersion: kustomize.toolkit.fluxcd.io/v1
            kind: Kustomization
            metadata: {name: apps, namespace: flux-system}
            spec:
              interval: 10m
              path: ./overlays/staging
              prune: true
              wait: true
              sourceRef: {kind: GitRepository, name: flux-system}
            """,
        "overlays/staging/kustomization.yaml": "resources:\n  - api\n",
        "overlays/staging/api/kustomization.yaml": "resources:\n  - cm.yaml\n",
        "overlays/staging/api/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: api}\n",
        "overlays/staging/cache/kustomization.yaml": "resources:\n  - cm.yaml\n",
        "overlays/staging/cache/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cache}\n",
    })


def test_unreached_overlay_is_flagged_with_a_suggestion_to_list_it(tmp_path):
    small_flux_repo(tmp_path)
    (f,) = run(tmp_path, "direct-apply")
    assert (f.origin.file, f.origin.line, f.environment, f.severity) == (
        "overlays/staging/cache/kustomization.yaml", 1, "staging", "error")
    assert f.target == "overlays/staging/cache" and "not applied by Flux" in f.message
    assert f.suggestion.file == "overlays/staging/kustomization.yaml" and f.suggestion.text == "  - api\n  - cache"
    apply(tmp_path, f.suggestion)
    assert run(tmp_path, "direct-apply") == []


def test_bundled_example_pull_request_adds_exactly_the_documented_direct_apply(tmp_path):
    base = REPO / "examples" / "repo"
    assert run_repo_rules(RepoModel(RepoTree(base))) == []
    if not shutil.which("patch"):
        pytest.skip("patch is not available to apply examples/pull-request.patch")
    head = tmp_path / "head"
    shutil.copytree(base, head)
    subprocess.run(["patch", "-p1", "-s", "-i", str(REPO / "examples" / "pull-request.patch")], cwd=head, check=True)
    (f,) = run_repo_rules(RepoModel(RepoTree(head)))
    assert (f.rule, f.environment, f.severity, f.origin.file, f.origin.line) == (
        "direct-apply", "staging", "error", "overlays/staging/cache/kustomization.yaml", 1)


# --- flux-config -----------------------------------------------------------------------------

KS = """
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: apps
  namespace: flux-system
spec:
  interval: 10m
  path: {path}
  prune: true
  sourceRef:
    kind: GitRepository
    name: flux-system
  healthChecks:
    - {{apiVersion: apps/v1, kind: Deployment, name: api, namespace: production}}
"""


def test_complete_kustomization_passes_and_missing_path_is_an_error_at_its_line(tmp_path):
    write(tmp_path, {
        "clusters/production/apps.yaml": KS.format(path="./overlays/production"),
        "overlays/production/kustomization.yaml": "resources: []\n",
    })
    assert run(tmp_path, "flux-config") == []
    write(tmp_path, {"clusters/production/apps.yaml": KS.format(path="./overlays/prod")})
    (f,) = run(tmp_path, "flux-config")
    assert (f.severity, f.environment, f.field, f.origin.file, f.origin.line) == (
        "error", "production", "spec.path", "clusters/production/apps.yaml", 8)
    assert "overlays/prod" in f.message and f.resource.name == "apps"


def test_missing_settings_are_one_warning_each_with_insertable_suggestions(tmp_path):
    write(tmp_path, {
        "clusters/staging/apps.yaml": """
            apiVersion: kustomize.toolkit.fluxcd.io/v1
            kind: Kustomization
            metadata:
              name: apps
              namespace: flux-system
            spec:
              path: ./overlays/staging
              sourceRef:
                kind: GitRepository
                name: flux-system
            """,
        "overlays/staging/kustomization.yaml": "resources: []\n",
    })
    found = {f.field: f for f in run(tmp_path, "flux-config")}
    assert set(found) == {"spec.prune", "spec.interval", "spec.healthChecks"}
    assert {f.severity for f in found.values()} == {"warning"} and {f.environment for f in found.values()} == {"staging"}
    assert {f.origin.line for f in found.values()} == {6}  # the `spec:` line: the settings are absent
    assert found["spec.prune"].suggestion.text == "spec:\n  prune: true"
    for field in ("spec.prune", "spec.interval"):
        (f,) = [f for f in run(tmp_path, "flux-config") if f.field == field]
        apply(tmp_path, f.suggestion)
    assert [f.field for f in run(tmp_path, "flux-config")] == ["spec.healthChecks"]


def test_explicit_wait_false_is_respected_and_bootstrap_kustomization_needs_no_health_checks(tmp_path):
    write(tmp_path, {
        "clusters/production/flux-system/gotk-sync.yaml": (REPO / "examples/repo/clusters/production/flux-system/"
                                                          "gotk-sync.yaml").read_text(),
        "clusters/production/flux-system/kustomization.yaml": "resources: [gotk-sync.yaml]\n",
        "clusters/production/apps.yaml": KS.format(path="./overlays/production")
        .replace("prune: true", "prune: false  # TODO").replace("  healthChecks:\n    - {apiVersion: apps/v1, kind: "
                                                                 "Deployment, name: api, namespace: production}\n",
                                                                 "  wait: false\n"),
        "overlays/production/kustomization.yaml": "resources: []\n",
    })
    found = {(f.resource.name, f.field): f for f in run(tmp_path, "flux-config")}
    assert set(found) == {("apps", "spec.prune")}, "an explicit `wait: false` is a decision, not an omission"
    assert found["apps", "spec.prune"].suggestion.text == "  prune: true  # TODO"


HR = """
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: web
  namespace: production
spec:
  interval: 10m
  chart:
    spec:
      chart: {chart}
      sourceRef:
        kind: {kind}
        name: {name}
"""


def test_helmrelease_local_chart_must_exist_and_sources_must_be_defined(tmp_path):
    write(tmp_path, {
        "clusters/production/web.yaml": HR.format(chart="./charts/web", kind="GitRepository", name="flux-system"),
        "clusters/production/api.yaml": HR.format(chart="api", kind="HelmRepository", name="bitnami")
        .replace("name: web", "name: api"),
        "charts/other/Chart.yaml": "name: other\n",
    })
    found = {(f.resource.name, f.field): f for f in run(tmp_path, "flux-config")}
    assert set(found) == {("web", "spec.chart.spec.chart"), ("api", "spec.chart.spec.sourceRef.name")}
    chart, source = found["web", "spec.chart.spec.chart"], found["api", "spec.chart.spec.sourceRef.name"]
    assert (chart.severity, chart.origin.line, chart.environment) == ("error", 10, "production")
    assert (source.severity, source.origin.line) == ("warning", 13)
    assert "HelmRepository `bitnami`" in source.message
    write(tmp_path, {
        "charts/web/Chart.yaml": "name: web\n",
        "clusters/production/repos.yaml": "apiVersion: source.toolkit.fluxcd.io/v1\nkind: HelmRepository\n"
                                          "metadata: {name: bitnami}\nspec: {url: https://charts.bitnami.com/bitnami}\n",
    })
    assert run(tmp_path, "flux-config") == []


def test_objects_from_other_sources_substituted_paths_and_patch_files_are_not_judged_as_paths(tmp_path):
    write(tmp_path, {
        "clusters/production/sources.yaml": """
            apiVersion: source.toolkit.fluxcd.io/v1
            kind: GitRepository
            metadata: {name: team-a}
            spec: {url: https://example.com/team-a.git, interval: 5m}
            """,
        "clusters/production/team-a.yaml": KS.format(path="./deploy/prod").replace("name: flux-system", "name: team-a"),
        "clusters/production/vars.yaml": KS.format(path="./overlays/${CLUSTER}").replace("name: apps", "name: vars"),
        "tenants/production/kustomization.yaml": "resources: [../base]\npatches:\n  - path: patch.yaml\n",
        "tenants/production/patch.yaml": "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\n"
                                         "metadata: {name: dev-team}\nspec: {path: ./nowhere}\n",
        "tenants/base/kustomization.yaml": "resources: []\n",
    })
    assert run(tmp_path, "flux-config") == []


def test_flux_config_severity_override_and_suppression(tmp_path):
    write(tmp_path, {
        "clusters/development/apps.yaml": KS.format(path="./missing"),
        "clusters/production/apps.yaml": KS.format(path="./missing").replace(
            "  namespace: flux-system\n", "  namespace: flux-system\n  annotations:\n"
            "    infra-review.io/ignore: \"flux-config: path is created by the platform pipeline\"\n"),
    })
    found = run(tmp_path, "flux-config", "rules:\n  flux-config:\n    severity: {development: warning}\n")
    by_env = {f.environment: f for f in found}
    assert by_env["development"].severity == "warning" and not by_env["development"].suppressed
    assert by_env["production"].severity == "error" and by_env["production"].suppressed
    assert run(tmp_path, "flux-config", "rules: {flux-config: off}") == []


# --- the real corpus -------------------------------------------------------------------------

# Counts per repository, read and judged by hand (see the module docstrings of the rules):
# flux-config warnings are Kustomizations without healthChecks/wait (onedr0p's 56 say `wait: false`
# explicitly and are not flagged);
# direct-apply in billimek are Taskfile bootstrap/maintenance `kubectl apply|delete|create|scale`;
# podinfo defines no Flux Kustomization at all: its overlays are applied from a fleet repository.
CORPUS_COUNTS = {
    "Azure__gitops-flux2-kustomize-helm-mt": {("flux-config", "warning"): 2},
    "billimek__k8s-gitops": {("direct-apply", "warning"): 7, ("flux-config", "warning"): 1},
    "fluxcd__flux2-hub-spoke-example": {},
    "fluxcd__flux2-kustomize-helm-example": {("flux-config", "warning"): 2},
    "fluxcd__flux2-monitoring-example": {},
    "fluxcd__flux2-multi-tenancy": {("flux-config", "warning"): 5},
    "onedr0p__home-ops": {},
    "stefanprodan__podinfo": {},
}


@needs(CORPUS, "the real-repository corpus")
@pytest.mark.parametrize("name", sorted(CORPUS_COUNTS))
def test_corpus_repositories(name):
    found = run_repo_rules(RepoModel(RepoTree(CORPUS / name)))
    assert dict(Counter((f.rule, f.severity) for f in found)) == CORPUS_COUNTS[name]
    for f in found:
        assert f.origin.file and f.origin.line and (CORPUS / name / f.origin.file).is_file()
        assert f.message and f.remediation
    flux = [f for f in found if f.rule == "flux-config"]
    assert {f.field for f in flux} <= {"spec.healthChecks"}
    assert not any(f.origin.file.startswith(".github/") for f in found)  # e2e workflows only wait/get/log
    assert len({f.fingerprint for f in found}) == len(found)
