"""The shared queue against a real redis-server: the SQLite contract, plus what several replicas need.

A session fixture starts its own redis-server (or uses REDIS_URL); under pytest-xdist each worker has
its own, and every test its own key prefix. Without the binary the tests skip locally and fail under CI,
which must install it (.ci/apt.sh, from .ci/run).

Leases run on Redis server time, so no clock can be injected: a test that asserts a lease still holds
gives it LEASE seconds, far more than those steps take even on a loaded machine, and a test that needs
a lease to have run out polls Redis until it has, instead of sleeping a fixed time.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis
from loopback import spawned
from queue_contract import REPO, QueueContract, job

from bot.queue import Delivery, JobState, open_queue
from bot.queue.redis import DEFAULT_PREFIX, RedisQueue
from tests.conftest import eventually

ROOT = Path(__file__).resolve().parents[1]
LEASE = 1.0  # seconds: what a lease that must still hold gets (see the module docstring)
SHORT = 0.2  # seconds: a lease that is only waited out


async def lease_ran_out(q: RedisQueue, *job_ids: int) -> bool:
    """Whether the leases of these claimed jobs are past, judged as the queue's scripts judge them:
    their deadline in the `running` index against Redis server time."""
    seconds, micros = await q.redis.time()
    now = seconds + micros / 1_000_000
    deadlines = [await q.redis.zscore(f"{q.prefix}running", job_id) for job_id in job_ids]
    return all(d is not None and d <= now for d in deadlines)


async def wait_out(q: RedisQueue, *job_ids: int) -> None:
    await eventually(lambda: lease_ran_out(q, *job_ids), what=f"the leases of jobs {job_ids} to run out")


def _wait_for_ping(url: str, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                if client.ping():
                    if client.info("server")["process_id"] != proc.pid:
                        raise RuntimeError(f"another redis-server answers on {url}")
                    return
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not answer PING (exit code {proc.poll()})") from None
                time.sleep(0.05)
    finally:
        client.close()


def stored_keys(redis_url: str, prefix: str) -> list[str]:
    """The keys under `prefix`, without it."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return sorted(k.removeprefix(prefix) for k in client.scan_iter(match=f"{prefix}*"))
    finally:
        client.close()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed; CI must install it (.ci/apt.sh, from .ci/run)")
        pytest.skip("redis-server is not installed (apt-get install redis-server, or set REDIS_URL)")
    workdir = tmp_path_factory.mktemp("redis")

    def start(port: int) -> subprocess.Popen:
        return subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                                 "no", "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                cwd=workdir)

    with spawned(start, lambda port, proc: _wait_for_ping(f"redis://127.0.0.1:{port}/0", proc)) as port:
        yield f"redis://127.0.0.1:{port}/0"


@pytest.fixture
def prefix(redis_url):
    """A fresh key namespace per test; its keys are deleted afterwards."""
    value = f"test-{uuid.uuid4().hex[:12]}:"
    yield value
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{value}*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
async def instances(redis_url, prefix):
    """Opens RedisQueues on the test's namespace, each a separate client like a separate replica."""
    opened: list[RedisQueue] = []

    async def _open(**kwargs) -> RedisQueue:
        q = RedisQueue(redis_url, prefix=prefix, **kwargs)
        await q.open()
        opened.append(q)
        return q

    yield _open
    for q in opened:
        await q.close()


@pytest.fixture
async def queue(instances):
    return await instances()


@pytest.fixture
def reopen(instances):
    return instances


class TestRedisQueue(QueueContract):
    pass


async def test_keys_live_under_the_prefix(queue, redis_url, prefix):
    await queue.add_delivery(Delivery("x-1", "pull_request", "{}"))
    await queue.enqueue(job())
    await queue.claim()
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        keys = [k for k in client.scan_iter(match="*") if "test-" in k or k.startswith(DEFAULT_PREFIX)]
        mine = [k for k in keys if k.startswith(prefix)]
        assert len(mine) >= 5 and not [k for k in keys if k.startswith(DEFAULT_PREFIX)]
    finally:
        client.close()


async def test_open_queue_reads_redis_urls_and_prefix(redis_url, prefix):
    q = open_queue(f"{redis_url}?prefix={prefix}")
    assert isinstance(q, RedisQueue) and q.prefix == prefix and "prefix" not in q.url
    assert open_queue("redis://:hunter2@cache.internal:6379/0").prefix == DEFAULT_PREFIX
    assert open_queue(f"{redis_url}?lease=2.5&prefix=x:").lease == 2.5
    for bad in ("0", "soon", "7200"):
        with pytest.raises(ValueError, match=f"lease={bad} must be a number of seconds from 1 to 3600"):
            open_queue(f"{redis_url}?lease={bad}")
    assert "hunter2" not in repr(open_queue("rediss://:hunter2@cache.internal:6380/1"))
    await q.open()
    stored = await q.enqueue(job())
    await q.close()
    direct = RedisQueue(redis_url, prefix=prefix)
    await direct.open()
    assert [j.id for j in await direct.jobs()] == [stored.id]
    await direct.close()


async def test_two_replicas_claiming_concurrently_never_share_a_job(instances):
    replicas = [await instances() for _ in range(4)]
    stored = [await replicas[0].enqueue(job(f"{n:040x}", pr=n)) for n in range(40)]

    async def drain(q: RedisQueue) -> list[int]:
        claimed = []
        while (j := await q.claim()) is not None:
            claimed.append(j.id)
            await asyncio.sleep(0)
        return claimed

    results = await asyncio.gather(*(drain(q) for q in replicas))
    everything = [i for ids in results for i in ids]
    assert sorted(everything) == [j.id for j in stored]
    assert sum(1 for ids in results if ids) > 1, "the replicas should have interleaved"


async def test_separate_processes_never_run_the_same_job(redis_url, prefix, queue):
    """Real OS processes, each with its own client, race to claim and finish 60 jobs."""
    stored = [await queue.enqueue(job(f"{n:040x}", pr=n, delivery=f"d{n}")) for n in range(60)]
    script = (
        "import asyncio, json, sys\n"
        "from bot.queue.redis import RedisQueue\n"
        "from bot.queue import JobState\n"
        "async def main():\n"
        "    q = RedisQueue(sys.argv[1], prefix=sys.argv[2])\n"
        "    await q.open()\n"
        "    ran, idle = [], 0\n"
        "    while idle < 20:\n"
        "        j = await q.claim()\n"
        "        if j is None:\n"
        "            idle += 1\n"
        "            await asyncio.sleep(0.02)\n"
        "            continue\n"
        "        idle = 0\n"
        "        ran.append(j.id)\n"
        "        assert await q.finish(j.id, JobState.DONE)\n"
        "    await q.close()\n"
        "    print(json.dumps(ran))\n"
        "asyncio.run(main())\n")
    procs = [await asyncio.create_subprocess_exec(sys.executable, "-c", script, redis_url, prefix, cwd=ROOT,
                                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(3)]
    outputs = [await p.communicate() for p in procs]
    assert all(p.returncode == 0 for p in procs), [err.decode()[-2000:] for _, err in outputs]
    ran = [i for out, _ in outputs for i in json.loads(out)]
    assert sorted(ran) == [j.id for j in stored]
    assert (await queue.counts())["done"] == 60


async def test_one_running_job_per_pr_across_replicas(instances):
    a, b = await instances(), await instances()
    await a.enqueue(job("a" * 40))
    assert (await a.claim()).delivery_id == "d1"
    recheck = await b.enqueue(job("a" * 40, delivery="recheck"))
    assert await b.claim() is None
    assert await b.state(recheck.id) is JobState.QUEUED


async def test_dead_workers_job_is_claimable_after_its_lease(instances):
    dead = await instances(lease=LEASE, renew=False)
    alive = await instances(lease=LEASE)
    stored = await dead.enqueue(job())
    assert (await dead.claim()).id == stored.id
    assert await alive.claim() is None
    assert await alive.recover() == 0, "a live lease belongs to a running replica"
    resumed = await eventually(alive.claim, what="the dead worker's lease to run out")
    assert (resumed.id, resumed.attempt, resumed.state) == (stored.id, 2, JobState.RUNNING)
    assert not await dead.finish(stored.id, JobState.DONE), "the stale claim must not record an outcome"
    assert await alive.state(stored.id) is JobState.RUNNING
    assert await alive.finish(stored.id, JobState.DONE)


async def test_recover_requeues_only_expired_leases(instances):
    dead = await instances(lease=SHORT, renew=False)
    stored = await dead.enqueue(job())
    await dead.claim()
    await wait_out(dead, stored.id)
    restarted = await instances()
    assert await restarted.recover() == 1
    assert [(j.state, j.attempt) for j in await restarted.jobs()] == [(JobState.QUEUED, 2)]
    assert (await restarted.claim()).id == stored.id


async def test_a_live_worker_keeps_renewing_its_lease(instances):
    worker = await instances(lease=LEASE)
    other = await instances(lease=LEASE)
    stored = await worker.enqueue(job())
    await worker.claim()
    first_deadline = await worker.redis.zscore(f"{worker.prefix}running", stored.id)

    async def past_first_deadline() -> bool:
        seconds, micros = await worker.redis.time()
        return seconds + micros / 1_000_000 > first_deadline + LEASE / 2

    await eventually(past_first_deadline, what="the first lease to be long past")
    assert await worker.redis.zscore(f"{worker.prefix}running", stored.id) > first_deadline, "renewed"
    assert await other.claim() is None
    assert await other.recover() == 0
    assert await worker.finish(stored.id, JobState.DONE)


async def test_superseded_running_job_is_not_renewed_or_finished(instances):
    worker = await instances(lease=SHORT)
    first = await worker.enqueue(job("a" * 40))
    await worker.claim()
    newer = await (await instances()).enqueue(job("b" * 40, delivery="d2"))
    assert await worker.state(first.id) is JobState.SUPERSEDED
    # The renewal task runs every SHORT / 3 s; once it has seen the job is no longer its own, it
    # drops it from the jobs it holds.
    await eventually(lambda: first.id not in worker._held_jobs, what="a renewal to give the job up")
    assert await worker.state(first.id) is JobState.SUPERSEDED, "renewal did not bring it back"
    assert not await worker.finish(first.id, JobState.DONE)
    assert (await worker.claim()).id == newer.id


async def test_a_delivery_is_handled_by_one_replica_at_a_time(instances):
    a = await instances(lease=LEASE, renew=False)
    b = await instances(lease=LEASE)
    await a.add_delivery(Delivery("x-1", "pull_request", "{}"))
    await a.add_delivery(Delivery("x-2", "pull_request", "{}"))
    assert not await b.add_delivery(Delivery("x-1", "pull_request", "{}"))
    assert (await a.next_delivery()).delivery_id == "x-1"
    assert await b.next_delivery() is None, "x-2 must wait: deliveries are handled in order"
    redone = await eventually(b.next_delivery, what="a's delivery lease to run out")
    assert redone.delivery_id == "x-1", "a's lease ran out, so b redoes x-1"
    await b.finish_delivery("x-1")
    assert (await a.next_delivery()).delivery_id == "x-2"


async def test_closing_releases_held_deliveries(instances):
    a, b = await instances(), await instances()
    await a.add_delivery(Delivery("x-1", "pull_request", "{}"))
    await a.next_delivery()
    assert await b.next_delivery() is None
    await a.close()
    assert (await b.next_delivery()).delivery_id == "x-1"


async def test_finish_delivery_drops_the_payload(queue, redis_url, prefix):
    await queue.add_delivery(Delivery("x-1", "pull_request", '{"big": "payload"}'))
    await queue.finish_delivery("x-1", "ValueError: bad")
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        stored = client.hgetall(f"{prefix}delivery:x-1")
    finally:
        client.close()
    assert "payload" not in stored and stored["error"] == "ValueError: bad" and "finished_at" in stored


async def test_finish_needs_a_final_state(queue):
    stored = await queue.enqueue(job())
    await queue.claim()
    with pytest.raises(ValueError):
        await queue.finish(stored.id, JobState.QUEUED)
    assert await queue.state(stored.id) is JobState.RUNNING


async def test_a_closed_queue_refuses_work(redis_url, prefix):
    q = RedisQueue(redis_url, prefix=prefix)
    with pytest.raises(RuntimeError):
        await q.claim()
    await q.open()
    await q.close()
    await q.close()
    with pytest.raises(RuntimeError):
        await q.enqueue(job())


async def test_cancel_pr_reaches_a_job_running_elsewhere(instances):
    worker, server = await instances(), await instances()
    stored = await server.enqueue(job())
    await worker.claim()
    assert await server.cancel_pr(REPO, 2) == 1
    assert await worker.state(stored.id) is JobState.CANCELLED
    assert not await worker.finish(stored.id, JobState.CANCELLED)


async def test_an_expired_lease_requeues_all_its_owners_jobs_charging_only_a_lone_one(instances):
    """A replica renews its leases together, so one that ran out means the replica died: all its jobs
    were running when it died (none charged), while a replica that ran one job is charged for it."""
    crowded = await instances(lease=2 * LEASE, renew=False)
    alone = await instances(lease=2 * LEASE, renew=False)
    first = await crowded.enqueue(job("a" * 40, pr=1))
    later = await crowded.enqueue(job("b" * 40, pr=2))
    lone = await crowded.enqueue(job("c" * 40, pr=3))
    assert (await crowded.claim()).id == first.id
    assert (await alone.claim()).id == later.id
    await asyncio.sleep(LEASE / 2)  # lone's lease then runs out that much after first's
    assert (await crowded.claim()).id == lone.id  # its lease outlives first's
    await wait_out(crowded, first.id, later.id)
    survivor = await instances()
    assert await survivor.recover() == 3
    assert {j.id: (j.state, j.attempt) for j in await survivor.jobs()} == {
        first.id: (JobState.QUEUED, 1), lone.id: (JobState.QUEUED, 1), later.id: (JobState.QUEUED, 2)}


async def test_a_crash_suspect_runs_alone_in_its_replica_while_other_replicas_work(instances):
    dead = await instances(lease=SHORT, renew=False)
    first = await dead.enqueue(job("a" * 40, pr=1))
    second = await dead.enqueue(job("b" * 40, pr=2))
    await dead.claim()
    await dead.claim()
    await wait_out(dead, first.id, second.id)
    a, b, c = await instances(), await instances(), await instances()
    assert await a.recover() == 2
    fresh = await a.enqueue(job("c" * 40, pr=3))
    assert (await a.claim()).id == first.id
    assert await a.claim() is None
    assert (await b.claim()).id == second.id, "an idle replica takes the next suspect"
    assert (await c.claim()).id == fresh.id, "no suspect waits: other replicas work as usual"


async def test_prune_leaves_no_index_entries_behind(queue, redis_url, prefix):
    await queue.add_delivery(Delivery("x-1", "pull_request", "{}"))
    await queue.finish_delivery("x-1")
    for n in range(3):
        stored = await queue.enqueue(job(f"{n:040x}", pr=n))
        await queue.claim()
        await queue.finish(stored.id, JobState.DONE)
    assert await queue.prune(retention=0) == 4
    assert stored_keys(redis_url, prefix) == ["counts", "delivery:seq", "job:seq", "schema:retention"]


async def test_finished_work_stored_before_retention_is_indexed_once_and_pruned(instances, redis_url, prefix):
    """A store written by the release before retention lacks the finish-time indexes (simulated here by
    deleting them): opening it indexes its finished work, so pruning reaches that too."""
    old = await instances()
    await old.add_delivery(Delivery("x-1", "pull_request", "{}"))
    await old.finish_delivery("x-1")
    await old.add_delivery(Delivery("x-2", "pull_request", "{}"))
    done = await old.enqueue(job("a" * 40, pr=1))
    await old.claim()
    await old.finish(done.id, JobState.DONE)
    live = await old.enqueue(job("b" * 40, pr=2))
    await old.close()
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        client.delete(f"{prefix}jobs:finished", f"{prefix}deliveries:finished", f"{prefix}schema:retention")
    finally:
        client.close()
    upgraded = await instances()
    assert await upgraded.prune(retention=0) == 2
    assert [j.id for j in await upgraded.jobs()] == [live.id]
    assert not await upgraded.add_delivery(Delivery("x-2", "pull_request", "{}")), "unhandled: kept"
    assert await upgraded.add_delivery(Delivery("x-1", "pull_request", "{}"))


async def test_a_redis_that_stops_answering_raises_instead_of_hanging(monkeypatch):
    """A server that accepts the connection and never replies (a hung Redis, or a connection a cancelled
    command left half-read): every command is bounded, so opening the queue fails, and closing never hangs."""
    import bot.queue.redis as redis_queue

    monkeypatch.setattr(redis_queue, "COMMAND_TIMEOUT", 0.5)
    accepted: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    q = RedisQueue(f"redis://127.0.0.1:{port}/0", prefix="silent:")
    started = time.monotonic()
    try:
        with pytest.raises((TimeoutError, redis.exceptions.TimeoutError)):
            await q.open()
        await asyncio.wait_for(q.close(), 5)
    finally:
        for w in accepted:
            w.close()
        server.close()
    assert accepted and time.monotonic() - started < 5


async def test_closing_stops_the_renewer_even_when_a_cancelled_command_raises_an_error(instances):
    """redis-py may turn a cancellation that arrives mid-command into a connection error: the renewal
    loop must stop all the same, or close() waits for it forever."""
    q = await instances(lease=0.3)
    renewing = asyncio.Event()

    async def renew_turning_cancellation_into_an_error(lease=None):
        if lease == 0:  # close() releasing the leases: answers at once
            return
        renewing.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            raise ConnectionError("Connection closed by server.") from None

    q._renew = renew_turning_cancellation_into_an_error
    await asyncio.wait_for(renewing.wait(), 5)
    await asyncio.wait_for(q.close(), 5)


async def test_only_the_claiming_replica_can_retry_release_or_give_up_a_job(instances):
    worker, other = await instances(), await instances()
    stored = await worker.enqueue(job())
    await worker.claim()
    assert not await other.release(stored.id)
    assert not await other.retry(stored.id, "RuntimeError: boom", 0)
    assert not await other.dead_letter(stored.id, "RuntimeError: boom")
    assert await worker.state(stored.id) is JobState.RUNNING
    assert await worker.release(stored.id) and stored.id not in worker._held_jobs


async def test_retries_and_dead_letters_leave_no_index_entries_behind(queue, redis_url, prefix):
    retried, given_up = [await queue.enqueue(job(f"{n:040x}", pr=n)) for n in (1, 2)]
    await queue.claim()
    await queue.claim()
    assert await queue.retry(retried.id, "RuntimeError: boom", delay=3600)
    assert await queue.dead_letter(given_up.id, "RuntimeError: boom")
    assert await queue.cancel_pr(REPO, 1) == 1, "a PR closed while its job waits to retry"
    assert await queue.prune(retention=0) == 2
    assert stored_keys(redis_url, prefix) == ["counts", "job:seq", "schema:retention"]


async def test_jobs_stored_before_retries_read_as_never_failed_or_claimed(queue, redis_url, prefix):
    stored = await queue.enqueue(job())
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        client.hdel(f"{prefix}job:{stored.id}", "failures", "claims", "ready_at")
    finally:
        client.close()
    [old] = await queue.jobs()
    assert (old.failures, old.claims) == (0, 0)
    assert (await queue.stats()).oldest_age is not None, "waiting since it was created"
    assert (await queue.claim()).claims == 1
