"""The shared queue: Redis, for several replicas (processes) working off one store.

Every operation that reads and then writes is one Lua script, so it is atomic across processes.
Several processes differ from one SQLite process in two ways, and both are handled with leases:

- A claimed job carries its claimer's token and a lease deadline (Redis server time, so replica
  clocks do not matter). A background task renews the leases of the jobs this instance holds
  together, so one lease running out means its owner died: `claim()` and `recover()` then requeue
  every running job of that owner at once, as crash suspects, charging an attempt only when it
  held just one (see "Crash accounting" in base.py; "this process" is the claiming owner).
  `recover()` therefore only requeues dead owners' work: at start-up, other replicas' running
  jobs are alive. `close()` gives up this instance's leases at once, so a restart resumes them
  immediately.
- Deliveries are handled strictly oldest first by one process at a time: `next_delivery()` leases
  the oldest unfinished delivery to its caller and returns None to others while that lease lives.
  Handling them in parallel could let an older push's job supersede a newer one's.

Finished jobs and deliveries are indexed by finish time (`jobs:finished`, `deliveries:finished`), so
`prune()` finds what is past retention without scanning, and `recent()` reads the newest first. A job
in its retry delay is queued but kept out of the `queued` index, in `delayed` (scored by when it is
ready), until a claim finds it due; dead letters are indexed by when they were given up (`dead`).

Keys all start with `prefix`. Scripts build key names at run time, so this needs a standalone
Redis (or a primary with replicas); for Redis Cluster put a hash tag in the prefix, e.g.
`{infra-review}:`, so every key lands in one slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import replace
from typing import Any, cast

import redis.asyncio as aioredis

from .base import (
    LIVE_STATES,
    RECORD_FIELDS,
    DeadLetter,
    Delivery,
    Job,
    JobRecord,
    JobState,
    Queue,
    QueueStats,
)

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "infra-review:"
DEFAULT_LEASE = 30.0
PRUNE_BATCH = 500
COMMAND_TIMEOUT = 10.0  # seconds any one Redis command (or connecting) may take
JOB_FIELDS = ("id", "installation_id", "repo", "pr_number", "head_sha", "reason", "delivery_id", "attempt",
              "state", "failures", "claims")

# Shared helpers prepended to every script. ARGV[1] is always the key prefix.
LIB = """
local P = ARGV[1]
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function jkey(id) return P .. 'job:' .. id end
local function prkey(repo, pr) return P .. 'pr:' .. repo .. '#' .. pr end
local LIVE = {queued = true, running = true}
-- The one place a job changes state: keeps the queued/running/suspect/finished indexes, live set and
-- counts in step.
local function move(id, from, to, deadline)
  local jk = jkey(id)
  redis.call('HSET', jk, 'state', to)
  redis.call('HINCRBY', P .. 'counts', from, -1)
  redis.call('HINCRBY', P .. 'counts', to, 1)
  if from == 'queued' then
    redis.call('ZREM', P .. 'queued', id)
    redis.call('ZREM', P .. 'delayed', id)
    redis.call('ZREM', P .. 'suspects', id)
  end
  if from == 'running' then
    redis.call('ZREM', P .. 'running', id)
    redis.call('HDEL', jk, 'owner')
  end
  if to == 'queued' then redis.call('ZADD', P .. 'queued', id, id) end
  if to == 'running' then redis.call('ZADD', P .. 'running', deadline, id) end
  if not LIVE[to] then
    local f = redis.call('HMGET', jk, 'repo', 'pr_number')
    redis.call('SREM', prkey(f[1], f[2]) .. ':live', id)
    local t = now()
    redis.call('HSET', jk, 'finished_at', t)
    redis.call('ZADD', P .. 'jobs:finished', t, id)
  end
end
-- Running jobs by owner, for the owners in `wanted` (every owner when nil).
local function held(wanted)
  local by = {}
  for _, id in ipairs(redis.call('ZRANGE', P .. 'running', 0, -1)) do
    local owner = redis.call('HGET', jkey(id), 'owner') or ''
    if wanted == nil or wanted[owner] then
      by[owner] = by[owner] or {}
      table.insert(by[owner], id)
    end
  end
  return by
end
-- An owner with an expired lease is dead: all its running jobs go back to the queue as suspects,
-- and the attempt is charged only to a job that ran alone there.
local function reap(t)
  local dead = {}
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'running', '-inf', t)) do
    dead[redis.call('HGET', jkey(id), 'owner') or ''] = true
  end
  local n = 0
  for _, ids in pairs(held(dead)) do
    for _, id in ipairs(ids) do
      move(id, 'running', 'queued')
      if #ids == 1 then redis.call('HINCRBY', jkey(id), 'attempt', 1) end
      redis.call('HSET', jkey(id), 'suspect', 1, 'ready_at', t)
      redis.call('HDEL', jkey(id), 'started_at')
      redis.call('ZADD', P .. 'suspects', id, id)
      n = n + 1
    end
  end
  return n
end
local function job_row(id)
  return redis.call('HMGET', jkey(id), 'id', 'installation_id', 'repo', 'pr_number', 'head_sha', 'reason',
                    'delivery_id', 'attempt', 'state', 'failures', 'claims')
end
-- Whether `owner` holds job `id` running: only then may it end or hand back the job.
local function holds(id, owner)
  local f = redis.call('HMGET', jkey(id), 'state', 'owner')
  return f[1] == 'running' and f[2] == owner
end
"""

ADD_DELIVERY = LIB + """
local dk = P .. 'delivery:' .. ARGV[2]
if redis.call('EXISTS', dk) == 1 then return 0 end
local seq = redis.call('INCR', P .. 'delivery:seq')
redis.call('HSET', dk, 'event', ARGV[3], 'payload', ARGV[4], 'received_at', now(), 'seq', seq)
redis.call('ZADD', P .. 'deliveries:pending', seq, ARGV[2])
return 1
"""

# ARGV: prefix, owner, lease seconds
NEXT_DELIVERY = LIB + """
local head = redis.call('ZRANGE', P .. 'deliveries:pending', 0, 0)[1]
if not head then return nil end
local dk = P .. 'delivery:' .. head
local t = now()
local owner = redis.call('HGET', dk, 'owner')
local deadline = tonumber(redis.call('ZSCORE', P .. 'deliveries:leases', head) or '0')
if owner and owner ~= ARGV[2] and deadline > t then return nil end
redis.call('HSET', dk, 'owner', ARGV[2])
redis.call('ZADD', P .. 'deliveries:leases', t + tonumber(ARGV[3]), head)
local f = redis.call('HMGET', dk, 'event', 'payload')
return {head, f[1], f[2]}
"""

# ARGV: prefix, delivery id, error ('' for none). The payload is dropped: nothing reads it again.
FINISH_DELIVERY = LIB + """
local dk = P .. 'delivery:' .. ARGV[2]
if redis.call('EXISTS', dk) == 0 then return 0 end
redis.call('HSET', dk, 'finished_at', now())
if ARGV[3] ~= '' then redis.call('HSET', dk, 'error', ARGV[3]) else redis.call('HDEL', dk, 'error') end
redis.call('HDEL', dk, 'owner', 'payload')
redis.call('ZREM', P .. 'deliveries:pending', ARGV[2])
redis.call('ZREM', P .. 'deliveries:leases', ARGV[2])
redis.call('ZADD', P .. 'deliveries:finished', now(), ARGV[2])
return 1
"""

# ARGV: prefix, installation_id, repo, pr_number, head_sha, reason, delivery_id, attempt, failures
ENQUEUE = LIB + """
local repo, pr, sha = ARGV[3], ARGV[4], ARGV[5]
local pk = prkey(repo, pr)
local t = now()
local live = redis.call('SMEMBERS', pk .. ':live')
for _, id in ipairs(live) do
  local f = redis.call('HMGET', jkey(id), 'state', 'head_sha', 'delivery_id')
  if LIVE[f[1]] and f[2] == sha and f[3] == ARGV[7] then
    return {tonumber(id), f[1]}
  end
end
for _, id in ipairs(live) do
  local f = redis.call('HMGET', jkey(id), 'state', 'head_sha')
  if f[1] == 'queued' then
    move(id, 'queued', 'superseded')
  elseif f[1] == 'running' and f[2] ~= sha then
    move(id, 'running', 'superseded')
  end
end
local id = redis.call('INCR', P .. 'job:seq')
redis.call('HSET', jkey(id), 'id', id, 'installation_id', ARGV[2], 'repo', repo, 'pr_number', pr,
           'head_sha', sha, 'reason', ARGV[6], 'delivery_id', ARGV[7], 'attempt', ARGV[8], 'state', 'queued',
           'created_at', t, 'ready_at', t, 'failures', ARGV[9], 'claims', 0)
redis.call('HINCRBY', P .. 'counts', 'queued', 1)
redis.call('ZADD', P .. 'queued', id, id)
redis.call('SADD', pk .. ':live', id)
redis.call('ZADD', P .. 'jobs', id, id)
redis.call('ZADD', P .. 'repo:' .. repo, id, id)
redis.call('ZADD', pk .. ':all', id, id)
return {id, 'queued'}
"""

# ARGV: prefix, repo, pr_number
CANCEL_PR = LIB + """
local n = 0
for _, id in ipairs(redis.call('SMEMBERS', prkey(ARGV[2], ARGV[3]) .. ':live')) do
  local st = redis.call('HGET', jkey(id), 'state')
  if LIVE[st] then
    move(id, st, 'cancelled')
    n = n + 1
  end
end
return n
"""

# ARGV: prefix, owner, lease seconds
CLAIM = LIB + """
local t = now()
reap(t)
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'delayed', '-inf', t)) do
  redis.call('ZREM', P .. 'delayed', id)
  redis.call('ZADD', P .. 'queued', id, id)
end
local blocked = {}
local function pr_busy(id)
  local f = redis.call('HMGET', jkey(id), 'repo', 'pr_number')
  local pk = prkey(f[1], f[2])
  if blocked[pk] == nil then
    blocked[pk] = false
    for _, other in ipairs(redis.call('SMEMBERS', pk .. ':live')) do
      if redis.call('HGET', jkey(other), 'state') == 'running' then blocked[pk] = true end
    end
  end
  return blocked[pk]
end
local function start(id)
  move(id, 'queued', 'running', t + tonumber(ARGV[3]))
  redis.call('HSET', jkey(id), 'owner', ARGV[2], 'started_at', t)
  redis.call('HINCRBY', jkey(id), 'claims', 1)
  return job_row(id)
end
local mine = held({[ARGV[2]] = true})[ARGV[2]] or {}
for _, id in ipairs(mine) do
  if redis.call('HGET', jkey(id), 'suspect') == '1' then return nil end
end
local suspect = redis.call('ZRANGE', P .. 'suspects', 0, 0)[1]
if suspect then
  if #mine > 0 or pr_busy(suspect) then return nil end
  return start(suspect)
end
for _, id in ipairs(redis.call('ZRANGE', P .. 'queued', 0, -1)) do
  if not pr_busy(id) then return start(id) end
end
return nil
"""

# ARGV: prefix, owner, job id, final state, error ('' for none)
FINISH = LIB + """
local jk = jkey(ARGV[3])
if not holds(ARGV[3], ARGV[2]) then return 0 end
move(ARGV[3], 'running', ARGV[4])
if ARGV[5] ~= '' then redis.call('HSET', jk, 'error', ARGV[5]) else redis.call('HDEL', jk, 'error') end
return 1
"""

# ARGV: prefix, owner, job id, error, delay seconds
RETRY = LIB + """
local id, jk = ARGV[3], jkey(ARGV[3])
if not holds(id, ARGV[2]) then return 0 end
move(id, 'running', 'queued')
local ready = now() + tonumber(ARGV[5])
redis.call('ZREM', P .. 'queued', id)
redis.call('ZADD', P .. 'delayed', ready, id)
redis.call('HINCRBY', jk, 'failures', 1)
redis.call('HSET', jk, 'error', ARGV[4], 'ready_at', ready, 'suspect', 0)
redis.call('HDEL', jk, 'started_at')
return 1
"""

# ARGV: prefix, owner, job id
RELEASE = LIB + """
local id, jk = ARGV[3], jkey(ARGV[3])
if not holds(id, ARGV[2]) then return 0 end
move(id, 'running', 'queued')
redis.call('HSET', jk, 'ready_at', now())
redis.call('HDEL', jk, 'started_at')
if redis.call('HGET', jk, 'suspect') == '1' then redis.call('ZADD', P .. 'suspects', id, id) end
return 1
"""

# ARGV: prefix, owner, job id, error
DEAD_LETTER = LIB + """
local id, jk = ARGV[3], jkey(ARGV[3])
if not holds(id, ARGV[2]) then return 0 end
move(id, 'running', 'failed')
local t = redis.call('HGET', jk, 'finished_at')
redis.call('HINCRBY', jk, 'failures', 1)
redis.call('HSET', jk, 'error', ARGV[4], 'dead_at', t)
redis.call('ZADD', P .. 'dead', t, id)
return 1
"""

# ARGV: prefix, job id, summary (JSON)
RECORD_RESULT = LIB + """
if redis.call('EXISTS', jkey(ARGV[2])) == 0 then return 0 end
redis.call('HSET', jkey(ARGV[2]), 'summary', ARGV[3])
return 1
"""

# Returns queued, running, seconds the longest-waiting ready job has waited ('' for none), dead letters,
# pending deliveries. Due jobs still in `delayed` (no claim has run since) are waiting too.
STATS = LIB + """
local t = now()
local since = nil
local function saw(ready) if ready and (since == nil or ready < since) then since = ready end end
for _, id in ipairs(redis.call('ZRANGE', P .. 'queued', 0, -1)) do
  local f = redis.call('HMGET', jkey(id), 'ready_at', 'created_at')
  saw(tonumber(f[1] or f[2]))
end
saw(tonumber(redis.call('ZRANGEBYSCORE', P .. 'delayed', '-inf', t, 'WITHSCORES', 'LIMIT', 0, 1)[2]))
local c = redis.call('HMGET', P .. 'counts', 'queued', 'running')
return {c[1] or '0', c[2] or '0', since and tostring(t - since) or '', redis.call('ZCARD', P .. 'dead'),
        redis.call('ZCARD', P .. 'deliveries:pending')}
"""

RECOVER = LIB + """
return reap(now())
"""

# Stores written before retention hold finished work outside the finish-time indexes: index it, once.
BACKFILL = LIB + """
if not redis.call('SET', P .. 'schema:retention', '1', 'NX') then return 0 end
local n = 0
for _, id in ipairs(redis.call('ZRANGE', P .. 'jobs', 0, -1)) do
  local f = redis.call('HMGET', jkey(id), 'state', 'finished_at', 'created_at')
  if f[1] and not LIVE[f[1]] then
    redis.call('ZADD', P .. 'jobs:finished', tonumber(f[2] or f[3]), id)
    n = n + 1
  end
end
local cursor = '0'
repeat
  local page = redis.call('SCAN', cursor, 'MATCH', P .. 'delivery:*', 'COUNT', 1000)
  cursor = page[1]
  for _, key in ipairs(page[2]) do
    local t = key ~= P .. 'delivery:seq' and redis.call('HGET', key, 'finished_at')
    if t then
      redis.call('ZADD', P .. 'deliveries:finished', tonumber(t), string.sub(key, #P + 10))
      n = n + 1
    end
  end
until cursor == '0'
return n
"""

# ARGV: prefix, retention seconds, batch size. Returns how many jobs and deliveries were deleted.
PRUNE = LIB + """
local cutoff = now() - tonumber(ARGV[2])
local batch = tonumber(ARGV[3])
local n = 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'jobs:finished', '-inf', cutoff, 'LIMIT', 0, batch)) do
  local f = redis.call('HMGET', jkey(id), 'repo', 'pr_number', 'state')
  redis.call('ZREM', P .. 'jobs:finished', id)
  if f[1] then
    redis.call('DEL', jkey(id))
    redis.call('ZREM', P .. 'jobs', id)
    redis.call('ZREM', P .. 'repo:' .. f[1], id)
    redis.call('ZREM', P .. 'dead', id)
    redis.call('ZREM', prkey(f[1], f[2]) .. ':all', id)
    redis.call('HINCRBY', P .. 'counts', f[3], -1)
    n = n + 1
  end
end
for _, d in ipairs(redis.call('ZRANGEBYSCORE', P .. 'deliveries:finished', '-inf', cutoff, 'LIMIT', 0, batch)) do
  redis.call('ZREM', P .. 'deliveries:finished', d)
  redis.call('DEL', P .. 'delivery:' .. d)
  n = n + 1
end
return n
"""

# ARGV: prefix, owner, lease seconds (0 gives the leases up), delivery id or '', job ids...
# Returns the job ids this owner no longer holds.
RENEW = LIB + """
local t = now()
local deadline = t + tonumber(ARGV[3])
local lost = {}
for i = 5, #ARGV do
  local f = redis.call('HMGET', jkey(ARGV[i]), 'state', 'owner')
  if f[1] == 'running' and f[2] == ARGV[2] then
    redis.call('ZADD', P .. 'running', deadline, ARGV[i])
  else
    table.insert(lost, ARGV[i])
  end
end
if ARGV[4] ~= '' then
  local dk = P .. 'delivery:' .. ARGV[4]
  if redis.call('HGET', dk, 'owner') == ARGV[2] then
    redis.call('ZADD', P .. 'deliveries:leases', deadline, ARGV[4])
  end
end
return lost
"""


def _job(row: list[Any]) -> Job:
    """Counters a store from an older release does not hold read as 0."""
    id_, inst, repo, pr, sha, reason, delivery, attempt, state, failures, claims = row
    return Job(installation_id=int(inst), repo=repo, pr_number=int(pr), head_sha=sha, reason=reason,
               delivery_id=delivery, attempt=int(attempt), id=int(id_), state=JobState(state),
               failures=int(failures or 0), claims=int(claims or 0))





class RedisQueue(Queue):
    """`lease` is how long a claimed job or delivery stays held without renewal; renewal runs every
    lease / 3 unless `renew` is False (tests use that to play a process that died)."""

    def __init__(self, url: str, *, prefix: str = DEFAULT_PREFIX, lease: float = DEFAULT_LEASE,
                 renew: bool = True) -> None:
        if lease <= 0:
            raise ValueError("lease must be positive")
        self.url = url
        self.prefix = prefix
        self.lease = lease
        self.renew = renew
        self.owner = ""
        self._redis: aioredis.Redis | None = None
        self._scripts: dict[str, Any] = {}
        self._held_jobs: set[int] = set()
        self._held_delivery: str | None = None
        self._renewer: asyncio.Task | None = None

    def __repr__(self) -> str:
        return f"RedisQueue(prefix={self.prefix!r}, lease={self.lease})"

    async def open(self) -> None:
        if self._redis is not None:
            return
        # Every command is bounded: a Redis that stops answering (or a connection a cancelled command left
        # half-read) raises a TimeoutError instead of holding the service, or its shutdown, forever.
        client = aioredis.Redis.from_url(self.url, decode_responses=True, socket_timeout=COMMAND_TIMEOUT,
                                         socket_connect_timeout=COMMAND_TIMEOUT)
        self._scripts = {name: client.register_script(src) for name, src in SCRIPTS.items()}
        self._redis = client
        self.owner = uuid.uuid4().hex
        await self._run("backfill")
        if self.renew:
            self._renewer = asyncio.create_task(self._renew_forever(), name="redis-queue-lease-renewal")

    async def close(self) -> None:
        if self._redis is None:
            return
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
                await asyncio.wait_for(self._renewer, COMMAND_TIMEOUT)
            self._renewer = None
        try:
            await asyncio.wait_for(self._renew(lease=0), COMMAND_TIMEOUT)
        except Exception:
            log.warning("redis queue: could not release leases on close; they expire on their own",
                        exc_info=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._redis.aclose(), COMMAND_TIMEOUT)
        self._redis = None
        self._held_jobs.clear()
        self._held_delivery = None

    @property
    def redis(self) -> aioredis.Redis:
        if self._redis is None:
            raise RuntimeError("queue is not open")
        return self._redis

    async def _run(self, script: str, *args: Any) -> Any:
        if self._redis is None:
            raise RuntimeError("queue is not open")
        return await self._scripts[script](args=[self.prefix, *args])

    async def _renew(self, lease: float | None = None) -> None:
        held = sorted(self._held_jobs)
        lost = await self._run("renew", self.owner, self.lease if lease is None else lease,
                               self._held_delivery or "", *held)
        self._held_jobs.difference_update(int(i) for i in lost)

    async def _renew_forever(self) -> None:
        """Renew the leases until the queue closes. A cancellation that arrives during a command can
        reach us as a connection error (redis-py turns it into one); the loop then stops all the same,
        rather than retry forever and hold `close()` with it."""
        task = asyncio.current_task()
        while self._redis is not None and not (task and task.cancelling()):
            await asyncio.sleep(self.lease / 3)
            try:
                await self._renew()
            except Exception:
                if task and task.cancelling():
                    raise asyncio.CancelledError from None
                log.warning("redis queue: lease renewal failed; retrying", exc_info=True)

    async def ping(self) -> None:
        key = f"{self.prefix}ping"
        await self.redis.set(key, self.owner, ex=60)
        if await self.redis.get(key) != self.owner:
            raise RuntimeError("redis queue: a value just written could not be read back")

    async def add_delivery(self, delivery: Delivery) -> bool:
        return await self._run("add_delivery", delivery.delivery_id, delivery.event, delivery.payload) == 1

    async def next_delivery(self) -> Delivery | None:
        row = await self._run("next_delivery", self.owner, self.lease)
        if row is None:
            return None
        self._held_delivery = row[0]
        return Delivery(*row)

    async def finish_delivery(self, delivery_id: str, error: str | None = None) -> None:
        await self._run("finish_delivery", delivery_id, error or "")
        if self._held_delivery == delivery_id:
            self._held_delivery = None

    async def enqueue(self, job: Job) -> Job:
        job_id, state = await self._run("enqueue", job.installation_id, job.repo, job.pr_number, job.head_sha,
                                        job.reason, job.delivery_id, job.attempt, job.failures)
        return replace(job, id=int(job_id), state=JobState(str(state)), claims=0)

    async def cancel_pr(self, repo: str, pr_number: int) -> int:
        return int(await self._run("cancel_pr", repo, pr_number))

    async def live_jobs(self, repo: str, pr_number: int) -> list[Job]:
        ids = cast(set[str], await self.redis.smembers(f"{self.prefix}pr:{repo}#{pr_number}:live"))
        jobs = await self._rows(sorted(ids, key=int))
        return [j for j in jobs if j.state in LIVE_STATES]

    async def claim(self) -> Job | None:
        row = await self._run("claim", self.owner, self.lease)
        if row is None:
            return None
        job = _job(row)
        self._held_jobs.add(job.key)
        return job

    async def state(self, job_id: int) -> JobState:
        value = await self.redis.hget(f"{self.prefix}job:{job_id}", "state")
        if value is None:
            raise KeyError(job_id)
        return JobState(str(value))

    async def finish(self, job_id: int, state: JobState, error: str | None = None) -> bool:
        """Also False when the job is running under another claim: this one's lease ran out."""
        if state in LIVE_STATES:
            raise ValueError(f"finish needs a final state, not {state.value}")
        return await self._leave("finish", job_id, JobState(state).value, error or "")

    async def retry(self, job_id: int, error: str, delay: float) -> bool:
        return await self._leave("retry", job_id, error, max(delay, 0.0))

    async def release(self, job_id: int) -> bool:
        return await self._leave("release", job_id)

    async def dead_letter(self, job_id: int, error: str) -> bool:
        return await self._leave("dead_letter", job_id, error)

    async def _leave(self, script: str, job_id: int, *args: Any) -> bool:
        """Run a script that ends this owner's claim on a running job; held or not, it is no longer ours."""
        self._held_jobs.discard(job_id)
        return await self._run(script, self.owner, job_id, *args) == 1

    async def dead_letters(self, limit: int = 50) -> list[DeadLetter]:
        entries = cast(list[tuple[str, float]],
                       await self.redis.zrevrange(f"{self.prefix}dead", 0, limit - 1, withscores=True))
        rows = await self._fields([id_ for id_, _ in entries], (*JOB_FIELDS, "error"))
        return [DeadLetter.of(_job(row[:-1]), row[-1], at) for (_, at), row in zip(entries, rows, strict=True)
                if row[0] is not None]

    async def _store_summary(self, job_id: int, text: str) -> bool:
        return await self._run("record_result", job_id, text) == 1

    async def recent(self, limit: int = 50) -> list[JobRecord]:
        ids = cast(list[str], await self.redis.zrevrange(f"{self.prefix}jobs:finished", 0, limit - 1))
        return [JobRecord.stored(*row) for row in await self._fields(ids, RECORD_FIELDS) if row[0] is not None]

    async def stats(self) -> QueueStats:
        queued, running, waited, dead, pending = await self._run("stats")
        return QueueStats(queued=int(queued), running=int(running), oldest_age=float(waited) if waited else None,
                          dead_letters=int(dead), deliveries_pending=int(pending))

    async def recover(self) -> int:
        return int(await self._run("recover"))

    async def prune(self, retention: float) -> int:
        """In batches, so no single script blocks Redis for long."""
        total = 0
        while (n := int(await self._run("prune", retention, PRUNE_BATCH))) > 0:
            total += n
            if n < PRUNE_BATCH:
                break
        return total

    async def counts(self) -> dict[str, int]:
        stored = await self.redis.hgetall(f"{self.prefix}counts")
        return {state.value: int(stored.get(state.value, 0)) for state in JobState}

    async def jobs(self, repo: str | None = None, pr_number: int | None = None) -> list[Job]:
        index = f"{self.prefix}jobs"
        if repo is not None and pr_number is not None:
            index = f"{self.prefix}pr:{repo}#{pr_number}:all"
        elif repo is not None:
            index = f"{self.prefix}repo:{repo}"
        return await self._rows(cast(list[str], await self.redis.zrange(index, 0, -1)))

    async def _rows(self, ids: list[str]) -> list[Job]:
        """The jobs still stored among `ids` (one may be pruned between listing and reading)."""
        return [_job(row) for row in await self._fields(ids, JOB_FIELDS) if row[0] is not None]

    async def _fields(self, ids: list[str], fields: tuple[str, ...]) -> list[list[Any]]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for id_ in ids:
                pipe.hmget(f"{self.prefix}job:{id_}", *fields)
            return await pipe.execute()


SCRIPTS = {"add_delivery": ADD_DELIVERY, "next_delivery": NEXT_DELIVERY, "finish_delivery": FINISH_DELIVERY,
           "enqueue": ENQUEUE, "cancel_pr": CANCEL_PR, "claim": CLAIM, "finish": FINISH, "recover": RECOVER,
           "renew": RENEW, "prune": PRUNE, "backfill": BACKFILL, "retry": RETRY, "release": RELEASE,
           "dead_letter": DEAD_LETTER, "record_result": RECORD_RESULT, "stats": STATS}
