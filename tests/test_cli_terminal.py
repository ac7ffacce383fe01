"""What `check` shows a person at a terminal and nowhere else: colour (`--color`, `NO_COLOR`), the
progress line on stderr, and `--verbose` stage timings."""

from __future__ import annotations

import io
import os
import select
import subprocess
import sys
from pathlib import Path

import pytest
from conftest_paths import REPO
from trees import run_bot

from bot.cli.demo import build_example_repo
from bot.cli.terminal import StatusLine, shows_progress, use_colour
from bot.render.build import DiskCache, Renderer
from bot.repo.discover import RepoModel
from bot.repo.tree import RepoTree
from bot.review.progress import Progress, format_timings


@pytest.fixture(scope="module")
def pr_repo(tmp_path_factory) -> Path:
    return build_example_repo(tmp_path_factory.mktemp("gitops") / "repo")


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def on_terminal(*args: str, tty: str, env: dict[str, str] | None = None) -> tuple[str, str]:
    """`infra-review ARGS` with `tty` ('stdout' or 'stderr') on a pseudo-terminal, the other piped:
    returns (what the terminal showed, what the pipe got)."""
    master, slave = os.openpty()
    base = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(REPO), "TERM": "xterm",
            "INFRA_REVIEW_CACHE": os.environ.get("INFRA_REVIEW_CACHE") or str(REPO / ".infra-review-cache")}
    streams = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, tty: slave}
    proc = subprocess.Popen([sys.executable, "-m", "bot", *args], cwd=REPO, env={**base, **(env or {})},
                            stdout=streams["stdout"], stderr=streams["stderr"])
    os.close(slave)
    shown = b""
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        try:
            chunk = os.read(master, 65536) if ready else b""
        except OSError:  # the child closed the terminal
            chunk = b""
        if not chunk:
            break
        shown += chunk
    piped = (proc.stderr if tty == "stdout" else proc.stdout)
    assert piped is not None
    out = piped.read().decode()
    proc.wait(timeout=120)
    os.close(master)
    return shown.decode(), out


def test_colour_follows_the_flag_the_terminal_and_no_color() -> None:
    assert use_colour("auto", Tty(), {}) and not use_colour("auto", io.StringIO(), {})
    assert not use_colour("auto", Tty(), {"NO_COLOR": "1"}), "no-color.org: any non-empty value"
    assert use_colour("auto", Tty(), {"NO_COLOR": ""}), "an empty NO_COLOR does not count"
    assert not use_colour("auto", Tty(), {"TERM": "dumb"})
    assert use_colour("always", io.StringIO(), {"NO_COLOR": "1"}), "the flag outranks the environment"
    assert not use_colour("never", Tty(), {})


def test_colour_end_to_end(pr_repo) -> None:
    shown, _ = on_terminal("check", str(pr_repo), "--base", "main", tty="stdout")
    assert "\x1b[31m" in shown, "a terminal gets colour"
    shown, _ = on_terminal("check", str(pr_repo), "--base", "main", tty="stdout", env={"NO_COLOR": "1"})
    assert "\x1b[" not in shown and "missing-probes" in shown
    piped = run_bot("check", str(pr_repo), "--base", "main", "--color", "always")
    assert "\x1b[31m" in piped.stdout
    assert "\x1b[" not in run_bot("check", str(pr_repo), "--base", "main").stdout


def test_progress_on_a_terminal_s_stderr_only(pr_repo) -> None:
    shown, stdout = on_terminal("check", str(pr_repo), "--base", "main", tty="stderr")
    assert "rendered 1/" in shown and "overlays/" in shown
    assert shown.endswith("\r\x1b[K"), "the line is cleared before the report"
    assert "rendered 1/" not in stdout
    piped = run_bot("check", str(pr_repo), "--base", "main")
    assert "rendered 1/" not in piped.stderr, "no progress in redirected output"
    assert not shows_progress(Tty(), {"CI": "true"}), "nor in a CI log, even on a pseudo-terminal"


def test_status_line_fits_the_terminal() -> None:
    stream = Tty()
    line = StatusLine(stream)
    line.target("x/" * 200, 3, 9)
    shown = stream.getvalue()
    assert shown.startswith("\r\x1b[Krendered 3/9  x/") and shown.endswith("…") and len(shown) <= 110
    line.clear()
    assert stream.getvalue().endswith("\r\x1b[K")


def test_verbose_prints_stage_timings_on_stderr(pr_repo) -> None:
    out = run_bot("check", str(pr_repo), "--base", "main", "--verbose", "--format", "json")
    assert out.returncode == 1
    stages = [line.split()[0] for line in out.stderr.splitlines()[1:]]
    assert out.stderr.startswith("time per stage:")
    assert {"discover", "render", "rules", "compare", "total"} <= set(stages), out.stderr
    assert out.stdout.lstrip().startswith("{"), "stdout keeps the report alone"


def test_the_pipeline_reports_each_target_and_times_each_stage(tmp_path) -> None:
    for env in ("staging", "production"):
        (tmp_path / "overlays" / env).mkdir(parents=True)
        (tmp_path / "overlays" / env / "kustomization.yaml").write_text("resources: [cm.yaml]\n")
        (tmp_path / "overlays" / env / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
    heard: list[tuple[str, int, int]] = []
    progress = Progress(on_target=lambda *a: heard.append(a))
    model = RepoModel(RepoTree(tmp_path))
    progress.expect(len(model.targets))
    with progress.stage("render"):
        rendered = Renderer(model, cache=DiskCache(None)).render_all(model.targets, on_done=lambda r: progress.rendered(
            r.target.path))
    assert [r.target for r in rendered] == list(model.targets), "results keep the targets' order"
    assert sorted(heard) == [("overlays/production", 1, 2), ("overlays/staging", 2, 2)] or sorted(heard) == [
        ("overlays/production", 2, 2), ("overlays/staging", 1, 2)]
    assert progress.timings["render"] > 0
    lines = format_timings({"discover": 0.5, "render": 1.25}, 2.0)
    assert lines == ["discover    0.50 s", "render      1.25 s", "total       2.00 s"]
