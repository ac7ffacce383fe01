"""Regression tests for the engine's defects found by the security audit (issue 7): what a hostile
pull request could make the YAML reader, the rules and the outputs do."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import multiprocessing
import os
import signal
import threading
import time
import tracemalloc
from pathlib import Path

import pytest
import yaml

from bot.app.isolated import ReviewFailed, ReviewProcessDied, in_process
from bot.app.worker import ReviewTimeout
from bot.config import Config, ConfigError, effective_policy, parse_config
from bot.deadline import Deadline, Stopped
from bot.publish.github import check_run_complete
from bot.publish.github_actions import render_github
from bot.publish.jsonout import render_json
from bot.publish.sarif import render_sarif
from bot.publish.text import render_text
from bot.queue import JobState
from bot.render.build import DiskCache, Renderer
from bot.render.kustomize import Kustomize
from bot.repo.discover import RepoModel
from bot.repo.tree import RepoTree
from bot.review.pipeline import run_check
from bot.yamlpos import MAX_NODES, YamlError, load_docs
from rules.base import parse_quantity
from rules.direct_apply import targets_production
from rules.hardcoded_secret import REDACTED, SCAN_WINDOW, credential_shape
from tests.conftest import eventually, load_payload


def alias_bomb(items: int = 700, aliases: int = 700, depth: int = 120) -> str:
    """A few KB: one anchored list, and `aliases` aliases to it nested `depth` deep. It expands to
    items x aliases nodes (under the node budget) at a depth where every path is long."""
    anchor = ",".join("0" for _ in range(items))
    inner = ",".join("*a" for _ in range(aliases))
    return f"a: &a [{anchor}]\nb: " + "[" * depth + inner + "]" * depth + "\n"


def traced(fn) -> tuple[object, int, int]:
    """fn()'s result, the peak and the still-held bytes allocated while it ran."""
    gc.collect()
    tracemalloc.start()
    try:
        result = fn()
        gc.collect()
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak, current


def test_alias_bomb_under_the_node_budget_costs_what_it_expands_to_not_its_paths():
    text = alias_bomb()
    assert len(text) < 6000 and 700 * 700 < MAX_NODES
    docs, peak, _ = traced(lambda: load_docs(text))
    assert docs[0].spans.get(("b",)) == (2, 2)
    assert docs[0].spans.get(("b",) + (0,) * 119 + (699, 3)) == (1, 1)
    # Before the fix every expanded node stored its 120-deep path: 572 MB for this file.
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MiB"


def test_a_tree_does_not_keep_expanded_or_failed_parses(tmp_path: Path):
    for i in range(4):
        (tmp_path / f"bomb{i}.yaml").write_text(alias_bomb())
    (tmp_path / "over.yaml").write_text(alias_bomb(items=800, aliases=700))
    tree = RepoTree(tmp_path)

    def read_all() -> None:
        for i in range(4):
            assert tree.docs(f"bomb{i}.yaml")
        with pytest.raises(YamlError, match="too large"):
            tree.docs("over.yaml")

    _, _, held = traced(read_all)
    assert held < 8 * 2**20, f"the tree keeps {held / 2**20:.0f} MiB of parses"


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


ADVERSARIAL = ["a" * 40_000, "xoxb-" * 8_000, "a://" * 10_000, "http://" + "a:" * 20_000,
               "-----BEGIN " + "A " * 20_000, "0" * 40_000 + "!", "ghp_" * 10_000]


def test_every_built_in_credential_pattern_is_linear_on_hostile_values():
    policy = effective_policy()
    # Before: 5 s for the URL pattern on 40 KB of letters alone.
    spent = seconds(lambda: [credential_shape(v, policy) for v in ADVERSARIAL])
    assert spent < 1.0, f"{spent:.1f}s"


def test_credential_patterns_see_values_in_windows_without_missing_a_match():
    policy = effective_policy()
    deep = "a" * 100_000 + " postgres://app:hunter22@db " + "a" * 100_000
    assert credential_shape(deep, policy) == "URL with an embedded password"
    for start in range(SCAN_WINDOW - 60, SCAN_WINDOW + 10):  # a match across the first window edge
        value = "-" * start + "postgres://app:hunter22@db"
        assert credential_shape(value, policy) == "URL with an embedded password", start


def test_a_quadratic_pattern_from_the_config_runs_under_the_same_cap(tmp_path: Path):
    config = parse_config("policy:\n  credential_patterns:\n  - {name: sloppy, regex: 'x*y'}\n")
    policy = effective_policy(config)
    # Unwindowed, `x*y` over 200,000 x's costs about 12 s; in windows it is linear.
    spent = seconds(lambda: credential_shape("x" * 200_000, policy))
    assert spent < 3.0, f"{spent:.1f}s"
    assert credential_shape("x" * 200_000 + "y", policy) == "sloppy"


def test_quantities_and_script_settings_parse_in_linear_time():
    assert parse_quantity("0" * 20_000 + "1Mi") == 2**20
    spent = seconds(lambda: parse_quantity("0" * 20_000 + "!"))
    assert spent < 0.5, f"parse_quantity took {spent:.1f}s"  # before: 13 s
    assert targets_production("env:\n  cluster: eu-prod-1\n")
    assert not targets_production("env:\n  cluster: eu-dev-1\n")
    spent = seconds(lambda: targets_production("\n" * 20_000 + "environment" * 2_000 + "!"))
    assert spent < 0.5, f"targets_production took {spent:.1f}s"  # before: 13 s


def test_a_check_over_a_200_kb_configmap_value_is_quick(tmp_path: Path):
    (tmp_path / "app").mkdir()
    (tmp_path / "app/kustomization.yaml").write_text("resources:\n- cm.yaml\n")
    (tmp_path / "app/cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\ndata:\n"
        f"  blob: {'a' * 200_000}\n  cpu: '{'0' * 20_000}!'\n")
    # Before: 152 s.
    spent = seconds(lambda: run_check(tmp_path, None, Config.default(), cache=DiskCache(None)))
    assert spent < 20, f"{spent:.1f}s"


@pytest.mark.parametrize("files", [
    {"overlays/production/kustomization.yaml": "secretGenerator:\n- name: db\n  literals:\n  - hunter2-SuperSecret\n"},
    {"overlays/production/kustomization.yaml": "configMapGenerator:\n- name: c\n  literals:\n  - a=1\n"
                               "secretGenerator:\n- name: db\n  literals:\n  - password=hunter2-SuperSecret\n"
                               "  - hunter2-SuperSecret\n"},
])
def test_a_secret_in_a_renderer_error_is_redacted_in_every_output(tmp_path: Path, files):
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    report = run_check(tmp_path, None, Config.default(), cache=DiskCache(None))
    (error,) = [f for f in report.findings if f.rule == "build-error"]
    assert "literal source" in error.message and REDACTED in error.message
    outputs = [render_json(report), render_sarif(report), render_text(report), render_github(report),
               json.dumps(check_run_complete(report, 1))]
    for out in outputs:
        assert "hunter2" not in out


DEPLOY = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a"},
          "spec": {"template": {"spec": {"containers": [{"name": "a", "image": "nginx:1.27"}]}}}}
WRONG = [5, "x", {"a": 1}, [1], [None, [1], "x"],
         [{"path": 5, "name": 5, "newTag": [1], "patch": 5, "target": "x", "literals": 5, "files": {"a": 1},
           "envs": [3]}]]
KUSTOMIZATION_FIELDS = ["resources", "bases", "components", "patches", "patchesStrategicMerge", "patchesJson6902",
                        "configMapGenerator", "secretGenerator", "configurations", "crds", "openapi", "replacements",
                        "generators", "transformers", "validators", "images", "replicas", "namespace", "labels",
                        "commonLabels", "vars", "buildMetadata"]
FLUX_FIELDS = ["path", "sourceRef", "patches", "images", "postBuild", "targetNamespace", "components",
               "commonMetadata", "wait", "prune", "healthChecks", "dependsOn", "interval", "decryption"]


def write_tree(root: Path, files: dict[str, object]) -> None:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(data))


@pytest.mark.slow
@pytest.mark.parametrize("field", KUSTOMIZATION_FIELDS)
def test_a_kustomization_field_of_any_wrong_type_is_a_finding_not_a_crash(tmp_path: Path, field: str):
    for i, wrong in enumerate(WRONG):
        root = tmp_path / str(i)
        kust = {"resources": ["d.yaml"], field: wrong} if field != "resources" else {field: wrong}
        write_tree(root, {"overlays/production/kustomization.yaml": kust, "overlays/production/d.yaml": DEPLOY})
        report = run_check(root, None, Config.default(), cache=DiskCache(None))
        assert report.targets, wrong
    write_tree(tmp_path / "list", {"overlays/production/kustomization.yaml": {field: 5}})
    report = run_check(tmp_path / "list", None, Config.default(), cache=DiskCache(None))
    (error,) = [f for f in report.findings if f.rule == "build-error"]
    assert error.origin.file == "overlays/production/kustomization.yaml"
    assert "must be a list" in error.message or "cannot unmarshal number" in error.message, error.message
    if field in ("resources", "components", "patches", "configMapGenerator", "secretGenerator"):
        assert f"`{field}` must be a list, not a number" in error.message and error.origin.line == 1


@pytest.mark.slow
@pytest.mark.parametrize("field", FLUX_FIELDS)
def test_a_flux_field_of_any_wrong_type_is_a_finding_not_a_crash(tmp_path: Path, field: str):
    for i, wrong in enumerate([*WRONG, {"substitute": {"replicas": 3}}, {"substituteFrom": 5}]):
        root = tmp_path / str(i)
        spec = {"path": "./apps", "sourceRef": {"kind": "GitRepository", "name": "flux-system"},
                "interval": "1m", "prune": True, "wait": True, field: wrong}
        write_tree(root, {
            "clusters/production/apps.yaml": {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
                                              "metadata": {"name": "apps", "namespace": "flux-system"}, "spec": spec},
            "apps/kustomization.yaml": {"resources": ["d.yaml"]}, "apps/d.yaml": DEPLOY})
        run_check(root, None, Config.default(), cache=DiskCache(None))


def test_a_substitution_value_that_is_not_a_string_is_an_error_at_its_line(tmp_path: Path):
    (tmp_path / "clusters/production").mkdir(parents=True)
    (tmp_path / "apps").mkdir()
    (tmp_path / "apps/kustomization.yaml").write_text("resources: []\n")
    (tmp_path / "clusters/production/apps.yaml").write_text(
        "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: apps\n"
        "spec:\n  path: ./apps\n  interval: 1m\n  prune: true\n  wait: true\n"
        "  sourceRef: {kind: GitRepository, name: flux-system}\n"
        "  postBuild:\n    substitute:\n      replicas: 3\n      name: web\n")
    report = run_check(tmp_path, None, Config.default(), cache=DiskCache(None))
    (bad,) = [f for f in report.findings if f.rule == "flux-config"]
    assert bad.severity == "error" and bad.origin.line == 13
    assert "`spec.postBuild.substitute.replicas` must be a string, not a number" in bad.message


def test_a_config_parameter_of_the_wrong_item_type_is_a_config_error():
    with pytest.raises(ConfigError, match=r"forbidden_tags\[0\]: must be a string, not a number"):
        parse_config("rules:\n  latest-tag:\n    params:\n      forbidden_tags: [1]\n")
    with pytest.raises(ConfigError, match="min_replicas: must be a number, not a boolean"):
        parse_config("rules:\n  single-replica:\n    params:\n      min_replicas: true\n")


def test_a_cancelled_deadline_stops_a_running_build_and_kills_it(tmp_path: Path):
    """The rendering thread of a superseded review must not run on: the build is killed."""
    pidfile = tmp_path / "pid"
    script = tmp_path / "slow-kustomize"
    script.write_text(f"#!/bin/sh\necho $$ > {pidfile}\nexec /bin/sleep 60\n")
    script.chmod(0o755)
    (tmp_path / "repo/overlays/production").mkdir(parents=True)
    (tmp_path / "repo/overlays/production/kustomization.yaml").write_text("resources: []\n")
    deadline = Deadline()
    model = RepoModel(RepoTree(tmp_path / "repo"))
    renderer = Renderer(model, kustomize=Kustomize((str(script), "build"), "v0"), cache=DiskCache(None),
                        deadline=deadline)
    threading.Timer(0.5, deadline.cancel).start()
    started = time.monotonic()
    with pytest.raises(Stopped):
        renderer.render(model.targets[0])
    assert time.monotonic() - started < 5
    pid = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_rules_stop_between_rules_once_the_deadline_passes(tmp_path: Path):
    (tmp_path / "overlays/production").mkdir(parents=True)
    (tmp_path / "overlays/production/kustomization.yaml").write_text("resources: []\n")
    late = Deadline(0, clock=time.monotonic)
    with pytest.raises(Stopped, match="limit"):
        run_check(tmp_path, None, Config.default(), cache=DiskCache(None), deadline=late)


def spin_until_stopped(marks: Path, *, deadline: Deadline) -> None:
    """Work that only stops when its deadline says so (run in the review's child process)."""
    (marks / "entered").touch()
    try:
        while True:
            deadline.check()
            time.sleep(0.01)
    finally:
        (marks / "left").touch()


async def test_a_cancelled_review_stops_its_process_at_the_next_step(tmp_path):
    """`in_process`: cancelling the awaiting task cancels the work's deadline in the child, and returns
    only once the child has left the work and exited, so no process outlives a review nobody waits for."""
    task = asyncio.create_task(in_process(spin_until_stopped, tmp_path))
    await eventually(lambda: (tmp_path / "entered").exists(), what="the child to start the work")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (tmp_path / "left").exists(), "the work left through its deadline, not a kill"
    assert not multiprocessing.active_children()


def dies(*, deadline: Deadline) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def raises(kind: str, *, deadline: Deadline) -> None:
    if kind == "plain":
        raise ValueError("the tree is bad")

    class Local(Exception):  # cannot be rebuilt by the parent
        pass
    raise Local("a reason only the child can name")


def priorities(*, deadline: Deadline) -> tuple[int, int]:
    """This process's niceness, and that of a program it starts (a kustomize build)."""
    import subprocess
    import sys

    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpriority(os.PRIO_PROCESS, 0))"],
                           capture_output=True, text=True, check=True)
    return os.getpriority(os.PRIO_PROCESS, 0), int(child.stdout)


async def test_a_review_and_its_builds_run_at_the_lowest_priority(monkeypatch):
    """Reviews yield every core to the service's event loop (and to Redis beside it): at nice 10 the
    acknowledgement p99 under load was 54 ms with Redis; at 19, 26 ms (bench/RESULTS.md)."""
    monkeypatch.delenv("INFRA_REVIEW_NICENESS", raising=False)
    assert await in_process(priorities) == (19, 19)
    monkeypatch.setenv("INFRA_REVIEW_NICENESS", "7")
    assert await in_process(priorities) == (7, 7)
    monkeypatch.setenv("INFRA_REVIEW_NICENESS", "20")
    with pytest.raises(ValueError, match="INFRA_REVIEW_NICENESS='20': expected a whole number from 0 to 19"):
        await in_process(priorities)


def thresholds(*, deadline: Deadline) -> tuple[int, int, int]:
    import gc

    return gc.get_threshold()


async def test_a_review_collects_garbage_as_a_check_does():
    from bot.process import THRESHOLDS

    assert await in_process(thresholds) == THRESHOLDS != gc.get_threshold()


async def test_a_review_process_that_dies_or_raises_is_an_error_not_a_dead_service():
    with pytest.raises(ReviewProcessDied, match="killed by SIGKILL: most likely out of memory"):
        await in_process(dies)
    with pytest.raises(ValueError, match="the tree is bad"):
        await in_process(raises, "plain")
    with pytest.raises(ReviewFailed, match="Local: a reason only the child can name"):
        await in_process(raises, "local")


async def test_a_review_past_its_deadline_fails_and_says_why(make_bot, fakegh, settings):
    async def hangs(job, gh):
        await asyncio.Event().wait()

    bot = await make_bot(hangs, settings_override=dataclasses.replace(settings, review_timeout=0.3))
    await bot.send("pull_request", load_payload("pull_request", "opened.payload.json"))
    await bot.settle()
    await eventually(lambda: bot.failed, what="the review to be stopped at its deadline")
    [(job, exc)] = bot.failed
    assert isinstance(exc, ReviewTimeout) and "REVIEW_TIMEOUT" in str(exc)
    assert [j.state for j in await bot.queue.jobs()] == [JobState.FAILED]
