"""SIGKILL the real service at points of a review, restart it, and look at the pull request.

`python -m bot serve` runs as a child process against the fake GitHub (in this process), with the
SQLite queue or a real Redis. One signed delivery of the example pull request is acknowledged; the
service is killed at a point of the review (the fake sends the signal as the request of that point
arrives, and still serves it, so GitHub has done what the dead process asked), started again, and
left to settle. Whatever the point, the pull request must show what a review without a kill shows:
one completed check run with the same conclusion, each annotation and each comment once, the stale
comment deleted. Seeded cases kill during a random kustomize build, and kill twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.publish.github import annotation_key, marker, parse_fingerprints
from tests.conftest import APP_ID, SECRET, load_payload, seed_pull_from_payload, signed
from tests.example_pr import opened, seed_example
from tests.fakegh import FakeGitHub
from tests.loopback import descendants, free_port, store_is_idle, wait_for_health
from tests.test_queue_redis import redis_url  # noqa: F401  (the session's redis-server)

ROOT = Path(__file__).resolve().parents[1]
STALE = "00000000deadbeef"
LEASE = 1.0  # seconds a killed process's Redis leases outlive it (QUEUE_URL ?lease=)

# Where the service dies: the request whose arrival kills it (the fake still serves it), `nth` counted
# from the delivery. "ack": right after the webhook is acknowledged.
POINTS = {
    "after the ack": None,
    "run created": ("checks/create", 1),
    "downloading the trees": ("codeload", 1),
    "asking whether the head is current": ("pulls/get", 2),
    "run completed, first annotation batch": ("checks/update", 1),
    "between annotation batches": ("checks/update", 2),
    "reading our comments": ("pulls/list-review-comments", 1),
    "review posted": ("pulls/create-review", 1),
    "stale comment deleted": ("pulls/delete-review-comment", 1),
}
SEEDS = range(3)


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def kill_during_build(service: Service, nth: int) -> None:
    """SIGKILL the service while its `nth` kustomize build runs: certainly in the middle of rendering."""
    seen: set[int] = set()
    while True:
        assert service.proc is not None
        seen |= {pid for pid, cmd in descendants(service.proc.pid).items() if "kustomize" in cmd}
        if len(seen) >= nth:
            service.kill()
            return
        await asyncio.sleep(0.005)


def many_findings(example: dict) -> dict:
    """The example PR with a Deployment of twenty careless containers appended to a base file, so its
    review has more than 50 annotations (two batches) while the diff and its comments stay the same."""
    containers = "".join(f"        - name: c{i}\n          image: nginx:latest\n" for i in range(20))
    extra = ("---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: sidecars\nspec:\n  replicas: 2\n"
             "  selector:\n    matchLabels: {app: sidecars}\n  template:\n    metadata:\n"
             "      labels: {app: sidecars}\n    spec:\n      containers:\n" + containers)
    path = "base/api/deployment.yaml"
    head = {**example["head"], path: example["head"][path] + extra.encode()}
    return {**example, "head": head}


class Service:
    """`python -m bot serve` in a child process; its log goes to a file the test prints on failure."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.proc: subprocess.Popen | None = None
        self.orphans: set[int] = set()
        self.url = f"http://127.0.0.1:{env['PORT']}"

    async def start(self, session: aiohttp.ClientSession) -> None:
        with self.log.open("a") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "bot", "serve", "--host", "127.0.0.1"],
                                         cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        try:
            await wait_for_health(session, self.url, self.proc)
        except RuntimeError as exc:
            raise AssertionError(f"{exc}:\n{self.log.read_text()}") from None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.orphans |= set(descendants(self.proc.pid))
            os.kill(self.proc.pid, signal.SIGKILL)

    async def no_orphans(self, timeout: float = 30.0) -> None:
        """What the killed service had started (the forkserver, a review's process, its builds) stops too."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while alive := [pid for pid in self.orphans if running(pid)]:
            if loop.time() > deadline:
                raise AssertionError(f"processes of the killed service still run: {alive}")
            await asyncio.sleep(0.05)

    async def dead(self) -> None:
        assert self.proc is not None
        while self.proc.poll() is None:
            await asyncio.sleep(0.02)
        assert self.proc.returncode == -signal.SIGKILL

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclasses.dataclass(frozen=True)
class Shown:
    runs: tuple[tuple[str, str | None, str], ...]  # status, conclusion, title of each run of the head
    annotations: tuple[int, int]  # how many, how many distinct
    comments: frozenset[str]
    repeated: tuple[str, ...]  # fingerprints said more than once


def shown(fake: FakeGitHub, head_sha: str) -> Shown:
    runs = sorted((r for r in fake.check_runs.values() if r["head_sha"] == head_sha), key=lambda r: r["id"])
    anns = [annotation_key(a) for r in runs for a in fake.annotations[r["id"]]]
    login = fake.bot_user()["login"]
    said = Counter(fp for c in fake.review_comments if c.get("user", {}).get("login") == login
                   for fp in parse_fingerprints(c["body"]))
    return Shown(tuple((r["status"], r.get("conclusion"), (r.get("output") or {}).get("title", "")) for r in runs),
                 (len(anns), len(set(anns))), frozenset(said), tuple(fp for fp, n in said.items() if n > 1))


@pytest.fixture
def queue_urls(request: Any, tmp_path: Path) -> Callable[[str], str]:
    def make(kind: str) -> str:
        if kind == "sqlite":
            return f"sqlite:///{tmp_path / f'queue-{uuid.uuid4().hex[:8]}.sqlite3'}"
        base = request.getfixturevalue("redis_url")
        return f"{base}?prefix=crash-{uuid.uuid4().hex[:10]}:&lease={LEASE}"
    return make


async def dead_or_settled(service: Service, queue_url: str, timeout: float = 90.0) -> bool:
    """Waits until the service was killed (True) or finished everything alive (False)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        assert service.proc is not None
        if service.proc.poll() is not None:
            assert service.proc.returncode == -signal.SIGKILL, service.proc.returncode
            return True
        if await store_is_idle(queue_url):
            return False
        await asyncio.sleep(0.05)
    raise AssertionError("the service neither died nor settled in time")


async def review_with_kills(aiohttp_server: Any, private_key: str, example: dict, tmp_path: Path, queue_url: str,
                            kills: list[str], seed: int | None = None) -> Shown:
    """One PR, one acknowledged delivery; the service is killed at each of `kills` in turn (restarted
    after each), then left to settle. What the PR shows at the end."""
    fake = FakeGitHub(app_id=APP_ID, private_key=private_key)
    seed_pull_from_payload(fake, load_payload("pull_request", "opened.payload.json"))
    pull = seed_example(fake, example)
    fake._add_review_comment(pull, {"path": "base/web/configmap.yaml", "line": 9, "body": f"old\n{marker(STALE)}"},
                             None, fake.bot_user())
    server = await aiohttp_server(fake.app)
    env = {**os.environ, "GITHUB_APP_ID": str(APP_ID), "GITHUB_PRIVATE_KEY": private_key,
           "GITHUB_WEBHOOK_SECRET": SECRET, "GITHUB_API_URL": str(server.make_url("")).rstrip("/"),
           "QUEUE_URL": queue_url, "PORT": str(free_port()), "WORKERS": "1", "LOG_FORMAT": "text",
           "GITHUB_MUTATION_INTERVAL": "0", "ENV_FILE": str(tmp_path / "absent.env"), "DRAIN_GRACE": "5",
           # a cache of its own, cold at the start (so there is rendering to kill), kept across restarts
           "INFRA_REVIEW_CACHE": str(tmp_path / f"cache-{uuid.uuid4().hex[:6]}")}
    service = Service(env, tmp_path / f"service-{uuid.uuid4().hex[:6]}.log")
    rng = random.Random(seed)
    loop = asyncio.get_running_loop()
    watcher: asyncio.Task | None = None
    killed: list[str] = []
    try:
        async with aiohttp.ClientSession() as session:
            await service.start(session)
            body, headers = signed(opened(example), "pull_request")
            async with session.post(f"{service.url}/webhook", data=body, headers=headers) as resp:
                assert resp.status == 202, await resp.text()
            for point in kills:
                where = POINTS.get(point)
                if point == "while rendering":
                    watcher = loop.create_task(kill_during_build(service, rng.randint(1, 4)))
                elif where is not None:
                    fake.before(where[0], service.kill, nth=where[1])
                else:
                    service.kill()
                if not await dead_or_settled(service, queue_url):
                    break  # the resumed review no longer reaches this point: nothing to kill there
                killed.append(point)
                await service.no_orphans()
                await service.start(session)
            assert not await dead_or_settled(service, queue_url), "killed, but no kill was asked for"
    except BaseException:
        print(service.log.read_text()[-6000:])
        raise
    finally:
        if watcher is not None:
            watcher.cancel()
        service.stop()
    assert fake.violations == [] and fake.rejections == [], (fake.violations, fake.rejections)
    assert killed[:1] == kills[:1], "the first point is always reached"
    return shown(fake, example["head_sha"])


_YARDSTICK: dict[str, Shown] = {}


@pytest.fixture
async def yardstick(aiohttp_server, private_key, example, tmp_path) -> Shown:
    """The same PR reviewed by the same service with no kill (once per test process)."""
    if "clean" not in _YARDSTICK:
        clean = await review_with_kills(aiohttp_server, private_key, many_findings(example), tmp_path,
                                        f"sqlite:///{tmp_path / 'clean.sqlite3'}", [])
        [(status, conclusion, _)] = clean.runs
        assert (status, conclusion) == ("completed", "failure") and clean.annotations[0] > 50
        assert clean.comments and not clean.repeated and STALE not in clean.comments
        _YARDSTICK["clean"] = clean
    return _YARDSTICK["clean"]


def cases() -> list[Any]:
    out = [pytest.param(kind, [point], None, id=f"{kind}: {point}") for kind in ("sqlite", "redis")
           for point in POINTS]
    for kind in ("sqlite", "redis"):
        for seed in SEEDS:
            rng = random.Random(f"{kind}-{seed}")
            first, second = sorted(rng.sample(sorted(POINTS), 2), key=list(POINTS).index)
            out.append(pytest.param(kind, ["while rendering"], seed, id=f"{kind}: while rendering, seed {seed}"))
            out.append(pytest.param(kind, [first, second], seed, id=f"{kind}: {first}, then {second}"))
    return out


@pytest.mark.parametrize("kind, kills, seed", cases())
async def test_a_killed_review_is_done_exactly_once_as_the_pr_sees_it(kind, kills, seed, aiohttp_server, private_key,
                                                                       example, tmp_path, queue_urls, yardstick):
    after = await review_with_kills(aiohttp_server, private_key, many_findings(example), tmp_path, queue_urls(kind),
                                    kills, seed)
    assert after.repeated == (), "a comment said twice"
    assert after.comments == yardstick.comments
    assert after.annotations == yardstick.annotations, "each annotation once, none missing"
    assert after.runs == yardstick.runs, "one run, completed as a review without a kill completes it"
