"""GitHub misbehaving under a real review: every endpoint a review uses, every way it fails.

Each case runs the real App (queue, worker, client, Reviewer, renderer) on the example pull request
against the fake GitHub, with one fault programmed, and checks what the pull request ends up showing
against a clean review of the same pull request (the yardstick):

- faults the client absorbs (5xx, timeouts, secondary and primary rate limits, an expired token):
  the same check run conclusion and the same comments, nothing said twice;
- faults that outlast the client's retries: the review fails, the job is retried, and its second run
  gives the yardstick's result on a check run that is completed;
- an outage for the whole job: the job is given up as a dead letter with the reason, and its check run
  is completed with an explanation whenever GitHub lets us;
- things that happen during the review (a push, the PR closed, the App uninstalled): never a stale
  result published for a superseded commit, never a run left in progress that GitHub still lets us
  complete, never a job dropped without a record.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from typing import Any

import pytest

from bot.app.client import RetryPolicy
from bot.app.review import Reviewer
from bot.app.server import WORKER
from bot.publish.github import annotation_key, marker, parse_fingerprints
from bot.queue.base import JobState
from tests.conftest import APP_ID, load_payload, seed_pull_from_payload
from tests.example_pr import NUMBER, REPO, opened, seed_example
from tests.fakegh import FakeGitHub

SECONDARY = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
PRIMARY = "API rate limit exceeded for installation ID 1."
# The client's timeout in these tests, and how long a stalled answer takes: past it, so a timeout.
TIMEOUT, STALL = 1.0, 1.6
POLICY = RetryPolicy(timeout=TIMEOUT)
STALE = "00000000deadbeef"  # the fingerprint of a finding of ours that is gone: its comment is deleted

# Every request a review makes, in order; "codeload" is the tarball redirect's target (not the API).
API = ("apps/create-installation-access-token", "checks/create", "pulls/get", "repos/get-content",
       "repos/compare-commits", "repos/download-tarball-archive", "checks/update", "pulls/list-review-comments",
       "pulls/create-review", "pulls/delete-review-comment")
POINTS = (*API, "codeload", "pulls/get#2")  # pulls/get#2: the head check before publishing


def operation(point: str) -> tuple[str, int]:
    """The operation of a point, and how many of its requests pass before it is hit."""
    op, _, nth = point.partition("#")
    return op, int(nth or 1) - 1


@dataclasses.dataclass(frozen=True)
class Fault:
    status: int
    message: str = "Server Error"
    headers: tuple[tuple[str, str], ...] = ()
    stall: float = 0.0
    codeload: bool = True  # codeload answers plain HTTP: no rate-limit bodies


ABSORBED = {
    "502": Fault(502),
    "503": Fault(503, "Service Unavailable"),
    "timeout": Fault(504, stall=STALL),
    "403 secondary, Retry-After": Fault(403, SECONDARY, (("retry-after", "17"),), codeload=False),
    "403 secondary": Fault(403, SECONDARY, codeload=False),
    "429, Retry-After": Fault(429, "Too Many Requests", (("retry-after", "17"),), codeload=False),
    "429": Fault(429, "Too Many Requests", codeload=False),
    "primary exhausted": Fault(403, PRIMARY, (("x-ratelimit-remaining", "0"),), codeload=False),
}


# Requested twice at once (head and base): a fault that is to outlast the client must outlast both.
CONCURRENT = ("repos/download-tarball-archive", "codeload")


def program(fakegh: FakeGitHub, point: str, fault: Fault, times: int, now: float) -> None:
    op, skip = operation(point)
    headers = dict(fault.headers)
    if "x-ratelimit-remaining" in headers:
        headers["x-ratelimit-reset"] = str(int(now) + 120)
    fakegh.fail(op, status=fault.status, times=times, headers=headers, message=fault.message, stall=fault.stall,
                skip=skip)


def cases(faults: dict[str, Fault]) -> list[Any]:
    return [pytest.param(point, fault, id=f"{point}: {name}") for point in POINTS for name, fault in faults.items()
            if point != "codeload" or fault.codeload]


# ---- the pull request, the App, and what a clean review of it shows

def seed(fakegh: FakeGitHub, example: dict) -> dict:
    """The example PR, with one comment of ours whose finding is gone (so the deletion is exercised)."""
    pull = seed_example(fakegh, example)
    return fakegh._add_review_comment(pull, {"path": "base/web/configmap.yaml", "line": 9,
                                             "body": f"old\n{marker(STALE)}"}, None, fakegh.bot_user())


async def start(make_bot: Any, settings: Any, fakegh: FakeGitHub, *, max_failures: int = 2) -> Any:
    reviewer = Reviewer()
    bot = await make_bot(reviewer.review, reviewer.fail, policy=POLICY,
                         settings_override=dataclasses.replace(settings, max_failures=max_failures,
                                                               api_url=fakegh.url))
    bot.app[WORKER].retry_base = 0.0
    return bot


@dataclasses.dataclass(frozen=True)
class Shown:
    """What the pull request shows once the App is done with a head."""

    conclusion: str
    title: str
    fingerprints: frozenset[str]


def ours(fakegh: FakeGitHub) -> Counter[str]:
    """Fingerprints of the comments the App's bot user wrote, with how often each is said."""
    bot_login = fakegh.bot_user()["login"]
    return Counter(fp for c in fakegh.review_comments if c.get("user", {}).get("login") == bot_login
                   for fp in parse_fingerprints(c["body"]))


def runs(fakegh: FakeGitHub, sha: str) -> list[dict]:
    return sorted((r for r in fakegh.check_runs.values() if r["head_sha"] == sha), key=lambda r: r["id"])


def shown(fakegh: FakeGitHub, sha: str) -> Shown:
    said = ours(fakegh)
    assert all(n == 1 for n in said.values()), f"a comment said twice: {said}"
    head_runs = runs(fakegh, sha)
    assert head_runs and all(r["status"] == "completed" for r in head_runs), \
        [(r["status"], r.get("conclusion")) for r in head_runs]
    last = head_runs[-1]
    return Shown(last["conclusion"], last["output"]["title"], frozenset(said))


_YARDSTICK: dict[str, Shown] = {}
CLEAN_REQUESTS: Counter[str] = Counter()  # how often a clean review makes each request


@pytest.fixture
async def yardstick(aiohttp_server: Any, make_bot: Any, settings: Any, private_key: str, example: dict) -> Shown:
    """The clean review of the example PR, on a fake of its own (once per test process)."""
    if "clean" not in _YARDSTICK:
        fake = FakeGitHub(app_id=APP_ID, private_key=private_key)
        seed_pull_from_payload(fake, load_payload("pull_request", "opened.payload.json"))
        seed(fake, example)
        fake.server = await aiohttp_server(fake.app)
        fake.url = str(fake.server.make_url("")).rstrip("/")
        bot = await start(make_bot, dataclasses.replace(settings, queue_url=settings.queue_url + "-yardstick"), fake)
        await bot.send("pull_request", opened(example))
        await bot.settle(timeout=60)
        assert not bot.failed and fake.violations == [] and fake.rejections == []
        _YARDSTICK["clean"] = shown(fake, example["head_sha"])
        CLEAN_REQUESTS.update(r.operation_id for r in fake.requests if r.operation_id)
        assert _YARDSTICK["clean"].conclusion == "failure" and len(_YARDSTICK["clean"].fingerprints) >= 5
        assert STALE not in _YARDSTICK["clean"].fingerprints
    return _YARDSTICK["clean"]


async def job_states(bot: Any) -> list[JobState]:
    return [j.state for j in await bot.queue.recent(limit=50)]


def every_point_was_reached(fakegh: FakeGitHub) -> None:
    """The suite is only as good as its list of points: a review must still make each of them."""
    made = Counter(r.operation_id for r in fakegh.requests)
    missing = [p for p in POINTS if made[operation(p)[0]] <= operation(p)[1]]
    assert not missing, f"the review no longer makes {missing}: update POINTS"


# ---- faults the client absorbs

@pytest.mark.parametrize("point, fault", cases(ABSORBED))
async def test_a_fault_the_client_absorbs_changes_nothing_the_pr_shows(point, fault, make_bot, settings, fakegh,
                                                                      example, fake_time, yardstick):
    seed(fakegh, example)
    program(fakegh, point, fault, times=1, now=fake_time.now)
    bot = await start(make_bot, settings, fakegh)
    await bot.send("pull_request", opened(example))
    await bot.settle(timeout=60)
    every_point_was_reached(fakegh)
    op, skip = operation(point)
    asked = fakegh.calls(op)
    assert len(asked) > CLEAN_REQUESTS[op], "the fault was served, and the request made again"
    if not fault.stall:  # a stalled answer goes to a client that gave up waiting
        assert asked[skip].status == fault.status
    assert shown(fakegh, example["head_sha"]) == yardstick
    assert len(runs(fakegh, example["head_sha"])) == 1
    assert len(bot.reviewed) == 1 and not bot.failed, "absorbed by the client: no second run of the job"
    assert fakegh.rejections == []
    waited = sum(fake_time.sleeps)
    if dict(fault.headers).get("retry-after"):
        assert 17 in fake_time.sleeps, "Retry-After is honoured"
    elif fault.message in (SECONDARY, "Too Many Requests"):
        assert any(s >= 60 for s in fake_time.sleeps), "a rate limit without Retry-After waits at least a minute"
    elif fault.message == PRIMARY:
        # The reset is two minutes after the fake clock's start, the wall-clock time the test began; the
        # client waits from the wall-clock time of the fault, which has moved on by however long the
        # review took to reach it (seconds, on a loaded machine).
        began = fake_time.now - waited
        reset = int(began) + 120
        assert any(reset + 1 - time.time() <= s <= reset + 1 - began for s in fake_time.sleeps), \
            f"waits for the reset: {fake_time.sleeps}"
    else:
        assert waited < 60


@pytest.mark.parametrize("point", [p for p in POINTS if p != "apps/create-installation-access-token"])
async def test_a_token_expiring_mid_review_is_refreshed_once(point, make_bot, settings, fakegh, example, yardstick):
    seed(fakegh, example)
    fakegh.before(operation(point)[0], fakegh.expire_tokens)
    bot = await start(make_bot, settings, fakegh)
    await bot.send("pull_request", opened(example))
    await bot.settle(timeout=60)
    assert shown(fakegh, example["head_sha"]) == yardstick
    assert len(fakegh.calls("apps/create-installation-access-token")) == 2, "one refresh"
    assert len(bot.reviewed) == 1 and not bot.failed


# ---- faults that outlast the client's retries: the job is retried

OUTLAST = {
    "5xx on every retry": (Fault(502), RetryPolicy().attempts),
    "timeouts on every retry": (Fault(504, stall=STALL), RetryPolicy().attempts),
    "rate limited on every retry": (Fault(403, SECONDARY, codeload=False), RetryPolicy().rate_limit_retries + 1),
    "404 (a redirect to nowhere)": (Fault(404, "Not Found"), 1),
}


@pytest.mark.parametrize("point, fault, times", [
    pytest.param(point, fault, times, id=f"{point}: {name}") for point in POINTS
    for name, (fault, times) in OUTLAST.items()
    if (point == "codeload" and fault.codeload) or (point != "codeload" and fault.status != 404)
    or (point == "repos/download-tarball-archive" and fault.status == 404)])
async def test_a_fault_that_outlasts_the_client_is_retried_and_nothing_is_said_twice(
        point, fault, times, make_bot, settings, fakegh, example, fake_time, yardstick):
    seed(fakegh, example)
    program(fakegh, point, fault, times=times * (1 + (point in CONCURRENT)), now=fake_time.now)
    bot = await start(make_bot, settings, fakegh)
    await bot.send("pull_request", opened(example))
    await bot.settle(timeout=90)
    assert len(bot.reviewed) == 2, "the failed review ran again"
    assert not bot.failed, "a retried job is not given up"
    assert shown(fakegh, example["head_sha"]) == yardstick
    assert await job_states(bot) == [JobState.DONE]
    assert len(runs(fakegh, example["head_sha"])) == 1, "the retry completed the first run, it added none"
    [run] = runs(fakegh, example["head_sha"])
    annotated = Counter(annotation_key(a) for a in fakegh.annotations[run["id"]])
    assert annotated and all(n == 1 for n in annotated.values()), "no annotation appended twice"
    assert fakegh.rejections == []


# ---- an outage for the whole job: given up, with a record, the run completed when GitHub allows

@pytest.mark.parametrize("point", [p for p in POINTS if p != "apps/create-installation-access-token"])
async def test_an_outage_gives_the_job_up_as_a_dead_letter_and_completes_the_run_if_it_can(
        point, make_bot, settings, fakegh, example, fake_time):
    seed(fakegh, example)
    program(fakegh, point, Fault(503, "Service Unavailable"), times=10_000, now=fake_time.now)
    bot = await start(make_bot, settings, fakegh)
    await bot.send("pull_request", opened(example))
    await bot.settle(timeout=90)
    assert len(bot.reviewed) == 2 and len(bot.failed) == 1
    [dead] = await bot.queue.dead_letters()
    assert "503" in dead.error or "Service Unavailable" in dead.error or "BadGateway" in dead.error, dead.error
    head_runs = runs(fakegh, example["head_sha"])
    assert len(head_runs) <= 1, "the retry completed the run it had opened, or opened none"
    if head_runs:
        annotated = Counter(annotation_key(a) for a in fakegh.annotations[head_runs[0]["id"]])
        assert all(n == 1 for n in annotated.values()), "no annotation appended twice"
    if point in ("checks/create", "checks/update"):
        # GitHub refuses every change to check runs: the run cannot be opened or completed by anyone;
        # the dead letter (status page, logs) is the record, and /recheck starts again.
        assert all(r["status"] != "completed" or r["conclusion"] == "failure" for r in head_runs)
    else:
        [run] = head_runs
        assert (run["status"], run["conclusion"]) == ("completed", "failure")
        published = point in ("pulls/list-review-comments", "pulls/create-review", "pulls/delete-review-comment")
        if not published:
            assert "could not complete" in run["output"]["title"], run["output"]["title"]
            assert "/recheck" in run["output"]["summary"]
    assert all(n == 1 for n in ours(fakegh).values())


# ---- what happens to the pull request during the review

NEWER = "f" * 40


@pytest.mark.parametrize("point", [p for p in POINTS if p != "apps/create-installation-access-token"])
async def test_a_push_during_the_review_never_publishes_for_the_old_head(point, make_bot, settings, fakegh,
                                                                          example, yardstick):
    seed(fakegh, example)
    pull = fakegh.repos[REPO].pulls[NUMBER]
    fakegh.repos[REPO].trees[NEWER] = example["head"]
    pushed = load_payload("pull_request", "synchronize.payload.json")
    pushed["pull_request"]["head"]["sha"], pushed["pull_request"]["base"]["sha"] = NEWER, example["base_sha"]
    pushed["pull_request"]["number"] = pushed["number"] = NUMBER
    pushed["repository"] = opened(example)["repository"]
    fakegh.before(operation(point)[0], lambda: setattr(pull, "head_sha", NEWER))
    bot = await start(make_bot, settings, fakegh)
    await bot.send("pull_request", opened(example))
    await bot.settle(timeout=60)
    await bot.send("pull_request", pushed)
    await bot.settle(timeout=60)
    old = runs(fakegh, example["head_sha"])
    assert all(r["status"] == "completed" for r in old)
    reviews = fakegh.calls("pulls/create-review")
    checked_before_the_push = point in ("checks/update", "pulls/list-review-comments", "pulls/create-review",
                                        "pulls/delete-review-comment")
    if checked_before_the_push:
        # The old head was still the head when the review asked: its results were right when posted.
        assert [r["conclusion"] for r in old] == ["failure"]
    else:
        assert [r["conclusion"] for r in old] == ["neutral"] and "Superseded" in old[0]["output"]["title"]
        assert all(r.body["commit_id"] == NEWER for r in reviews)
    assert shown(fakegh, NEWER) == yardstick, "the new head gets the whole review, each comment once"


@pytest.mark.parametrize("point", [p for p in POINTS if p != "apps/create-installation-access-token"])
async def test_closing_the_pr_during_the_review_publishes_nothing_after(point, make_bot, settings, fakegh, example):
    seed(fakegh, example)
    pull = fakegh.repos[REPO].pulls[NUMBER]
    fakegh.before(operation(point)[0], lambda: setattr(pull, "state", "closed"))
    bot = await start(make_bot, settings, fakegh)
    await bot.send("pull_request", opened(example))
    await bot.settle(timeout=60)
    [run] = runs(fakegh, example["head_sha"])
    assert run["status"] == "completed"
    if point in ("checks/update", "pulls/list-review-comments", "pulls/create-review", "pulls/delete-review-comment"):
        assert run["conclusion"] == "failure", "the results were posted while the PR was open"
    else:
        assert (run["conclusion"], run["output"]["title"]) == ("neutral", "Pull request closed")
        assert not fakegh.calls("pulls/create-review")
    assert all(n == 1 for n in ours(fakegh).values())
    assert await job_states(bot) == [JobState.DONE] and not bot.failed


@pytest.mark.parametrize("point", POINTS)
async def test_an_uninstall_during_the_review_leaves_a_dead_letter_not_a_silent_drop(point, make_bot, settings,
                                                                                      fakegh, example):
    seed(fakegh, example)
    fakegh.before(operation(point)[0], lambda: fakegh.uninstall(1))
    bot = await start(make_bot, settings, fakegh)
    await bot.send("pull_request", opened(example))
    await bot.settle(timeout=60)
    assert len(bot.failed) == 1
    [dead] = await bot.queue.dead_letters()
    assert dead.job.repo == REPO and dead.job.pr_number == NUMBER and dead.error
    assert "ghs_" not in dead.error, "no token in the record"
    assert all(n == 1 for n in ours(fakegh).values())
    for run in runs(fakegh, example["head_sha"]):  # whatever GitHub let us complete is not left misleading
        assert run["status"] != "completed" or run["conclusion"] == "failure"
