"""Never a silent pass, and every output telling the same story (issue 8, sections 5 and 6)."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from trees import run_bot, write

from bot.cli.demo import build_example_repo
from bot.config import Config
from bot.model import Finding, Origin, ResourceId, Suggestion
from bot.publish.github import check_run_complete, review_payload
from bot.publish.github_actions import render_github
from bot.publish.report import Report
from bot.publish.sarif import to_sarif
from bot.publish.text import render_text
from bot.render.build import DiskCache
from bot.review.anchors import from_pr_files
from bot.review.pipeline import run_check

DEPLOY = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
spec:
  replicas: 1
  template:
    spec:
      containers:
      - name: api
        image: ghcr.io/x/api:1.0
"""


def cli(*args: str) -> subprocess.CompletedProcess:
    return run_bot("check", *args)



def check(root: Path, **kwargs) -> Report:
    return run_check(root, None, Config.default(), cache=DiskCache(None), **kwargs)


@pytest.fixture(scope="module")
def pr_repo(tmp_path_factory) -> Path:
    return build_example_repo(tmp_path_factory.mktemp("trust") / "repo")


# --- never a silent pass ----------------------------------------------------------------------


def test_a_base_folder_checks_the_targets_that_include_it(pr_repo):
    out = cli(str(pr_repo / "base" / "api"), "--base", "main", "--format", "json")
    doc = json.loads(out.stdout)
    assert out.returncode == 1, out.stderr
    assert sorted(t["path"] for t in doc["targets"]) == ["overlays/development", "overlays/production",
                                                         "overlays/staging"]
    assert any("`base/api` is not a target of its own" in note for note in doc["notes"])
    assert {(f["rule"], f["file"], f["line"]) for f in doc["findings"] if f["new"]} == {
        ("missing-probes", "base/api/deployment.yaml", 38)}


def test_a_folder_no_target_includes_is_checked_as_manifests(pr_repo, tmp_path):
    repo = tmp_path / "repo"
    subprocess.run(["cp", "-r", str(pr_repo), str(repo)], check=True)
    write(repo, {"loose/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata:\n  password: hunter22\n"})
    out = cli(str(repo / "loose"), "--format", "json")
    doc = json.loads(out.stdout)
    (secret,) = [f for f in doc["findings"] if f["rule"] == "hardcoded-secret"]
    assert (secret["file"], secret["line"]) == ("loose/cm.yaml", 5)
    assert doc["notes"] == ["No target includes `loose`: its manifests were checked as they are."]


@pytest.mark.parametrize("what, args, says", [
    ("an empty folder", ("empty",), "holds nothing to check"),
    ("a README", ("README.md",), "is not a Kubernetes manifest"),
    ("an unknown environment", ("repo", "--env", "qa"), "the environments here are development, production, staging"),
])
def test_nothing_to_check_is_a_usage_error_with_a_sentence(pr_repo, tmp_path, what, args, says):
    (tmp_path / "empty").mkdir()
    (tmp_path / "README.md").write_text("# hello\n")
    (tmp_path / "repo").symlink_to(pr_repo)
    out = cli(str(tmp_path / args[0]), *args[1:])
    assert out.returncode == 2 and says in out.stderr, out.stderr
    assert out.stdout == ""


def test_an_environment_filter_counts_only_its_targets(pr_repo):
    doc = json.loads(cli(str(pr_repo), "--env", "prod", "--format", "json").stdout)
    assert doc["targets"] and {t["environment"] for t in doc["targets"]} == {"production"}


def test_a_repository_without_overlays_or_flux_checks_its_top_level_kustomizations(tmp_path):
    write(tmp_path, {"app/kustomization.yaml": "resources:\n- deployment.yaml\n", "app/deployment.yaml": DEPLOY,
                     "lib/kustomization.yaml": "resources: []\n", "all/kustomization.yaml": "resources:\n- ../lib\n"})
    report = check(tmp_path)
    assert sorted(t.path for t in report.targets) == ["all", "app"]
    assert any("top-level kustomizations" in note for note in report.notes)
    assert any(f.rule == "single-replica" for f in report.findings)


def test_a_guessed_environment_and_unrendered_helm_releases_are_said_in_every_format(tmp_path):
    write(tmp_path, {
        "flux/apps.yaml": """\
            apiVersion: kustomize.toolkit.fluxcd.io/v1
            kind: Kustomization
            metadata: {name: apps, namespace: flux-system}
            spec: {interval: 10m, path: ./deploy, prune: true, wait: true,
                   sourceRef: {kind: GitRepository, name: flux-system}}
            """,
        "deploy/kustomization.yaml": "resources:\n- release.yaml\n",
        "deploy/release.yaml": """\
            apiVersion: helm.toolkit.fluxcd.io/v2
            kind: HelmRelease
            metadata: {name: podinfo, namespace: apps}
            spec: {interval: 10m, chart: {spec: {chart: podinfo, sourceRef: {kind: HelmRepository, name: podinfo}}}}
            """,
    })
    report = check(tmp_path)
    guessed = next(n for n in report.notes if "could not be told" in n)
    assert "`deploy`" in guessed and "environments.paths" in guessed
    assert any("1 HelmRelease: 0 rendered (0 objects checked), 1 not rendered (chart not available here, see "
               "chart-unavailable)" in n for n in report.notes)
    (notice,) = [f for f in report.findings if f.rule == "chart-unavailable"]
    assert "HelmRepository/apps/podinfo is not defined in this repository" in notice.message
    assert notice.origin.file == "deploy/release.yaml" and notice.severity == "notice"
    sarif = to_sarif(report)["runs"][0]["invocations"][0]["toolExecutionNotifications"]
    outputs = {
        "text": render_text(report), "github": render_github(report),
        "sarif": " ".join(n["message"]["text"] for n in sarif),
        "check run": check_run_complete(report, 1)[0]["output"]["summary"],
    }
    for name, out in outputs.items():
        assert "environments.paths" in out and "HelmRelease" in out, name


# --- the outputs tell the same story ------------------------------------------------------------


def test_an_environments_value_is_suggested_only_in_a_file_that_environment_alone_reads(tmp_path):
    overlay = "resources:\n- ../../base\n"
    write(tmp_path, {"base/kustomization.yaml": "resources:\n- deployment.yaml\n", "base/deployment.yaml": DEPLOY,
                     "overlays/production/kustomization.yaml": overlay,
                     "overlays/staging/kustomization.yaml": overlay})
    (single,) = [f for f in check(tmp_path).findings if f.rule == "single-replica"]
    assert single.origin.file == "base/deployment.yaml" and single.suggestion is None
    write(tmp_path, {"overlays/production/kustomization.yaml": overlay + "patches:\n- path: replicas.yaml\n",
                     "overlays/production/replicas.yaml": "apiVersion: apps/v1\nkind: Deployment\n"
                                                          "metadata: {name: api}\nspec:\n  replicas: 1\n"})
    (single,) = [f for f in check(tmp_path).findings if f.rule == "single-replica"]
    assert single.suggestion == Suggestion("overlays/production/replicas.yaml", 5, 5, "  replicas: 3")


def _tag(env: str, suggestion: Suggestion | None) -> Finding:
    return Finding("latest-tag", "error", env, "image x:latest floats", "Pin it.", target=f"overlays/{env}",
                   resource=ResourceId("apps", "v1", "Deployment", env, "api"), container="api",
                   field="spec.template.spec.containers[api].image", origin=Origin("base/deployment.yaml", 2, 2),
                   suggestion=suggestion)


def test_a_shared_line_gets_one_suggestion_only_when_it_is_right_for_every_reader():
    diff = from_pr_files([{"filename": "base/deployment.yaml", "status": "modified",
                           "patch": "@@ -1,3 +1,3 @@\n a\n-b\n+c\n d"}])
    pin = Suggestion("base/deployment.yaml", 2, 2, "  image: x:1.0")
    both = Report([_tag("production", pin), _tag("staging", pin)], head_sha="c" * 40,
                  readers={"base/deployment.yaml": frozenset({"production", "staging"})})
    (comment,) = review_payload(both, diff, ())["comments"]
    assert "```suggestion" in comment["body"]
    assert comment["body"].startswith("**error** · `latest-tag` · production, staging\n")
    one = replace(both, findings=[_tag("production", pin)])
    (comment,) = review_payload(one, diff, ())["comments"]
    assert "```suggestion" not in comment["body"] and "Not offered as a one-click suggestion" in comment["body"]


def test_an_environment_is_named_once_in_a_comment_header():
    diff = from_pr_files([{"filename": "base/deployment.yaml", "status": "modified",
                           "patch": "@@ -1,3 +1,3 @@\n a\n-b\n+c\n d"}])
    twice = [_tag("production", None), replace(_tag("production", None), container="sidecar",
                                               field="spec.template.spec.containers[sidecar].image")]
    (comment,) = review_payload(Report(twice, head_sha="c" * 40), diff, ())["comments"]
    assert comment["body"].startswith("**error** · `latest-tag` · production\n")


def test_a_floating_tag_is_suggested_back_to_the_tag_the_base_had(pr_repo):
    doc = json.loads(cli(str(pr_repo), "--base", "main", "--format", "json").stdout)
    tag, chart = sorted((f for f in doc["findings"] if f["rule"] == "latest-tag"), key=lambda f: f["file"], reverse=True)
    assert (tag["file"], tag["line"], tag["suggestion"]) == (
        "overlays/production/api/kustomization.yaml", 12, '    newTag: "1.4.2"')
    # The same for a chart's image, at the HelmRelease's values key the chart reads.
    assert (chart["file"], chart["line"], chart["suggestion"]) == ("clusters/production/search.yaml", 19,
                                                                   '      tag: "1.4.2"')
