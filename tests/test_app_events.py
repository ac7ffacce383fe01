"""Every event the App handles, driven by the real octokit/webhooks payloads through the real app."""

from __future__ import annotations

import pytest

from bot.app.server import CTX, WORKER
from bot.queue import JobState
from tests.conftest import load_payload, ours
from tests.fakegh import FakePull

HEAD = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
REPO = "Codertocat/Hello-World"


def seed(fakegh, repo: str, number: int, head_sha: str, author: str = "octocat") -> None:
    fakegh.add_pull(repo, FakePull(number=number, head_sha=head_sha, base_sha="c" * 40, merge_base="c" * 40,
                                   author=author))


@pytest.mark.parametrize("name", ["opened.payload.json", "opened.with-organization.payload.json",
                                  "opened.with-null-body.json", "reopened.payload.json",
                                  "synchronize.payload.json", "ready_for_review.with-installation.payload.json"])
async def test_pull_request_events_review_the_head(make_bot, fakegh, name):
    bot = await make_bot()
    payload = load_payload("pull_request", name)
    assert (await bot.send("pull_request", payload)).status == 202
    await bot.settle()
    [job] = bot.reviewed
    assert (job.installation_id, job.repo, job.pr_number, job.head_sha) == (1, REPO, 2, HEAD)
    assert job.reason == f"pull_request.{payload['action']}"
    [created] = fakegh.calls("checks/create")
    assert created.body["head_sha"] == HEAD and created.body["external_id"] == "2"
    assert [r.status for r in fakegh.calls("checks/update")] == [200]


async def test_repository_webhook_without_installation_is_ignored(make_bot, fakegh):
    bot = await make_bot()
    await bot.send("pull_request", load_payload("pull_request", "ready_for_review.payload.json"))
    await bot.settle()
    assert bot.reviewed == [] and fakegh.requests == []


@pytest.mark.parametrize(("review_drafts", "reviewed"), [(False, 0), (True, 1)])
async def test_drafts_skipped_unless_configured(make_bot, settings, review_drafts, reviewed):
    from dataclasses import replace

    bot = await make_bot(settings_override=replace(settings, review_drafts=review_drafts))
    payload = load_payload("pull_request", "opened.payload.json")
    payload["pull_request"]["draft"] = True
    await bot.send("pull_request", payload)
    await bot.settle()
    assert len(bot.reviewed) == reviewed


async def test_closed_cancels_pending_work(make_bot, fakegh):
    bot = await make_bot()
    worker = bot.app[WORKER]
    await worker.stop()
    await bot.send("pull_request", load_payload("pull_request", "opened.payload.json"))
    await worker.dispatch_once()
    fakegh.repos[REPO].pulls[2].state = "closed"
    await bot.send("pull_request", load_payload("pull_request", "closed.payload.json"))
    await worker.dispatch_once()
    assert [j.state for j in await bot.queue.jobs()] == [JobState.CANCELLED]
    assert await worker.run_once() is False
    assert bot.reviewed == [] and fakegh.calls("checks/create") == []


async def test_a_replayed_closed_event_of_a_reopened_pr_cancels_nothing(make_bot, fakegh):
    bot = await make_bot()
    worker = bot.app[WORKER]
    await worker.stop()
    await bot.send("pull_request", load_payload("pull_request", "reopened.payload.json"))
    await worker.dispatch_once()
    await bot.send("pull_request", load_payload("pull_request", "closed.payload.json"))
    await worker.dispatch_once()
    assert [j.state for j in await bot.queue.jobs()] == [JobState.QUEUED]
    await worker.start()
    await bot.settle()
    assert [j.head_sha for j in bot.reviewed] == [HEAD]


async def test_an_event_that_disagrees_with_queued_work_queues_the_head_github_reports(make_bot, fakegh):
    """A late `synchronize` names an old commit while a push whose webhook is not in yet moved the head:
    the review is of the head GitHub reports, never of the payload's stale commit."""
    moved = "9" * 40
    bot = await make_bot()
    worker = bot.app[WORKER]
    await worker.stop()
    await bot.send("pull_request", load_payload("pull_request", "opened.payload.json"))
    await worker.dispatch_once()
    fakegh.repos[REPO].pulls[2].head_sha = moved
    late = load_payload("pull_request", "synchronize.payload.json")
    late["pull_request"]["head"]["sha"] = "1" * 40
    await bot.send("pull_request", late)
    await worker.dispatch_once()
    assert [(j.head_sha, j.state) for j in await bot.queue.jobs()] == [(HEAD, JobState.SUPERSEDED),
                                                                      (moved, JobState.QUEUED)]
    assert len(fakegh.calls("pulls/get")) == 1
    await bot.send("pull_request", late, delivery="replayed-again")
    await worker.dispatch_once()
    assert [j.head_sha for j in await bot.queue.live_jobs(REPO, 2)] == [moved], "already queued: nothing added"


def recheck_payload(body: str = "/recheck", login: str | None = None, user_type: str = "User") -> dict:
    payload = load_payload("issue_comment", "created.on-pull-request.DERIVED.payload.json")
    payload["comment"]["body"] = body
    if login:
        payload["comment"]["user"].update(login=login, type=user_type)
        payload["sender"].update(login=login, type=user_type)
    return payload


async def test_recheck_by_pr_author_reacts_then_reviews(make_bot, fakegh):
    fakegh.repos[REPO].pulls[1] = FakePull(number=1, head_sha="d" * 40, base_sha="c" * 40, merge_base="c" * 40,
                                           author="Codertocat")
    bot = await make_bot()
    await bot.send("issue_comment", recheck_payload())
    await bot.settle()
    [reaction] = fakegh.calls("reactions/create-for-issue-comment")
    assert reaction.body == {"content": "eyes"}
    assert reaction.path.endswith("/issues/comments/492700400/reactions")
    assert fakegh.calls("repos/get-collaborator-permission-level") == [], "the author needs no permission check"
    [job] = bot.reviewed
    assert (job.pr_number, job.head_sha, job.reason) == (1, "d" * 40, "issue_comment./recheck")
    order = [r.operation_id for r in fakegh.requests]
    assert order.index("reactions/create-for-issue-comment") < order.index("checks/create")


@pytest.mark.parametrize(("role", "allowed"), [("admin", True), ("maintain", True), ("write", True),
                                               ("triage", False), ("read", False)])
async def test_recheck_needs_write_permission(make_bot, fakegh, role, allowed):
    fakegh.repos[REPO].pulls[1] = FakePull(number=1, head_sha="d" * 40, base_sha="c" * 40, merge_base="c" * 40)
    fakegh.repos[REPO].roles["hubot"] = role
    bot = await make_bot()
    await bot.send("issue_comment", recheck_payload("Looks odd.\r\n@infra-review /recheck\r\n", login="hubot"))
    await bot.settle()
    [perm] = fakegh.calls("repos/get-collaborator-permission-level")
    assert perm.path.endswith("/collaborators/hubot/permission")
    assert len(bot.reviewed) == int(allowed)
    assert len(fakegh.calls("reactions/create-for-issue-comment")) == int(allowed)


# Comments that are not a /recheck, or not from someone who may ask: tests/test_hostile_webhooks.py.


async def test_check_run_rerequested_fork_pr_found_by_commit(make_bot, fakegh):
    payload = ours(load_payload("check_run", "rerequested.payload.json"))
    assert payload["check_run"]["pull_requests"] == [] and payload["check_run"]["external_id"] == ""
    seed(fakegh, "github/hello-world", 5, payload["check_run"]["head_sha"])
    bot = await make_bot()
    await bot.send("check_run", payload)
    await bot.settle()
    [lookup] = fakegh.calls("repos/list-pull-requests-associated-with-commit")
    assert payload["check_run"]["head_sha"] in lookup.path
    [job] = bot.reviewed
    assert (job.repo, job.pr_number, job.reason) == ("github/hello-world", 5, "check_run.rerequested")


async def test_check_run_pr_number_from_external_id(make_bot, fakegh):
    payload = ours(load_payload("check_run", "rerequested.with-organization.payload.json"))
    payload["check_run"]["external_id"] = "9"
    seed(fakegh, "github/hello-world", 9, "e" * 40)
    bot = await make_bot()
    await bot.send("check_run", payload)
    await bot.settle()
    assert fakegh.calls("repos/list-pull-requests-associated-with-commit") == []
    assert [(j.pr_number, j.head_sha) for j in bot.reviewed] == [(9, "e" * 40)]


async def test_check_run_requested_action_rechecks(make_bot, fakegh):
    payload = ours(load_payload("check_run", "requested_action.payload.json"))
    seed(fakegh, "electron/electron", 26764, payload["check_run"]["head_sha"])
    bot = await make_bot()
    await bot.send("check_run", payload)
    await bot.settle()
    [job] = bot.reviewed
    assert (job.installation_id, job.pr_number, job.reason) == (690857, 26764, "check_run.requested_action")


@pytest.mark.parametrize(("name", "lookups"), [("rerequested.payload.json", 0),
                                               ("requested.payload.json", 1)])
async def test_check_suite_reviews_its_prs(make_bot, fakegh, name, lookups):
    payload = ours(load_payload("check_suite", name))
    if lookups:
        seed(fakegh, REPO, 7, payload["check_suite"]["head_sha"])
    bot = await make_bot()
    await bot.send("check_suite", payload)
    await bot.settle()
    assert len(fakegh.calls("repos/list-pull-requests-associated-with-commit")) == lookups
    [job] = bot.reviewed
    assert job.installation_id == 957387 and job.pr_number == (7 if lookups else 2)


async def test_check_suite_without_open_prs_queues_nothing(make_bot, fakegh):
    bot = await make_bot()
    await bot.send("check_suite", ours(load_payload("check_suite", "requested.with-organization.payload.json")))
    await bot.settle()
    assert bot.reviewed == []
    assert len(fakegh.calls("repos/list-pull-requests-associated-with-commit")) == 1


@pytest.mark.parametrize(("event", "name", "inst"), [("installation", "deleted.payload.json", 2),
                                                     ("installation", "created.payload.json", 957387),
                                                     ("installation_repositories", "added.payload.json", 957387)])
async def test_installation_events_drop_cached_tokens(make_bot, event, name, inst):
    bot = await make_bot()
    tokens = bot.app[CTX].tokens
    tokens.put(inst, "ghs_cached", expires_at=4_000_000_000)
    tokens.put(99, "ghs_other", expires_at=4_000_000_000)
    await bot.send(event, load_payload(event, name))
    await bot.settle()
    assert inst not in tokens and 99 in tokens
