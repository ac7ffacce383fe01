"""Fixtures for GitHub App tests: the one fake GitHub, signed real payloads, the app under test."""

from __future__ import annotations

import asyncio
import copy
import inspect
import json
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bot.app.client import GitHubApp
from tests.conftest_paths import WEBHOOK_EXAMPLES
from tests.fakegh import FakeGitHub, FakePull

APP_ID = 4242
SECRET = "test-webhook-secret"


# Reviews run at nice 19 in service (bot/app/isolated.py), where they compete with the service alone.
# Here they compete with the other test workers at nice 0, which would starve them (a review three
# times slower under load, and tests waiting on it past their timeouts); subprocesses inherit this.
os.environ.setdefault("INFRA_REVIEW_NICENESS", "10")


@pytest.fixture(scope="session", autouse=True)
def render_cache(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Builds cache under this session's temporary directory (one per xdist worker), never in the user's
    ~/.cache: runs do not see each other's entries, and nothing is left behind. Subprocesses inherit it."""
    directory = tmp_path_factory.mktemp("render-cache")
    before = os.environ.get("INFRA_REVIEW_CACHE")
    os.environ["INFRA_REVIEW_CACHE"] = str(directory)
    yield directory
    if before is None:
        os.environ.pop("INFRA_REVIEW_CACHE", None)
    else:
        os.environ["INFRA_REVIEW_CACHE"] = before


async def eventually(probe: Callable[[], Any | Awaitable[Any]], *, timeout: float = 30.0, interval: float = 0.02,
                     what: str = "the expected state") -> Any:
    """Poll `probe` (plain or async) until it returns something truthy, and return that.

    Tests wait for background work (workers, lease expiry, pruning) this way instead of sleeping a fixed
    time that a loaded machine may overrun; the timeout is only there to fail a test that would hang."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = probe()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"gave up after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)


def load_payload(event: str, name: str) -> dict:
    """A real octokit/webhooks payload from tests/fixtures/github/webhooks/examples (a fresh copy)."""
    return copy.deepcopy(json.loads((WEBHOOK_EXAMPLES / event / name).read_text()))


def ours(payload: dict) -> dict:
    """A check_run or check_suite payload as GitHub sends it to this App: about a run or suite of
    ours (the examples were recorded for other Apps, which the service ignores)."""
    for key in ("check_run", "check_suite"):
        if isinstance(payload.get(key), dict):
            payload[key]["app"]["id"] = APP_ID
    return payload


@pytest.fixture(scope="session")
def private_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption()).decode()


@dataclass
class FakeTime:
    """Injected as the client's sleep/clock: records waits and advances virtual time instantly."""

    now: float = field(default_factory=time.time)
    sleeps: list[float] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The example pull request as GitHub would serve it (tests/example_pr.py), built once per module."""
    from tests.example_pr import example_pr

    return example_pr(tmp_path_factory.mktemp("example"))


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


def seed_pull_from_payload(fake: FakeGitHub, payload: dict) -> FakePull:
    """Put the PR of a real pull_request payload into the fake, with one changed file and both trees."""
    pr = payload["pull_request"]
    repo = fake.add_repo(payload["repository"]["full_name"], default_branch=payload["repository"]["default_branch"])
    merge_base = "b" * 40
    pull = fake.add_pull(repo.full_name, FakePull(
        number=pr["number"], head_sha=pr["head"]["sha"], base_sha=pr["base"]["sha"], merge_base=merge_base,
        author=pr["user"]["login"], base_ref=pr["base"]["ref"], head_ref=pr["head"]["ref"],
        files=[{"filename": "apps/web/deployment.yaml", "status": "modified", "additions": 1, "deletions": 1,
                "patch": "@@ -1,4 +1,4 @@\n apiVersion: apps/v1\n kind: Deployment\n-  image: web:1.0\n+  image: web:1.1\n"
                         " metadata:"}]))
    repo.trees[merge_base] = {"apps/web/deployment.yaml": b"apiVersion: apps/v1\nkind: Deployment\n"}
    repo.trees[pull.head_sha] = {"apps/web/deployment.yaml": b"apiVersion: apps/v1\nkind: Deployment\n# new\n"}
    repo.trees[repo.default_branch] = {".github/infra-review.yml": b"environments: {}\n"}
    return pull


@pytest.fixture
async def fakegh(aiohttp_server: Callable, private_key: str) -> Any:
    """The fake GitHub serving the repo and PR of the real pull_request payloads; asserts no violations."""
    fake = FakeGitHub(app_id=APP_ID, private_key=private_key)
    seed_pull_from_payload(fake, load_payload("pull_request", "opened.payload.json"))
    fake.server = await aiohttp_server(fake.app)
    fake.url = str(fake.server.make_url("")).rstrip("/")
    yield fake
    assert fake.violations == [], "requests GitHub's OpenAPI description does not allow"


@pytest.fixture
def settings(fakegh: FakeGitHub, private_key: str, tmp_path: Path) -> Any:
    from bot.app.settings import Settings

    # One failure gives a job up (its check run completes at once); the retries have their own tests.
    return Settings(app_id=APP_ID, private_key=private_key, webhook_secret=SECRET, api_url=fakegh.url,
                    queue_url=f"sqlite:///{tmp_path / 'queue.sqlite3'}", app_slug="infra-review", max_failures=1,
                    env_file=str(tmp_path / ".env"))


def signed(payload: dict | bytes, event: str, delivery: str | None = None,
           secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    from bot.app.webhooks import sign

    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return body, {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
                  "X-Hub-Signature-256": sign(body, secret), "Content-Type": "application/json"}


@dataclass
class BotUnderTest:
    client: Any
    app: Any
    queue: Any
    reviewed: list = field(default_factory=list)
    failed: list = field(default_factory=list)

    async def send(self, event: str, payload: dict, delivery: str | None = None) -> Any:
        body, headers = signed(payload, event, delivery)
        return await self.client.post("/webhook", data=body, headers=headers)

    async def settle(self, timeout: float = 10.0) -> None:
        """Wait until every stored delivery is handled and no job is queued or running."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if (await self.queue.stats()).idle:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"not settled: {await self.queue.stats()}")


async def check_run_review(job: Any, gh: Any) -> None:
    """A stand-in for the real pipeline that talks to GitHub the way a review does."""
    from bot.app.source import list_changed_files

    url_vars = {"owner": job.owner, "repo": job.name}
    run = await gh.post("/repos/{owner}/{repo}/check-runs", url_vars,
                        data={"name": "infra-review", "head_sha": job.head_sha, "status": "in_progress",
                              "external_id": str(job.pr_number)})
    files = await list_changed_files(gh, job.repo, job.pr_number)
    await gh.patch("/repos/{owner}/{repo}/check-runs/{check_run_id}", {**url_vars, "check_run_id": run["id"]},
                   data={"status": "completed", "conclusion": "success",
                         "output": {"title": "ok", "summary": f"{len(files.files)} file(s)"}})


@pytest.fixture
def make_bot(aiohttp_client: Callable, settings: Any, fake_time: FakeTime) -> Callable:
    """Build and start the real aiohttp app; `review`/`fail` default to recorders around check_run_review."""
    from bot.app.server import create_app
    from bot.queue.sqlite import SqliteQueue

    async def build(review: Callable | None = None, fail: Callable | None = None, *, queue: Any = None,
                    settings_override: Any = None, **kwargs: Any) -> BotUnderTest:
        cfg = settings_override or settings
        queue = queue or SqliteQueue(cfg.queue_url.removeprefix("sqlite:///"))
        bot = BotUnderTest(client=None, app=None, queue=queue)

        async def recording_review(job: Any, gh: Any) -> Any:
            bot.reviewed.append(job)
            return await (review or check_run_review)(job, gh)

        async def recording_fail(job: Any, gh: Any, exc: BaseException) -> None:
            bot.failed.append((job, exc))
            if fail:
                await fail(job, gh, exc)

        bot.app = create_app(cfg, queue=queue, review=recording_review, fail=recording_fail,
                             sleep=fake_time.sleep, poll=0.05, watch_interval=0.02, **kwargs)
        bot.client = await aiohttp_client(bot.app)
        return bot

    return build


@pytest.fixture
async def github(fakegh: FakeGitHub, private_key: str, fake_time: FakeTime) -> Any:
    """The App's GitHub client against the fake GitHub, on the fake clock; one session per test."""
    async with aiohttp.ClientSession() as session:
        yield GitHubApp(app_id=APP_ID, private_key=private_key, base_url=fakegh.url, session=session,
                        sleep=fake_time.sleep, clock=fake_time.clock)


@pytest.fixture
def gh(github: Any) -> Any:
    """The client of installation 1."""
    return github(1)
