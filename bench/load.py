"""The load figure of issue 15: signed deliveries at a fixed rate into the real service, over loopback.

`python -m bot serve` runs as a child process against the fake GitHub (tests/fakegh.py, in this
process), its queue SQLite or a real Redis. Deliveries are sent open-loop (on schedule, whatever the
answers take) across `--prs` pull requests of the example repository:

- 70 % `pull_request.synchronize`, each a new head commit of its PR (the fake's PR moves with it);
- 10 % redeliveries of an earlier delivery (same X-GitHub-Delivery: recognised, not queued twice);
- 20 % `pull_request.labeled`, which the App acknowledges and ignores.

The fake GitHub stands in for servers that are not on the service's machine, so once the load starts
it runs at nice 10 (`--fake-nice`): its CPU (it validates every request against GitHub's OpenAPI
description) would otherwise be taken from the service on a small machine.

Reported: acknowledgement latency (POST sent → response) p50/p99/max; deliveries lost (acknowledged
but not stored, plus PRs whose newest head never got a completed check run); reviews run (check runs
opened) against pushes coalesced into a newer head's review; the service's peak RSS (VmHWM); how
long the queue took to drain. Not a test: `make bench-load` runs it.

Usage: python -m bench.load [--deliveries 2000] [--rate 200] [--prs 50] [--queue sqlite|redis] [--split]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import multiprocessing
import os
import random
import resource
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bot.app.webhooks import sign
from tests.example_pr import REPO, example_pr
from tests.fakegh import FakeGitHub, FakePull
from tests.loopback import descendants, free_port, store_is_idle, wait_for_health

ROOT = Path(__file__).resolve().parents[1]
APP_ID = 4242
SECRET = "load-test-secret"
PAYLOADS = ROOT / "tests" / "fixtures" / "github" / "webhooks" / "examples" / "pull_request"


@dataclass
class Sent:
    delivery: str
    status: int = 0
    outcome: str = ""  # the App's answer: queued, duplicate, ignored
    seconds: float = 0.0
    at: float = 0.0  # when it was sent, seconds after the first


# One delivery to send: (delivery id, PR number, action, the new head SHA of a push or None).
Item = tuple[str, int, str, str | None]


def plan(deliveries: int, prs: int, seed: int) -> list[Item]:
    """What is sent, in order; the same for the same seed."""
    rng = random.Random(seed)
    out: list[Item] = []
    sent: list[Item] = []
    for _ in range(deliveries):
        pr = 1 + rng.randrange(prs)
        roll = rng.random()
        if roll < 0.10 and sent:
            out.append(rng.choice(sent))  # a redelivery: same id, same body
            continue
        kind = "synchronize" if roll < 0.80 else "labeled"
        sha = f"{rng.getrandbits(160):040x}" if kind == "synchronize" else None
        item = (str(uuid.UUID(int=rng.getrandbits(128), version=4)), pr, kind, sha)
        out.append(item)
        sent.append(item)
    return out


def payload(template: dict, number: int, kind: str, sha: str | None, base_sha: str) -> bytes:
    data = copy.deepcopy(template)
    data["action"] = kind
    data["number"] = data["pull_request"]["number"] = number
    if sha:
        data["pull_request"]["head"]["sha"] = sha
    data["pull_request"]["base"]["sha"] = base_sha
    if kind == "labeled":
        data["label"] = {"id": 1, "node_id": "L", "url": "", "name": "infra", "color": "ffffff", "default": False,
                         "description": None}
    return json.dumps(data).encode()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process (its own, not its children's)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def peak_rss_mib(pid: int) -> float:
    """The process's own peak resident set (VmHWM)."""
    return _status_kib(pid, "VmHWM") / 1024


def _pss_kib(pid: int) -> int:
    """Proportional set size: shared pages (the forkserver's, copied on write) divided among sharers."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


async def sample_tree(pids: list[int], peak: dict[str, float], every: float = 0.05) -> None:
    """The largest sums, over the samples, of the memory of `pids` and everything they started (the
    forkserver, reviews' processes, kustomize builds): what the service costs the machine. RSS counts
    shared pages once per process; PSS divides them among the processes sharing them."""
    while True:
        tree = set(pids) | {p for pid in pids for p in descendants(pid)}
        peak["rss"] = max(peak["rss"], sum(_status_kib(p, "VmRSS") for p in tree) / 1024)
        peak["pss"] = max(peak["pss"], sum(_pss_kib(p) for p in tree) / 1024)
        peak["processes"] = max(peak["processes"], len(tree))
        await asyncio.sleep(every)


def stored_deliveries(queue_url: str) -> set[str]:
    """Delivery ids the store holds, read from the store itself (SQLite's table, Redis's keys)."""
    if queue_url.startswith("sqlite:///"):
        with sqlite3.connect(queue_url.removeprefix("sqlite:///")) as db:
            return {row[0] for row in db.execute("SELECT delivery_id FROM deliveries")}
    import redis

    from bot.queue import open_queue

    prefix = open_queue(queue_url).prefix  # type: ignore[attr-defined]
    client = redis.Redis.from_url(queue_url.split("?", 1)[0], decode_responses=True)
    try:
        keys = client.scan_iter(match=f"{prefix}delivery:*", count=1000)
        return {k.removeprefix(f"{prefix}delivery:") for k in keys} - {"seq"}
    finally:
        client.close()


def send_all(url: str, bodies: list[tuple[str, bytes]], rate: float, start_at: float) -> tuple[list[Sent], float]:
    """In a process of its own (so the fake GitHub's work does not delay the sends or their timing):
    each delivery posted at start_at + i / rate, open-loop, and timed until its answer."""
    return asyncio.run(_send_all(url, bodies, rate, start_at))


async def _send_all(url: str, bodies: list[tuple[str, bytes]], rate: float,
                    start_at: float) -> tuple[list[Sent], float]:
    results: list[Sent] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def send(delivery: str, body: bytes) -> None:
            headers = {"X-GitHub-Event": "pull_request", "X-GitHub-Delivery": delivery,
                       "X-Hub-Signature-256": sign(body, SECRET), "Content-Type": "application/json"}
            started = time.perf_counter()
            record = Sent(delivery, at=started - t0)
            try:
                async with session.post(f"{url}/webhook", data=body, headers=headers) as resp:
                    record.status = resp.status
                    record.outcome = str((await resp.json()).get("status", ""))
            except (aiohttp.ClientError, ValueError):
                record.status = -1
            record.seconds = time.perf_counter() - started
            results.append(record)

        await asyncio.sleep(max(start_at - time.time(), 0))
        t0 = time.perf_counter()
        tasks = []
        for i, (delivery, body) in enumerate(bodies):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(delivery, body)))
        await asyncio.gather(*tasks)
        return results, time.perf_counter() - t0


async def move_heads(pulls: dict[int, FakePull], items: list[Item], rate: float,
                     start_at: float) -> None:
    """GitHub's side of each push: the PR's head moves just before its webhook is sent."""
    t0 = time.perf_counter() + (start_at - time.time())
    seen: set[str] = set()
    for i, (delivery, number, _, sha) in enumerate(items):
        delay = t0 + i / rate - 0.001 - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if sha and delivery not in seen:  # a redelivery is not a push
            pulls[number].head_sha = sha
        seen.add(delivery)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="infra-review-load-"))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption()).decode()
    example = example_pr(work / "example")
    fake = FakeGitHub(app_id=APP_ID, private_key=key)
    repo = fake.add_repo(REPO, default_branch="master")
    repo.trees = {example["base_sha"]: example["base"], "master": example["base"]}
    pulls = {n: fake.add_pull(REPO, FakePull(number=n, head_sha=example["head_sha"], base_sha=example["base_sha"],
                                             merge_base=example["base_sha"], files=example["files"]))
             for n in range(1, args.prs + 1)}
    runner = web.AppRunner(fake.app, access_log=None)
    await runner.setup()
    github_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", github_port).start()

    if args.queue == "redis":
        queue_url = f"{args.redis_url}?prefix=load-{uuid.uuid4().hex[:8]}:"
    else:
        queue_url = f"sqlite:///{work / 'queue.sqlite3'}"
    port = free_port()
    env = {**os.environ, "GITHUB_APP_ID": str(APP_ID), "GITHUB_PRIVATE_KEY": key, "GITHUB_WEBHOOK_SECRET": SECRET,
           "GITHUB_API_URL": f"http://127.0.0.1:{github_port}", "QUEUE_URL": queue_url, "PORT": str(port),
           "WORKERS": str(args.workers), "LOG_FORMAT": "json", "LOG_LEVEL": "WARNING",
           "GITHUB_MUTATION_INTERVAL": str(args.mutation_interval), "ENV_FILE": str(work / "absent.env"),
           "INFRA_REVIEW_CACHE": str(work / "cache")}
    log = (work / "service.log").open("w")
    serve = [sys.executable, "-m", "bot", "serve", "--host", "127.0.0.1"] + (["--no-worker"] if args.split else [])
    proc = subprocess.Popen(serve, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    worker = subprocess.Popen([sys.executable, "-m", "bot", "worker"], cwd=ROOT, env=env, stdout=log,
                              stderr=subprocess.STDOUT) if args.split else None
    url = f"http://127.0.0.1:{port}"
    template = json.loads((PAYLOADS / "synchronize.payload.json").read_text())
    template["repository"]["full_name"] = REPO
    template["repository"]["name"], template["repository"]["owner"]["login"] = REPO.split("/")[1], REPO.split("/")[0]
    template["installation"] = {"id": 1, "node_id": "I"}
    items = plan(args.deliveries, args.prs, args.seed)
    for _, _, _, sha in items:
        if sha:
            repo.trees[sha] = example["head"]
    try:
        async with aiohttp.ClientSession() as session:
            try:
                await wait_for_health(session, url, proc)
            except RuntimeError as exc:
                raise SystemExit(f"{exc}; its log: {work / 'service.log'}") from None
        start_at = time.time() + 1.0
        bodies = [(delivery, payload(template, number, kind, sha, example["base_sha"]))
                  for delivery, number, kind, sha in items]
        tree_peak = {"rss": 0.0, "pss": 0.0, "processes": 0}
        sampler = asyncio.create_task(sample_tree([proc.pid] + ([worker.pid] if worker else []), tree_peak))
        context = multiprocessing.get_context("spawn")
        with context.Pool(1) as pool:
            # GitHub's work is not done on the service's machine: from here on the fake (this process,
            # validating every request against the OpenAPI description) yields the CPU to the service
            # and the sender, started above at the normal priority.
            os.nice(args.fake_nice)
            sending = pool.apply_async(send_all, (url, bodies, args.rate, start_at))
            await move_heads(pulls, items, args.rate, start_at)
            while not sending.ready():
                await asyncio.sleep(0.05)
            results, sent_in = sending.get()
        rss_after_load = peak_rss_mib(proc.pid)
        drain_started = time.perf_counter()
        while not await store_is_idle(queue_url):
            if time.perf_counter() - drain_started > args.drain_timeout:
                raise SystemExit(f"the queue did not drain in {args.drain_timeout} s")
            await asyncio.sleep(0.2)
        drain = time.perf_counter() - drain_started
        sampler.cancel()
        peak = peak_rss_mib(proc.pid)
        service_cpu = cpu_seconds(proc.pid) + (cpu_seconds(worker.pid) if worker else 0.0)
        fake_cpu = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
        worker_peak = peak_rss_mib(worker.pid) if worker else None
    finally:
        for child in (proc, worker):
            if child is not None and child.poll() is None:
                child.send_signal(signal.SIGTERM)
                try:
                    child.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    child.kill()
        log.close()
        await runner.cleanup()

    acked = {r.delivery for r in results if r.outcome in ("queued", "duplicate")}
    stored = stored_deliveries(queue_url)
    final_heads = {n: p.head_sha for n, p in pulls.items()}
    completed = {(r["head_sha"]) for r in fake.check_runs.values()
                 if r["status"] == "completed" and r.get("conclusion") == "failure"}
    unreviewed = sorted(n for n, sha in final_heads.items()
                        if sha != example["head_sha"] and sha not in completed)
    pushes = sum(1 for _, _, kind, sha in {i[0]: i for i in items}.values() if kind == "synchronize")
    reviews = len(fake.calls("checks/create"))
    lat = sorted(r.seconds * 1000 for r in results)
    figures = {
        "deliveries": len(items), "rate": args.rate, "prs": args.prs, "queue": args.queue,
        "processes": "serve --no-worker + worker" if args.split else "serve",
        "sent in (s)": round(sent_in, 2),
        "ack p50 (ms)": round(statistics.median(lat), 2),
        "ack p99 (ms)": round(lat[int(len(lat) * 0.99) - 1], 2),
        "ack max (ms)": round(lat[-1], 2),
        "slowest 1 % sent at (s after the first, by tenths)": dict(sorted(Counter(
            round(r.at, 1) for r in sorted(results, key=lambda r: -r.seconds)[:len(results) // 100]).items())),
        "answers": dict(sorted(Counter(f"{r.status} {r.outcome}" for r in results).items())),
        "lost: acked but not stored": len(acked - stored),
        "lost: PRs whose newest head has no completed run": len(unreviewed),
        "pushes (distinct synchronize deliveries)": pushes,
        "reviews run (check runs opened)": reviews,
        "pushes coalesced into a newer head's review": pushes - reviews,
        "queue drained after the load in (s)": round(drain, 1),
        "service peak RSS during the load (MiB)": round(rss_after_load, 1),
        "service peak RSS at the end (MiB)": round(peak, 1),
        "worker process peak RSS (MiB, --split)": worker_peak and round(worker_peak, 1),
        "peak PSS of the service with everything it started (MiB, sampled)": round(tree_peak["pss"], 1),
        "peak RSS of the same, shared pages counted per process (MiB)": round(tree_peak["rss"], 1),
        "most processes at once (service, forkserver, reviews, builds)": tree_peak["processes"],
        "CPU s: service process(es), without children": round(service_cpu, 1),
        "CPU s: this process (the fake GitHub, validating every request)": round(fake_cpu, 1),
        "GitHub API violations": len(fake.violations),
    }
    if args.keep:
        print(f"kept {work} (service.log: the service's log)")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=200.0, help="deliveries per second")
    parser.add_argument("--prs", type=int, default=50)
    parser.add_argument("--queue", choices=("sqlite", "redis"), default="sqlite")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--split", action="store_true",
                        help="`serve --no-worker` and `worker` as two processes (the Procfile's web and worker)")
    parser.add_argument("--mutation-interval", type=float, default=0.05,
                        help="GITHUB_MUTATION_INTERVAL of the service (1 s in production; the fake needs no pacing)")
    parser.add_argument("--drain-timeout", type=float, default=600.0)
    parser.add_argument("--fake-nice", type=int, default=10,
                        help="niceness of the fake GitHub once the load starts (0: it competes with the service)")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--keep", action="store_true", help="keep the working folder and the service's log")
    args = parser.parse_args(argv)
    figures = asyncio.run(run(args))
    width = max(map(len, figures))
    for name, value in figures.items():
        print(f"{name:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
