"""`infra-review worker` (the worker without the web server) and `serve --no-worker`: settings, and a
SIGTERM that drains rather than kills."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from bot.__main__ import main
from bot.app.server import CTX, WORKER
from bot.queue import Job, JobState
from bot.queue.sqlite import SqliteQueue
from tests.conftest import eventually

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ("GITHUB_APP_ID", "GITHUB_PRIVATE_KEY", "GITHUB_PRIVATE_KEY_PATH", "GITHUB_WEBHOOK_SECRET", "WORKERS",
            "QUEUE_URL", "PORT", "GITHUB_API_URL", "DRAIN_GRACE", "ENV_FILE", "LOG_FORMAT")


@pytest.fixture
def environ(monkeypatch, tmp_path, private_key):
    """A configured environment in an empty working directory (so no stray .env is read)."""
    monkeypatch.chdir(tmp_path)
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    values = {"GITHUB_APP_ID": "4242", "GITHUB_PRIVATE_KEY": private_key, "GITHUB_WEBHOOK_SECRET": "hush",
              "QUEUE_URL": f"sqlite:///{tmp_path / 'queue.sqlite3'}", "LOG_FORMAT": "text"}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@pytest.fixture
def run_app(monkeypatch):
    """Stands in for aiohttp's run_app: records the app `serve` would run."""
    apps = []
    monkeypatch.setattr("bot.app.cli.web.run_app", lambda app, **_: apps.append(app))
    return apps


def test_worker_reports_every_configuration_problem_and_exits_2(environ, monkeypatch, capsys):
    monkeypatch.delenv("GITHUB_APP_ID")
    monkeypatch.setenv("DRAIN_GRACE", "soon")
    monkeypatch.setenv("QUEUE_MAX_FAILURES", "0")
    assert main(["worker"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("infra-review: configuration errors:\n")
    assert [line.split()[1] for line in err.splitlines()[1:]] == ["GITHUB_APP_ID", "QUEUE_MAX_FAILURES",
                                                                 "DRAIN_GRACE"]
    assert "soon" not in err and "hush" not in err


def test_worker_refuses_to_run_with_no_workers(environ, monkeypatch, capsys):
    monkeypatch.setenv("WORKERS", "0")
    assert main(["worker"]) == 2
    assert "WORKERS is 0" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "workers", "concurrency"), [
    (["serve"], None, 2), (["serve", "--no-worker"], None, 0), (["serve"], "0", 0)])
def test_serve_runs_workers_unless_told_not_to(environ, monkeypatch, run_app, argv, workers, concurrency):
    if workers is not None:
        monkeypatch.setenv("WORKERS", workers)
    assert main(argv) == 0
    [app] = run_app
    assert app[WORKER].concurrency == concurrency


def test_serve_without_credentials_starts_in_setup_mode(environ, monkeypatch, run_app):
    for name in ("GITHUB_APP_ID", "GITHUB_PRIVATE_KEY", "GITHUB_WEBHOOK_SECRET"):
        monkeypatch.delenv(name)
    assert main(["serve"]) == 0
    [app] = run_app
    assert not app[CTX].settings.configured


async def hanging_github() -> tuple[asyncio.Server, list[asyncio.StreamWriter]]:
    """A GitHub that accepts requests and never answers: a review against it runs until stopped."""
    accepted: list[asyncio.StreamWriter] = []

    async def never_answer(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    return await asyncio.start_server(never_answer, "127.0.0.1", 0), accepted


async def test_sigterm_drains_the_worker_and_hands_its_review_back(tmp_path, private_key):
    """A review still running after DRAIN_GRACE goes back to the queue uncharged; the process exits 0."""
    path = tmp_path / "queue.sqlite3"
    queue = SqliteQueue(path)
    await queue.open()
    stored = await queue.enqueue(Job(installation_id=1, repo="o/r", pr_number=1, head_sha="a" * 40,
                                     reason="pull_request.opened", delivery_id="d"))
    github, accepted = await hanging_github()
    env = {**{k: v for k, v in os.environ.items() if k not in SETTINGS}, "GITHUB_APP_ID": "4242",
           "GITHUB_PRIVATE_KEY": private_key, "GITHUB_WEBHOOK_SECRET": "hush", "QUEUE_URL": f"sqlite:///{path}",
           "GITHUB_API_URL": f"http://127.0.0.1:{github.sockets[0].getsockname()[1]}", "DRAIN_GRACE": "0.5",
           "ENV_FILE": str(tmp_path / "absent.env"), "LOG_FORMAT": "text", "WORKERS": "1"}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "worker", cwd=ROOT, env=env,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        await eventually(lambda: accepted, what="the review to call GitHub")
        assert await queue.state(stored.key) is JobState.RUNNING
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
        for writer in accepted:
            writer.close()
        github.close()
    log = err.decode()
    assert proc.returncode == 0, log[-3000:]
    assert "back to the queue" in log
    [job] = await queue.jobs()
    assert (job.state, job.attempt, job.failures, job.claims) == (JobState.QUEUED, 1, 0, 1)
    await queue.close()
