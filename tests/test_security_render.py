"""Security audit (issue 7): repository strings never become options, the renderer's output and cache
are bounded, and the sandbox's empty PATH is private to the process."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest_paths import REPO
from trees import run_bot, write

from bot.__main__ import main
from bot.app.review import fail, review
from bot.app.source import extract_tarball
from bot.cli.demo import BASE_BRANCH, PR_BRANCH, build_example_repo
from bot.config import Config
from bot.model import Target
from bot.render import kustomize
from bot.render.build import DiskCache, Renderer
from bot.render.kustomize import Kustomize, find_kustomize, run_build
from bot.repo.discover import RepoModel
from bot.repo.tree import RepoTree
from bot.review.pipeline import run_check
from tests.conftest import load_payload
from tests.fakegh import tarball

CONFIGMAP = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  key: value\n"
FLUX = """\
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: app
  namespace: flux-system
spec:
  interval: 10m
  path: ./{path}
  prune: true
  sourceRef:
    kind: GitRepository
    name: flux-system
"""



def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return run_bot(*args, cwd=cwd, env=env)


def option_folder(out: Path, leaf: str = "overlays/production") -> str:
    """A repository folder whose path, given to kustomize as is, reads `--output=<out>/<leaf>`."""
    return f"--output={out}/{leaf}"


def writing_target(out: Path, leaf: str = "overlays/production") -> tuple[str, dict[str, str]]:
    """A target that, read as `--output=...`, makes kustomize build the repository root and write it
    to `out` (the root kustomization is one of the target's inputs, so it is in the scratch copy)."""
    folder = option_folder(out, leaf)
    up = "/".join([".."] * len(Path(folder).parts))
    return folder, {f"{folder}/kustomization.yaml": f"resources:\n- {up}\n",
                    "kustomization.yaml": "resources:\n- root.yaml\n",
                    "root.yaml": CONFIGMAP.format(name="written")}


# ---- item 1: option injection --------------------------------------------------------------------


def test_check_a_folder_named_like_an_output_option_writes_nothing(tmp_path):
    out = tmp_path / "out"
    (out / "overlays").mkdir(parents=True)
    folder, files = writing_target(out)
    repo = write(tmp_path / "repo", files)
    res = cli("check", str(repo), "--format", "json", cwd=tmp_path)
    assert not (out / "overlays" / "production").exists(), "kustomize wrote the build where the folder said"
    doc = json.loads(res.stdout)
    [target] = doc["targets"]
    assert target["path"] == folder and target["status"] == "error", target
    [err] = [f for f in doc["findings"] if f["rule"] == "build-error"]
    assert "cycle" in err["message"], "the folder's own kustomization is what was built"
    assert res.returncode == 1


def test_check_a_folder_named_like_an_option_renders_its_own_resources(tmp_path):
    out = tmp_path / "out"
    (out / "overlays").mkdir(parents=True)
    folder = option_folder(out)
    repo = write(tmp_path / "repo", {f"{folder}/kustomization.yaml": "resources:\n- cm.yaml\n",
                                     f"{folder}/cm.yaml": CONFIGMAP.format(name="mine")})
    res = cli("check", str(repo), "--format", "json", cwd=tmp_path)
    [target] = json.loads(res.stdout)["targets"]
    assert (target["status"], target["resources"]) == ("ok", 1), res.stdout + res.stderr
    assert not (out / "overlays" / "production").exists()


def test_build_cli_takes_a_dash_folder_as_a_folder(tmp_path):
    repo = write(tmp_path / "repo", {"-x/kustomization.yaml": "resources:\n- cm.yaml\n",
                                     "-x/cm.yaml": CONFIGMAP.format(name="dash")})
    res = cli("build", "--", "-x", cwd=repo)
    assert res.returncode == 0, res.stderr
    assert "name: dash" in res.stdout


def test_app_tarball_with_a_flux_path_named_like_an_option_writes_nothing(tmp_path):
    """The App's path: a GitHub tarball extracted, then the pipeline on it."""
    out = tmp_path / "out"
    out.mkdir()
    folder, files = writing_target(out, "app")
    files["clusters/production/app.yaml"] = FLUX.format(path=folder)
    data = tarball("o-r-1", {name: text.encode() for name, text in files.items()})
    head = tmp_path / "head"
    extract_tarball(data, head)
    report = run_check(head, None, Config.default(), cache=DiskCache(None))
    assert not (out / "app").exists(), "kustomize wrote the build where the Flux path said"
    [status] = [t for t in report.targets if t.path == folder]
    assert status.status == "error"


def test_kustomize_gets_the_folder_after_the_end_of_options(tmp_path):
    """Whatever the folder is called, the binary sees `--` and a `./` path."""
    echo = Kustomize(("/bin/sh", "-c", 'printf "%s\\n" "$@"', "sh"), "test")
    res = run_build(echo, tmp_path, "--output=/tmp/x")
    assert res.stdout.splitlines() == ["--", "./--output=/tmp/x"]


def test_a_build_runs_with_the_collector_off_below_a_memory_limit_and_nothing_else_of_ours(tmp_path, monkeypatch):
    monkeypatch.setenv("INFRA_REVIEW_SECRET_PROBE", "not for builds")
    env = Kustomize(("/bin/sh", "-c", "/usr/bin/env", "sh"), "test")
    seen = dict(line.split("=", 1) for line in run_build(env, tmp_path, "app").stdout.splitlines() if "=" in line)
    assert (seen["GOGC"], seen["GOMEMLIMIT"]) == ("off", "384MiB")
    assert "INFRA_REVIEW_SECRET_PROBE" not in seen and seen["HOME"] == "/nonexistent"


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    return build_example_repo(tmp_path_factory.mktemp("security") / "shop")


@pytest.mark.parametrize("option", ["--base", "--head"])
def test_review_refuses_a_revision_that_git_would_read_as_an_option(shop, tmp_path, capsys, option):
    written = tmp_path / "written"
    refs = {"--base": BASE_BRANCH, "--head": PR_BRANCH, option: f"--output={written}"}
    rc = main(["review", "--repo", str(shop), f"--base={refs['--base']}", f"--head={refs['--head']}"])
    err = capsys.readouterr().err
    assert rc == 2 and not written.exists() and not list(shop.glob("*...*"))
    assert f"{option} --output={written}: a revision cannot start with '-'" in err


def test_review_base_option_is_a_usage_error_from_the_command_line(shop, tmp_path):
    res = cli("review", "--repo", str(shop), "--base", "--output=x", "--head", PR_BRANCH, cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    res = cli("review", "--repo", str(shop), "--base=--output=x", "--head", PR_BRANCH, cwd=tmp_path)
    assert res.returncode == 2 and "cannot start with '-'" in res.stderr, res.stderr
    assert not (shop / "x").exists() and not (tmp_path / "x").exists()


def test_check_refuses_a_base_that_git_would_read_as_an_option(shop, tmp_path):
    written = tmp_path / "written"
    res = cli("check", str(shop), f"--base=--output={written}", cwd=tmp_path)
    assert res.returncode == 2 and "cannot start with '-'" in res.stderr, res.stderr
    assert not written.exists()


def test_check_base_names_a_commit_not_any_object(shop, tmp_path):
    tree = subprocess.run(["git", "-C", str(shop), "rev-parse", f"{BASE_BRANCH}^{{tree}}"], capture_output=True,
                          text=True, check=True).stdout.strip()
    res = cli("check", str(shop), "--base", tree, cwd=tmp_path)
    assert res.returncode == 2 and "not a directory nor a git revision" in res.stderr


# ---- item 9 through the App: a rejected tarball completes the check run with the reason ------------


async def test_a_tarball_with_a_name_clash_fails_the_check_run_with_a_sentence(make_bot, fakegh):
    payload = load_payload("pull_request", "opened.payload.json")
    pr = payload["pull_request"]
    repo = fakegh.repos[payload["repository"]["full_name"]]
    repo.trees[pr["head"]["sha"]] = {"apps/web": b"a file\n", "apps/web/deployment.yaml": b"kind: Deployment\n"}
    bot = await make_bot(review, fail)
    await bot.send("pull_request", payload)
    await bot.settle(timeout=60)
    assert not bot.failed, "a refused archive is an answer, not a crash"
    [run] = fakegh.check_runs.values()
    assert run["status"] == "completed" and run["conclusion"] == "failure"
    assert run["output"]["title"] == "Repository archive refused"
    summary = run["output"]["summary"]
    assert "apps/web" in summary and "both a file and a folder" in summary and "same answer" in summary


# ---- item 12: the renderer's output ---------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def _gone(pid: int, timeout: float = 10.0) -> bool:
    """Whether `pid` dies within `timeout`: the build returns once its process group was sent SIGKILL,
    and a process in that group (not the build's own child) may take a moment to act on it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if not _alive(pid):
                return True
        except FileNotFoundError:  # reaped between the two looks
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)


def test_output_over_the_cap_stops_the_build_and_names_the_limit(tmp_path):
    """An endless producer: only a streaming reader with a cap returns at all (no buffering it all)."""
    pidfile = tmp_path / "pid"
    script = f'echo $$ > {pidfile}; while :; do /usr/bin/head -c 1048576 /dev/zero; done'
    endless = Kustomize(("/bin/sh", "-c", script, "sh"), "test")
    start = time.monotonic()
    res = run_build(endless, tmp_path, "app", timeout=60, max_output=2 * 1024 * 1024)
    elapsed = time.monotonic() - start
    assert res.returncode != 0 and res.stdout == ""
    assert "2 MiB" in res.stderr and "INFRA_REVIEW_MAX_TARGET_BYTES" in res.stderr, res.stderr
    assert elapsed < 10
    assert _gone(int(pidfile.read_text())), "the build's process group is killed"


def test_stderr_is_kept_bounded(tmp_path):
    noisy = Kustomize(("/bin/sh", "-c", "/usr/bin/head -c 20000000 /dev/zero | /usr/bin/tr '\\0' e >&2; "
                                        "echo 'Error: the real reason' >&2; exit 1", "sh"), "test")
    res = run_build(noisy, tmp_path, "app", timeout=60)
    assert res.returncode == 1 and len(res.stderr) <= kustomize.MAX_STDERR + 1024
    assert res.stderr.rstrip().endswith("Error: the real reason")


def test_a_timeout_kills_the_whole_process_group(tmp_path):
    pidfile = tmp_path / "pid"
    sleeper = Kustomize(("/bin/sh", "-c", f"/bin/sleep 30 & echo $! > {pidfile}; wait", "sh"), "test")
    res = run_build(sleeper, tmp_path, "app", timeout=1)
    assert res.returncode == 124 and "timed out" in res.stderr
    assert _gone(int(pidfile.read_text()))


def big_target(root: Path, mib: float) -> Path:
    """An overlay whose output is about `mib` MiB, from ConfigMaps of 256 KiB each."""
    value = "x" * (256 * 1024)
    count = int(mib * 4) + 1
    names = [f"cm{i}.yaml" for i in range(count)]
    files = {f"overlays/production/{n}": f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm{i}\n"
                                         f"data:\n  value: {value}\n" for i, n in enumerate(names)}
    files["overlays/production/kustomization.yaml"] = "resources:\n" + "".join(f"- {n}\n" for n in names)
    return write(root, files)


def test_a_target_over_4_mib_renders_under_the_setting(tmp_path):
    root = big_target(tmp_path, 5)
    out = Renderer(RepoModel(RepoTree(root)), cache=DiskCache(None)).render(Target("overlays/production", None, None))
    assert out.ok, out.error
    assert len(out.text) > 5 * 1024 * 1024 and len(out.objects) == 21


def test_the_per_target_limit_is_a_setting(tmp_path):
    big_target(tmp_path / "repo", 1)
    res = cli("check", str(tmp_path / "repo"), "--format", "json", cwd=tmp_path,
              env={"INFRA_REVIEW_MAX_TARGET_BYTES": str(512 * 1024)})
    [err] = [f for f in json.loads(res.stdout)["findings"] if f["rule"] == "build-error"]
    assert "512 KiB" in err["message"] and "INFRA_REVIEW_MAX_TARGET_BYTES" in err["message"]


def _fill(directory: Path, count: int, size: int, start: float, first: int = 0) -> list[str]:
    """Entries written by an unbounded cache, each `size` bytes, one second apart from `start`."""
    cache = DiskCache(directory, max_bytes=10**12, max_age=10**12)
    keys = [f"{i:02x}" + "0" * 62 for i in range(first, first + count)]
    for i, key in enumerate(keys):
        cache.put(key, {"stdout": "y" * (size - 14)})
        os.utime(cache.path(key), (start + i, start + i))
    return keys


def _cached_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*.json"))


def _present(directory: Path, keys: list[str]) -> list[bool]:
    fresh = DiskCache(directory)
    return [fresh.get(k) is not None for k in keys]


def test_disk_cache_evicts_the_oldest_beyond_its_size(tmp_path):
    keys = _fill(tmp_path, 10, 10_000, time.time() - 100)
    DiskCache(tmp_path, max_bytes=50_000, max_age=3600).prune()
    assert _cached_bytes(tmp_path) <= 50_000
    assert _present(tmp_path, keys) == [False] * 5 + [True] * 5


def test_disk_cache_evicts_entries_older_than_its_age(tmp_path):
    old = _fill(tmp_path, 3, 100, time.time() - 7200)
    new = _fill(tmp_path, 1, 100, time.time(), first=3)
    DiskCache(tmp_path, max_bytes=10**9, max_age=3600).prune()
    assert _present(tmp_path, old + new) == [False, False, False, True]


def test_disk_cache_stays_bounded_while_filled(tmp_path):
    """No explicit prune: writing far more than the bound keeps the directory near it."""
    cache = DiskCache(tmp_path, max_bytes=100_000, max_age=3600)
    for i in range(200):
        cache.put(f"{i:064x}", {"stdout": "z" * 5_000})
    assert _cached_bytes(tmp_path) <= 100_000 * 1.1
    assert _present(tmp_path, [f"{199:064x}"]) == [True]


def test_a_cache_hit_keeps_an_entry_young(tmp_path):
    keys = _fill(tmp_path, 3, 10_000, time.time() - 100)
    assert _present(tmp_path, keys[:1]) == [True]
    DiskCache(tmp_path, max_bytes=25_000, max_age=3600).prune()
    assert _present(tmp_path, keys) == [True, False, True]


# ---- item 15: the sandbox's empty PATH ------------------------------------------------------------


def test_a_planted_directory_at_the_old_path_is_not_used(tmp_path, monkeypatch):
    planted = tmp_path / f"infra-review-nobin-{os.getuid()}"
    planted.mkdir(mode=0o777)
    planted.chmod(0o777)
    git = planted / "git"
    git.write_text("#!/bin/sh\necho pwned\n")
    git.chmod(0o755)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    kustomize._empty_bin.cache_clear()
    try:
        path = Path(kustomize._sandbox_env()["PATH"])
        assert path != planted and path.is_relative_to(tmp_path)
        info = path.lstat()
        assert stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.getuid()
        assert os.listdir(path) == []
        assert git.exists(), "someone else's directory is left alone"
    finally:
        kustomize._empty_bin.cache_clear()


def test_the_empty_path_is_replaced_when_tampered_with(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    kustomize._empty_bin.cache_clear()
    try:
        first = Path(kustomize._sandbox_env()["PATH"])
        (first / "git").write_text("#!/bin/sh\n")
        second = Path(kustomize._sandbox_env()["PATH"])
        assert second != first and os.listdir(second) == []
    finally:
        kustomize._empty_bin.cache_clear()


def test_the_empty_path_is_per_process_and_removed_at_exit(tmp_path):
    code = "from bot.render.kustomize import _sandbox_env; print(_sandbox_env()['PATH'])"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "TMPDIR": str(tmp_path)}
    first, second = (subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                                    check=True).stdout.strip() for _ in range(2))
    assert first != second and Path(first).is_relative_to(tmp_path)
    assert not Path(first).exists() and not Path(second).exists()


def test_the_real_binary_still_renders_with_the_private_path(tmp_path):
    write(tmp_path, {"app/kustomization.yaml": "resources:\n- cm.yaml\n", "app/cm.yaml": CONFIGMAP.format(name="a")})
    res = run_build(find_kustomize(), tmp_path, "app")
    assert res.returncode == 0 and "name: a" in res.stdout

