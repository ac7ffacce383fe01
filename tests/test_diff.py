"""The rendered diff (issue 13): what a change does to each environment as Flux applies it, noise
removed, secrets masked in every format, within GitHub's limits."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
from trees import run_bot, write

from bot.cli.demo import build_example_repo
from bot.config import Config, effective_policy
from bot.diff.compute import diff_objects, normalise
from bot.diff.mask import Masker
from bot.diff.meaning import meaning
from bot.diff.model import Changes, EnvironmentChanges, ObjectChange, TargetChanges
from bot.model import ResourceId
from bot.objects import RenderedObject
from bot.publish import diff as publish
from bot.publish.dryrun import render_dry_run
from bot.publish.github import MAX_OUTPUT_CHARS, check_run_complete
from bot.publish.report import Report
from bot.render.build import DiskCache
from bot.repo.tree import RepoTree, changed_files
from bot.review.anchors import from_pr_files
from bot.review.pipeline import run_check, run_diff

MASKER = Masker(effective_policy(Config.default()), salt=b"test")


def deployment(name: str = "api", image: str = "ghcr.io/x/api:2.1.0", replicas: int = 3, **extra) -> dict:
    container = {"name": name, "image": image, "resources": {"limits": {"memory": "512Mi"}}, **extra}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "shop"},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [container]}}}}


def ro(obj: dict) -> RenderedObject:
    return RenderedObject(obj, ResourceId.of(obj))


def configmap(name: str, **data: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "shop"}, "data": data}


# --- what changes ------------------------------------------------------------------------------


def test_added_removed_and_changed_with_their_meaning() -> None:
    before = [ro(deployment()), ro(configmap("old"))]
    after = [ro(deployment(image="ghcr.io/x/api:2.2.0", replicas=4)), ro(configmap("new"))]
    added, removed, changed = diff_objects(before, after, MASKER)
    assert [c.resource.name for c in added] == ["new"] and [c.resource.name for c in removed] == ["old"]
    (api,) = changed
    assert api.meaning == ("replicas 3 → 4", "image 2.1.0 → 2.2.0")
    assert "-  replicas: 3\n+  replicas: 4" in api.diff and "+      - image: ghcr.io/x/api:2.2.0" in api.diff
    assert not api.diff.startswith(("---", "+++")), "hunks only"


@pytest.mark.parametrize("before, after, said", [
    (deployment(), deployment(image="ghcr.io/y/api:2.1.0"), "image ghcr.io/x/api:2.1.0 → ghcr.io/y/api:2.1.0"),
    (deployment(), deployment(resources={"limits": {"memory": "1Gi"}}), "limits.memory 512Mi → 1Gi"),
    (deployment(), deployment(readinessProbe={"httpGet": {"port": 80}}), "containers[api].readinessProbe added"),
    (configmap("c", A="1", B="2"), configmap("c", A="1", B="3"), "data B changed"),
    ({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{"name": "http", "port": 80}]}},
     {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{"name": "http", "port": 8080}]}},
     "ports[http].port 80 → 8080"),
    ({"apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease", "metadata": {"name": "r"},
      "spec": {"chart": {"spec": {"version": "1.2.0"}}, "values": {"a": 1}}},
     {"apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease", "metadata": {"name": "r"},
      "spec": {"chart": {"spec": {"version": "1.3.0"}}, "values": {"a": 2}}}, "chart 1.2.0 → 1.3.0"),
])
def test_the_meaning_of_a_change_in_a_reviewer_s_words(before, after, said) -> None:
    assert said in meaning(before, after)


def test_key_order_formatting_and_what_the_cluster_owns_never_show() -> None:
    obj = deployment()
    shuffled = json.loads(json.dumps({k: obj[k] for k in reversed(list(obj))}))
    owned = copy.deepcopy(shuffled)
    owned["status"] = {"readyReplicas": 3}
    owned["metadata"].update(resourceVersion="12", uid="u", creationTimestamp="2026-01-01T00:00:00Z", generation=4,
                             annotations={"kubectl.kubernetes.io/last-applied-configuration": "{}"})
    assert diff_objects([ro(obj)], [ro(owned)], MASKER) == ([], [], [])
    assert "annotations" not in normalise(owned)["metadata"]


def test_a_generator_rename_is_one_change_of_the_generated_object() -> None:
    before = [ro(configmap("app-config-5g2k8h7m9t", LOG="info"))]
    after = [ro(configmap("app-config-b7dc4fgh2k", LOG="debug"))]
    added, removed, (change,) = diff_objects(before, after, MASKER)
    assert not added and not removed
    assert change.resource.name == "app-config-b7dc4fgh2k" and change.renamed_from == "app-config-5g2k8h7m9t"
    assert publish.describe(change) == "ConfigMap/app-config-b7dc4fgh2k: renamed from app-config-5g2k8h7m9t, data LOG changed"
    plain = diff_objects([ro(configmap("settings-one"))], [ro(configmap("settings-two"))], MASKER)
    assert len(plain[0]) == len(plain[1]) == 1, "names without a generator's suffix are two objects"


# --- secrets ------------------------------------------------------------------------------------

SECRET_VALUES = ("hunter2-production", "aHVudGVyMg==", "AKIAABCDEFGHIJKLMNOP", "s3cr3t-values-pw")


def secret_objects(password: str, token: str) -> list[RenderedObject]:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "shop"},
              "data": {"password": token}, "stringData": {"user": "app"}}
    env = [{"name": "DB_PASSWORD", "value": password}, {"name": "MODE", "value": "fast"}]
    values = f"replicas: 2\nadminPassword: {password}x\n"
    return [ro(secret), ro(deployment(env=env)), ro(configmap("values", **{"values.yaml": values})),
            ro(configmap("aws", KEY="AKIAABCDEFGHIJKLMNOP" if password.startswith("hunter2") else "none"))]


def test_secrets_are_masked_yet_a_change_still_shows() -> None:
    before = secret_objects("old-password-1", "b2xk")
    after = secret_objects("hunter2-production", "aHVudGVyMg==")
    added, removed, changed = diff_objects(before, after, MASKER)
    text = "\n".join(c.diff + " ".join(c.meaning) for c in changed)
    for value in SECRET_VALUES[:3]:
        assert value not in text
    assert "hunter2-production" not in text and "<masked " in text
    assert {c.resource.name for c in changed} == {"db", "api", "values", "aws"}, "each change is still seen"
    assert "- name: MODE\n           value: fast" in text, "what is not secret is shown"
    same = diff_objects(after, secret_objects("hunter2-production", "aHVudGVyMg=="), Masker({}, salt=b"x"))
    assert same == ([], [], []), "an unchanged secret is not a change"
    markers = {MASKER.marker("a"), Masker({}, salt=b"other").marker("a")}
    assert len(markers) == 2, "the digest is salted"


@pytest.fixture(scope="module")
def secret_changes() -> Changes:
    _, _, changed = diff_objects(secret_objects("old-password-1", "b2xk"),
                                 secret_objects("hunter2-production", "aHVudGVyMg=="), MASKER)
    return Changes((EnvironmentChanges("production", (TargetChanges("overlays/production", "production",
                                                                    changed=tuple(changed)),)),))


def test_no_format_shows_a_secret(secret_changes) -> None:
    report = Report([], changes=secret_changes)
    outputs = {
        "text": publish.render_text(secret_changes),
        "json": publish.render_json(secret_changes, {"name": "infra-review"}),
        "markdown": publish.render_markdown(secret_changes, MAX_OUTPUT_CHARS),
        "check run": json.dumps(check_run_complete(report, 1), ensure_ascii=False),
        "dry run": render_dry_run(report, from_pr_files([])),
    }
    for name, out in outputs.items():
        assert "<masked " in out or "\\u003cmasked" in out or "&lt;masked" in out or "\\<masked" in out, name
        for value in SECRET_VALUES:
            assert value not in out, (name, value)


# --- formats and limits ---------------------------------------------------------------------------


def big_changes(objects: int, lines: int) -> Changes:
    changes = tuple(ObjectChange(ResourceId("", "v1", "ConfigMap", "shop", f"cm{i}"), "changed",
                                 "\n".join(f"-  k{j}: a\n+  k{j}: b" for j in range(lines)), ("data changed",))
                    for i in range(objects))
    return Changes((EnvironmentChanges("production", (TargetChanges("overlays/production", "production",
                                                                    changed=changes),)),))


def test_markdown_keeps_whole_objects_within_the_limit_and_counts_the_rest() -> None:
    changes = big_changes(40, 200)
    out = publish.render_markdown(changes, 20_000)
    assert len(out) <= 20_000
    shown = out.count("<details>")
    assert 0 < shown < 40 and out.count("</details>") == shown, "no object is cut"
    assert f"_{40 - shown} more objects not shown here" in out and "`infra-review diff` shows them all" in out
    assert publish.render_markdown(changes, 10**9).count("<details>") == 40


def test_the_check_run_text_stays_within_github_s_limit_with_findings_first() -> None:
    report = Report([], changes=big_changes(200, 200))
    (body,) = check_run_complete(report, 1)
    text = body["output"]["text"]
    assert len(text) <= MAX_OUTPUT_CHARS and text.startswith("No findings.")
    assert "more objects not shown here" in text
    assert body["output"]["summary"].splitlines()[2] == (
        "- production: 200 objects change — ConfigMap/cm0: data changed; ConfigMap/cm1: data changed; "
        "ConfigMap/cm2: data changed; ConfigMap/cm3: data changed; ConfigMap/cm4: data changed; "
        "ConfigMap/cm5: data changed; and 194 more")


def test_hostile_names_and_content_stay_inert_in_markdown() -> None:
    rid = ResourceId("", "v1", "ConfigMap", "shop", "<img src=x>")
    change = ObjectChange(rid, "changed", "-  a: ```\n+  a: </details>", ("data a changed",))
    out = publish.render_markdown(Changes((EnvironmentChanges("production", (
        TargetChanges("t", "production", changed=(change,)),)),)), MAX_OUTPUT_CHARS)
    assert "<img src=x>" not in out and "\\<img src=x\\>" in out, "the name is escaped"
    assert out.count("</details>") == 2 and "````diff" in out, "the content sits in a fence it cannot close"


def test_changed_files_between_two_trees(tmp_path) -> None:
    write(tmp_path / "a", {"same.yaml": "x: 1\n", "edited.yaml": "x: 1\n", "gone.yaml": "x: 1\n"})
    write(tmp_path / "b", {"same.yaml": "x: 1\n", "edited.yaml": "x: 2\n", "new.yaml": "x: 1\n"})
    assert changed_files(RepoTree(tmp_path / "a"), RepoTree(tmp_path / "b")) == {"edited.yaml", "gone.yaml", "new.yaml"}


# --- end to end -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pr_repo(tmp_path_factory) -> Path:
    return build_example_repo(tmp_path_factory.mktemp("gitops") / "repo")


def test_diff_command_json_contract_and_a_chart_whose_values_changed(pr_repo) -> None:
    out = run_bot("diff", str(pr_repo), "--base", "main", "--format", "json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert list(doc) == ["version", "tool", "environments"] and doc["version"] == 1
    assert set(doc["tool"]) == {"name", "version", "kustomize", "helm"}
    assert [e["name"] for e in doc["environments"]] == ["production", "staging", "development"]
    prod = {t["target"]: t for t in doc["environments"][0]["targets"]}
    for target in prod.values():
        assert list(target) == ["target", "added", "removed", "changed"]
    charted = {c["resource"]["name"]: c for c in prod["clusters/production"]["changed"]
               if c["resource"]["kind"] == "Deployment"}
    assert "-  replicas: 3\n+  replicas: 1" in charted["search"]["diff"], "what the chart renders from new values"
    assert charted["search"]["resource"] == {"kind": "Deployment", "namespace": "production", "name": "search"}
    staging = {t["target"]: t for t in doc["environments"][1]["targets"]}
    assert {"kind": "Deployment", "namespace": "staging", "name": "cache"} in staging["overlays/staging/cache"]["added"]
    assert "fake-staging-pw-0000" not in out.stdout
    only = json.loads(run_bot("diff", str(pr_repo), "--base", "main", "--format", "json", "--env", "prod").stdout)
    assert [e["name"] for e in only["environments"]] == ["production"]


def test_diff_command_text_and_usage_errors(pr_repo, tmp_path) -> None:
    out = run_bot("diff", str(pr_repo), "--base", "main")
    assert out.returncode == 0
    first = out.stdout.splitlines()[0]
    assert first.startswith("production: ") and "Deployment/worker: replicas 3 → 1" in first
    assert re.search(r"^changed Deployment/worker: replicas 3 → 1$", out.stdout, re.M)
    assert run_bot("diff", str(pr_repo), "--base", "no-such-branch").returncode == 2
    missing = run_bot("diff", str(tmp_path / "nope"), "--base", "main")
    assert missing.returncode == 2 and "not a directory" in missing.stderr
    assert run_bot("diff", str(pr_repo), "--base", str(pr_repo)).stdout.startswith("No object changes")


def test_a_review_renders_the_diff_from_what_it_already_rendered(pr_repo, tmp_path) -> None:
    base = tmp_path / "base"
    run_bot("diff", str(pr_repo), "--base", "main")  # warms the cache as a review would have
    from bot.cli.check import materialize_ref

    materialize_ref(pr_repo, "main", base)
    report = run_check(pr_repo, base, Config.default(), diff=True, cache=DiskCache(None))
    assert report.changes is not None and report.changes.environments[0].name == "production"
    assert run_check(pr_repo, base, Config.default(), cache=DiskCache(None)).changes is None, "only when asked"
    alone = run_diff(pr_repo, base, Config.default(), cache=DiskCache(None)).changes
    assert publish.summary_lines(alone) == publish.summary_lines(report.changes)
