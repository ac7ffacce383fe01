"""Hostile webhooks and users (issue 15): generated families against the real app on a TCP port.

Each family is a table of variants; a variant's id says what it tries. Whatever a request tries, the
service answers it with a 4xx or "ignored" (never a 5xx), queues nothing it should not, runs no
handler it should not, and answers GET /health afterwards.

Signatures: GitHub sends `X-Hub-Signature-256: sha256=<64 lowercase hex digits>`, and that is the one
form accepted: uppercase hex, another prefix, the legacy SHA-1 header alone or the header sent twice
are refused (401).
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import hmac
import json
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from bot.app.handlers.issue_comment import asks_recheck
from bot.app.review import archive_error_body, config_error_body
from bot.app.server import WORKER
from bot.app.source import ArchiveRejected
from bot.config import ConfigError
from bot.model import Finding, Origin, ResourceId, Suggestion
from bot.publish.github import check_run_complete, marker, open_fingerprints, review_payload, stale_comments
from bot.publish.github_actions import render_github
from bot.publish.report import Report, TargetStatus
from bot.queue import JobState
from bot.queue.base import Job
from bot.repo.git import GitError, git
from bot.review.anchors import from_pr_files
from tests.conftest import SECRET, load_payload, signed
from tests.fakegh import FakePull
from tests.test_app_events import REPO, recheck_payload
from tests.test_app_webhooks import scrape
from tests.test_publish_escape import assert_inert, parse, walk

Mutation = Callable[[bytes, CIMultiDict], tuple[bytes, CIMultiDict]]


def opened() -> dict:
    return load_payload("pull_request", "opened.payload.json")


async def assert_healthy_and_idle(bot: Any, fakegh: Any, *, stored: bool = False) -> None:
    """/health answers; nothing was queued, no handler failed and nobody asked GitHub anything."""
    assert (await bot.client.get("/health")).status == 200
    if not stored:
        assert await bot.queue.next_delivery() is None
    await bot.settle()
    assert await bot.queue.jobs() == [] and bot.reviewed == []
    assert fakegh.requests == []
    samples = scrape(await (await bot.client.get("/metrics")).text())
    assert not [k for k, v in samples.items() if ("outcome", "error") in k[1] and v], "a handler failed"


async def raw_request(client: Any, head: list[str], body: bytes = b"", *, timeout: float = 10.0) -> int:
    """Send a request head (and what there is of a body) over a raw socket; the answer's status. The
    body may be incomplete: the answer must come without the rest."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(("\r\n".join(["POST /webhook HTTP/1.1", f"Host: {client.host}:{client.port}", *head])
                      + "\r\n\r\n").encode())
        try:
            for start in range(0, len(body), 1 << 20):
                writer.write(body[start:start + (1 << 20)])
                await writer.drain()
        except ConnectionError:
            pass  # the server answered and closed before the whole body was sent
        status_line = await asyncio.wait_for(reader.readline(), timeout)
        return int(status_line.split(b" ", 2)[1])
    finally:
        writer.close()


# ---- 1. signatures -------------------------------------------------------------------------------------


def _hex(body: bytes, secret: str = SECRET, digest: Any = hashlib.sha256) -> str:
    return hmac.new(secret.encode(), body, digest).hexdigest()


def _with_signature(value: Callable[[bytes], str | None]) -> Mutation:
    def mutate(body: bytes, headers: CIMultiDict) -> tuple[bytes, CIMultiDict]:
        signature = value(body)
        headers.popall("X-Hub-Signature-256", None)
        if signature is not None:
            headers["X-Hub-Signature-256"] = signature
        return body, headers
    return mutate


def _body_after_signing(change: Callable[[bytes], bytes]) -> Mutation:
    return lambda body, headers: (change(body), headers)


def _sha1_only(body: bytes, headers: CIMultiDict) -> tuple[bytes, CIMultiDict]:
    headers.popall("X-Hub-Signature-256")
    headers["X-Hub-Signature"] = "sha1=" + _hex(body, digest=hashlib.sha1)
    return body, headers


def _twice(valid_first: bool) -> Mutation:
    def mutate(body: bytes, headers: CIMultiDict) -> tuple[bytes, CIMultiDict]:
        good, bad = headers.popone("X-Hub-Signature-256"), "sha256=" + "0" * 64
        for value in (good, bad) if valid_first else (bad, good):
            headers.add("X-Hub-Signature-256", value)
        return body, headers
    return mutate


SIGNATURES: dict[str, Mutation] = {
    "missing-header": _with_signature(lambda body: None),
    "empty": _with_signature(lambda body: ""),
    "prefix-only": _with_signature(lambda body: "sha256="),
    "sha1-header-only": _sha1_only,
    "sha1-prefix-on-sha256-mac": _with_signature(lambda body: "sha1=" + _hex(body)),
    "sha512-prefix": _with_signature(lambda body: "sha512=" + _hex(body)),
    "no-prefix": _with_signature(_hex),
    "uppercase-prefix": _with_signature(lambda body: "SHA256=" + _hex(body)),
    "hex-one-short": _with_signature(lambda body: "sha256=" + _hex(body)[:-1]),
    "hex-one-long": _with_signature(lambda body: "sha256=" + _hex(body) + "0"),
    "non-hex": _with_signature(lambda body: "sha256=" + _hex(body)[:-1] + "g"),
    "uppercase-hex-of-right-mac": _with_signature(lambda body: "sha256=" + _hex(body).upper()),
    "mac-of-another-body": _with_signature(lambda body: "sha256=" + _hex(body.replace(b"opened", b"closed"))),
    "mac-of-another-secret": _with_signature(lambda body: "sha256=" + _hex(body, "not-" + SECRET)),
    "trailing-byte-after-signing": _body_after_signing(lambda body: body + b" "),
    "trailing-nul-after-signing": _body_after_signing(lambda body: body + b"\0"),
    "reserialised-after-signing": _body_after_signing(lambda body: json.dumps(json.loads(body), indent=1).encode()),
    "compact-after-signing": _body_after_signing(
        lambda body: json.dumps(json.loads(body), separators=(",", ":")).encode()),
    "duplicated-valid-first": _twice(valid_first=True),
    "duplicated-valid-last": _twice(valid_first=False),
}


@pytest.mark.parametrize("mutate", SIGNATURES.values(), ids=SIGNATURES.keys())
async def test_a_delivery_without_exactly_the_right_signature_is_401_and_does_nothing(make_bot, fakegh, mutate):
    bot = await make_bot()
    body, headers = signed(opened(), "pull_request")
    body, sent = mutate(body, CIMultiDict(headers))
    resp = await bot.client.post("/webhook", data=body, headers=sent)
    assert resp.status == 401, await resp.text()
    await assert_healthy_and_idle(bot, fakegh)


def test_the_right_signature_is_accepted_in_the_form_github_sends():
    """The control for the family above: lowercase hex after `sha256=`, sent once."""
    from bot.app.webhooks import parse_event

    body, headers = signed(opened(), "pull_request")
    assert headers["X-Hub-Signature-256"] == "sha256=" + _hex(body)
    assert parse_event(CIMultiDict(headers), body, secret=SECRET, max_bytes=len(body)).event == "pull_request"


# ---- 2. bodies -----------------------------------------------------------------------------------------


def _payload(change: Callable[[dict], Any]) -> Callable[[], bytes]:
    def build() -> bytes:
        payload = opened()
        change(payload)
        return json.dumps(payload).encode()
    return build


def _deep(opening: str, closing: str, levels: int = 100_000) -> Callable[[], bytes]:
    return lambda: (opening * levels + closing * levels).encode()


BODIES: dict[str, tuple[Callable[[], bytes], int]] = {
    "not-json": (lambda: b"<xml>pull_request</xml>", 400),
    "json-array": (lambda: b'[{"action": "opened"}]', 400),
    "json-null": (lambda: b"null", 400),
    "json-string": (lambda: b'"opened"', 400),
    "truncated": (lambda: json.dumps(opened()).encode()[:-7], 400),
    "invalid-utf8": (lambda: b'{"action": "opened\xff"}', 400),
    "number-is-a-string": (_payload(lambda p: p["pull_request"].update(number="2")), 400),
    "number-is-a-bool": (_payload(lambda p: p["pull_request"].update(number=True)), 400),
    "head-sha-is-null": (_payload(lambda p: p["pull_request"]["head"].update(sha=None)), 400),
    "pull-request-is-a-list": (_payload(lambda p: p.update(pull_request=[2])), 400),
    "installation-id-is-text": (_payload(lambda p: p["installation"].update(id="1; DROP")), 400),
    "repository-is-a-string": (_payload(lambda p: p.update(repository="Codertocat/Hello-World")), 400),
    "no-repository": (_payload(lambda p: p.pop("repository")), 400),
    "no-pull-request": (_payload(lambda p: p.pop("pull_request")), 400),
    "nested-100k-arrays": (_deep("[", "]"), 400),
    "nested-100k-objects": (_deep('{"a":', "}"), 400),
    "nested-100k-in-a-real-payload": (
        lambda: json.dumps(opened()).encode()[:-1] + b', "x": ' + _deep("[", "]")() + b"}", 400),
}


@pytest.mark.parametrize(("build", "status"), BODIES.values(), ids=BODIES.keys())
async def test_a_signed_body_that_is_not_a_usable_delivery_is_a_4xx(make_bot, fakegh, build, status):
    bot = await make_bot()
    await bot.app[WORKER].stop()
    body, headers = signed(build(), "pull_request")
    resp = await bot.client.post("/webhook", data=body, headers=headers)
    assert resp.status == status, await resp.text()
    assert "error" in await resp.json()
    await assert_healthy_and_idle(bot, fakegh)


async def test_a_repository_webhook_without_installation_is_accepted_and_queues_no_review(make_bot, fakegh):
    """The one missing part that is legitimate: repository webhooks carry no installation."""
    bot = await make_bot()
    payload = opened()
    del payload["installation"]
    assert (await bot.send("pull_request", payload)).status == 202
    await assert_healthy_and_idle(bot, fakegh, stored=True)


def _gzip_of(raw: Callable[[], bytes], *, signed_over: str) -> Callable[[], tuple[bytes, dict[str, str]]]:
    def build() -> tuple[bytes, dict[str, str]]:
        plain = raw()
        packed = gzip.compress(plain)
        _, headers = signed(plain if signed_over == "plain" else packed, "pull_request")
        return packed, {**headers, "Content-Encoding": "gzip"}
    return build


OVERSIZED = 30 * 1024 * 1024
ENCODED: dict[str, Callable[[], tuple[bytes, dict[str, str]]]] = {
    "gzip-signed-over-the-gzip": _gzip_of(lambda: json.dumps(opened()).encode(), signed_over="packed"),
    "gzip-signed-over-the-json": _gzip_of(lambda: json.dumps(opened()).encode(), signed_over="plain"),
    "gzip-bomb-of-30-mb": _gzip_of(lambda: b"[" + b" " * OVERSIZED + b"]", signed_over="plain"),
}


@pytest.mark.parametrize("build", ENCODED.values(), ids=ENCODED.keys())
async def test_a_content_encoded_body_is_415_before_it_is_inflated(make_bot, fakegh, build):
    bot = await make_bot()
    body, headers = build()
    resp = await bot.client.post("/webhook", data=body, headers=headers, compress=None)
    assert resp.status == 415, await resp.text()
    await assert_healthy_and_idle(bot, fakegh)


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_a_30_mb_body_is_413_before_it_is_all_read(make_bot, fakegh, framing):
    """Content-Length: answered from the head alone (no body byte is sent). Chunked: answered once
    the cap is passed, while the last 4 MiB and the closing chunk are still unsent."""
    bot = await make_bot()
    body, headers = signed(b"[" + b" " * (OVERSIZED - 2) + b"]", "pull_request")
    head = [f"{k}: {v}" for k, v in headers.items()]
    if framing == "content-length":
        status = await raw_request(bot.client, [*head, f"Content-Length: {len(body)}"])
    else:
        sent = body[:len(body) - 4 * 1024 * 1024]
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part)
                          for part in (sent[i:i + 65536] for i in range(0, len(sent), 65536)))
        status = await raw_request(bot.client, [*head, "Transfer-Encoding: chunked"], chunks)
    assert status == 413
    await assert_healthy_and_idle(bot, fakegh)


# ---- 3. events and actions -----------------------------------------------------------------------------

EVENTS: dict[str, tuple[str, Callable[[], dict], str]] = {
    # id: (X-GitHub-Event, payload, expected status in the answer)
    "unknown-event": ("deployment_protection_rule", opened, "ignored"),
    "event-name-case": ("PULL_REQUEST", opened, "ignored"),
    "unicode-event-name": ("pull_request\u200b", opened, "ignored"),
    "emoji-event-name": ("💥", opened, "ignored"),
    "very-long-event-name": ("pull_request" * 600, opened, "ignored"),
    "ping": ("ping", lambda: load_payload("ping", "payload.json"), "ignored"),
    "pull-request-unknown-action": ("pull_request", _payload(lambda p: p.update(action="exploded")), "ignored"),
    "pull-request-labeled": ("pull_request", _payload(lambda p: p.update(action="labeled")), "ignored"),
    "pull-request-edited": ("pull_request", _payload(lambda p: p.update(action="edited")), "ignored"),
    "pull-request-closed-nothing-live": ("pull_request", lambda: load_payload("pull_request", "closed.payload.json"),
                                         "queued"),
    "check-run-created-by-another-app": (
        "check_run", lambda: {**load_payload("check_run", "rerequested.payload.json"), "action": "created"}, "ignored"),
    "check-run-completed-by-another-app": (
        "check_run", lambda: {**load_payload("check_run", "rerequested.payload.json"), "action": "completed"},
        "ignored"),
    "check-run-rerequested-for-another-app": (
        "check_run", lambda: load_payload("check_run", "rerequested.payload.json"), "ignored"),
    "check-run-requested-action-for-another-app": (
        "check_run", lambda: load_payload("check_run", "requested_action.payload.json"), "ignored"),
    "check-suite-rerequested-for-another-app": (
        "check_suite", lambda: load_payload("check_suite", "rerequested.payload.json"), "ignored"),
    "check-suite-requested-for-another-app": (
        "check_suite", lambda: load_payload("check_suite", "requested.payload.json"), "ignored"),
    "check-suite-completed": (
        "check_suite", lambda: {**load_payload("check_suite", "requested.payload.json"), "action": "completed"},
        "ignored"),
    "issue-comment-unknown-action": ("issue_comment", lambda: {**recheck_payload(), "action": "pinned"}, "ignored"),
    "installation-deleted": ("installation", lambda: load_payload("installation", "deleted.payload.json"), "queued"),
    "installation-suspend": ("installation", lambda: {**load_payload("installation", "deleted.payload.json"),
                                                      "action": "suspend"}, "queued"),
    "installation-repositories-removed": (
        "installation_repositories",
        lambda: {**load_payload("installation_repositories", "added.payload.json"), "action": "removed"}, "queued"),
}


@pytest.mark.parametrize(("event", "build", "answer"), EVENTS.values(), ids=EVENTS.keys())
async def test_events_and_actions_that_ask_for_no_review_queue_none(make_bot, fakegh, event, build, answer):
    bot = await make_bot()
    body, headers = signed(build(), "pull_request")
    resp = await bot.client.post("/webhook", data=body, headers={**headers, "X-GitHub-Event": event})
    assert resp.status in (200, 202) and (await resp.json())["status"] == answer
    await assert_healthy_and_idle(bot, fakegh, stored=answer == "queued")


# ---- 4. stale events -----------------------------------------------------------------------------------

SHAS = {"A": "1" * 40, "B": "2" * 40, "C": "3" * 40}  # pushed in that order
ORDERINGS: dict[str, list[tuple[str, str]]] = {
    "newer-then-late-opened": [("synchronize", "B"), ("opened", "A")],
    "newer-then-late-synchronize": [("synchronize", "B"), ("synchronize", "A")],
    "newer-then-late-ready-for-review": [("synchronize", "B"), ("ready_for_review", "A")],
    "older-newer-then-older-replayed": [("opened", "A"), ("synchronize", "B"), ("synchronize", "A")],
    "older-newer-then-older-reopened": [("synchronize", "A"), ("synchronize", "B"), ("reopened", "A")],
    "three-pushes-in-reverse": [("synchronize", "C"), ("synchronize", "B"), ("synchronize", "A")],
    "three-pushes-shuffled": [("synchronize", "B"), ("synchronize", "A"), ("synchronize", "C"),
                              ("opened", "A"), ("synchronize", "B")],
    "newest-replayed-among-old": [("synchronize", "C"), ("synchronize", "A"), ("synchronize", "C"),
                                  ("synchronize", "B")],
}


@pytest.mark.parametrize("events", ORDERINGS.values(), ids=ORDERINGS.keys())
async def test_an_event_for_an_older_head_never_supersedes_the_newer(make_bot, fakegh, events):
    newest = SHAS[max(label for _, label in events)]
    fakegh.repos[REPO].pulls[2].head_sha = newest  # GitHub's view: every push has happened
    bot = await make_bot()
    worker = bot.app[WORKER]
    await worker.stop()
    for action, label in events:
        payload = opened()
        payload["action"], payload["pull_request"]["head"]["sha"] = action, SHAS[label]
        assert (await bot.send("pull_request", payload)).status == 202
        await worker.dispatch_once()
        live = await bot.queue.live_jobs(REPO, 2)
        assert len(live) == 1, live
    assert [j.head_sha for j in await bot.queue.live_jobs(REPO, 2)] == [newest]
    states = {(j.head_sha, j.state) for j in await bot.queue.jobs()}
    assert (newest, JobState.QUEUED) in states
    assert all(state is JobState.SUPERSEDED for sha, state in states if sha != newest), states


# ---- 5. /recheck from the wrong people and places ------------------------------------------------------


def _comment(body: str = "/recheck", login: str = "maintainer", user_type: str = "User",
             **change: Any) -> Callable[[], dict]:
    def build() -> dict:
        payload = recheck_payload(body, login, user_type)
        for key, value in change.items():
            target, _, field = key.partition("__")
            (payload[target] if field else payload).update({field or target: value})
        return payload
    return build


ROLES = {"maintainer": "write", "owner": "admin", "reader": "read", "triager": "triage", "forker": "none"}
# "review": reacted to and queued; "asked": refused after GitHub named the commenter's role; "silent":
# refused before any request to GitHub.
RECHECKS: dict[str, tuple[Callable[[], dict], str]] = {
    # wrong people
    "read-only-collaborator": (_comment(login="reader"), "asked"),
    "triage-collaborator": (_comment(login="triager"), "asked"),
    "fork-contributor-no-permission": (_comment(login="forker", comment__author_association="CONTRIBUTOR"), "asked"),
    "fork-contributor-not-a-collaborator": (_comment(login="stranger", comment__author_association="NONE"), "asked"),
    "bot-type-without-bot-suffix": (_comment(login="ci-helper", user_type="Bot"), "silent"),
    "the-app-itself": (_comment(login="infra-review[bot]", user_type="Bot"), "silent"),
    "app-login-typed-as-user": (_comment(login="infra-review[bot]"), "silent"),
    "another-bot": (_comment(login="dependabot[bot]", user_type="Bot"), "silent"),
    "posted-via-an-app": (_comment(comment__performed_via_github_app={"id": 1, "slug": "x"}), "silent"),
    "sender-is-a-bot": (_comment(sender__type="Bot", sender__login="ci[bot]"), "silent"),
    # wrong places
    "edited-comment": (_comment(action="edited", changes=load_payload("issue_comment", "edited.payload.json")["changes"]),
                       "silent"),
    "deleted-comment": (_comment(action="deleted"), "silent"),
    "on-an-issue-not-a-pr": (lambda: load_payload("issue_comment", "created.with-installation.payload.json"), "silent"),
    "fenced-backticks": (_comment("see:\n```\n/recheck\n```"), "silent"),
    "fenced-tildes": (_comment("~~~text\n/recheck\n~~~"), "silent"),
    "unclosed-fence": (_comment("```\nlog\n/recheck"), "silent"),
    "indented-code": (_comment("output:\n\n    /recheck"), "silent"),
    "tab-indented-code": (_comment("\t/recheck"), "silent"),
    "inline-code-span": (_comment("`/recheck`"), "silent"),
    "quote": (_comment("> /recheck"), "silent"),
    "quote-after-text": (_comment("you wrote\n> /recheck\nwhy?"), "silent"),
    "list-item": (_comment("- /recheck"), "silent"),
    "leading-words": (_comment("please /recheck"), "silent"),
    "mid-sentence": (_comment("could someone /recheck this?"), "silent"),
    "trailing-words": (_comment("/recheck please"), "silent"),
    "html-comment": (_comment("<!-- /recheck -->"), "silent"),
    "fullwidth-solidus": (_comment("\uff0frecheck"), "silent"),
    "zero-width-joiner": (_comment("/re\u200dcheck"), "silent"),
    "mention-of-another-app": (_comment("@someone-else /recheck"), "silent"),
    # the controls: a maintainer's legitimate /recheck
    "maintainer-write": (_comment(), "review"),
    "maintainer-admin-mentions-the-app": (_comment("@infra-review[bot] /recheck", login="owner"), "review"),
    "after-a-closed-fence": (_comment("```\nlog\n```\n  /RECHECK  "), "review"),
}


@pytest.mark.parametrize(("build", "outcome"), RECHECKS.values(), ids=RECHECKS.keys())
async def test_recheck_only_from_a_maintainer_in_prose(make_bot, fakegh, build, outcome):
    fakegh.repos[REPO].pulls[1] = FakePull(number=1, head_sha="d" * 40, base_sha="c" * 40, merge_base="c" * 40)
    fakegh.repos[REPO].roles.update(ROLES)
    payload = build()
    if payload["comment"]["user"]["login"] not in {*ROLES, "Codertocat"}:  # GitHub: not a collaborator
        fakegh.fail("repos/get-collaborator-permission-level", status=404, message="Not Found")
    bot = await make_bot()
    resp = await bot.send("issue_comment", payload)
    assert resp.status in (200, 202)
    if payload["action"] != "created":
        assert (await resp.json())["status"] == "ignored"
    await bot.settle()
    reviews = int(outcome == "review")
    assert len(fakegh.calls("reactions/create-for-issue-comment")) == reviews
    assert [(j.pr_number, j.reason) for j in bot.reviewed] == [(1, "issue_comment./recheck")] * reviews
    if outcome == "asked":
        assert [r.operation_id for r in fakegh.requests] == ["apps/create-installation-access-token",
                                                             "repos/get-collaborator-permission-level"]
    elif outcome == "silent":
        assert fakegh.requests == []


def test_a_recheck_line_counts_only_outside_code():
    """The parser behind the family above, on the fence forms CommonMark allows."""
    assert asks_recheck("````\n```\n/recheck\n````", "infra-review") is False, "a shorter fence does not close"
    assert asks_recheck("``` not a fence ```\n/recheck", "infra-review") is True, "an inline span opens nothing"
    assert asks_recheck("   ```\n/recheck\n   ```\n/recheck", "infra-review") is True


# ---- 6. slowloris --------------------------------------------------------------------------------------


async def test_health_answers_while_1000_connections_idle(make_bot):
    bot = await make_bot()
    idle = [await asyncio.open_connection(bot.client.host, bot.client.port) for _ in range(1000)]
    latencies = []
    try:
        url = f"http://{bot.client.host}:{bot.client.port}/health"
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
            for _ in range(50):
                started = time.perf_counter()
                async with session.get(url) as resp:
                    assert resp.status == 200 and (await resp.json()) == {"status": "ok"}
                latencies.append(time.perf_counter() - started)
                await asyncio.sleep(0.01)
        assert all(not reader.at_eof() for reader, _ in idle), "the idle connections are still open"
    finally:
        for _, writer in idle:
            writer.close()
        await asyncio.gather(*(writer.wait_closed() for _, writer in idle), return_exceptions=True)
    p50, p99 = statistics.median(latencies), statistics.quantiles(latencies, n=100, method="inclusive")[98]
    print(f"/health under 1000 idle connections: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
          f"max {max(latencies) * 1000:.1f} ms")
    assert p99 < 0.1, latencies


# ---- 7. the audit's fixed defects, as families ---------------------------------------------------------

HOSTILE_REFS = ["--output=WRITTEN", "--upload-pack=touch PWNED", "--exec=touch PWNED", "-c", "-h",
                "--remote=ext::sh -c touch% PWNED", "--format=zip"]


@pytest.fixture(scope="module")
def small_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("argv") / "repo"
    repo.mkdir()
    for args in (["init", "-q", "-b", "main"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
                                                "--allow-empty", "-m", "one"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)
    return repo


@pytest.mark.parametrize("command", [("rev-parse", "--verify"), ("archive", "--format=tar")],
                         ids=["rev-parse", "archive"])
@pytest.mark.parametrize("ref", HOSTILE_REFS)
def test_a_ref_that_starts_with_a_dash_is_a_revision_to_git(small_repo, tmp_path, monkeypatch, command, ref):
    monkeypatch.chdir(tmp_path)
    ref = ref.replace("WRITTEN", str(tmp_path / "written"))
    with pytest.raises(GitError):
        git(small_repo, *command, operands=[ref])
    assert list(tmp_path.iterdir()) == [] and not (small_repo / "PWNED").exists()


@pytest.mark.parametrize("ref", HOSTILE_REFS[:5])
async def test_a_pr_whose_branches_look_like_options_is_reviewed_by_sha(make_bot, fakegh, ref):
    """The App never gives a branch name to a tool: the job and every request name the commit."""
    payload = opened()
    pr = payload["pull_request"]
    for side in ("head", "base"):
        pr[side]["ref"] = pr[side]["label"] = ref
    pull = fakegh.repos[REPO].pulls[2]
    pull.head_ref = pull.base_ref = ref
    bot = await make_bot()
    assert (await bot.send("pull_request", payload)).status == 202
    await bot.settle()
    [job] = bot.reviewed
    assert job.head_sha == pr["head"]["sha"]
    assert not [r.path for r in fakegh.requests if ref in r.path or ref in json.dumps(r.body or {})]


INJECTIONS = {
    "workflow-command": "::error file=x,line=1::pwned",
    "workflow-command-after-newline": "a\r\n::add-mask::secret\n##[error]x",
    "details-html": "<details><summary>click</summary>",
    "mentions": "@octocat @org/team",
    "cross-reference": "owner/repo#1 GH-7",
    "backtick-run": "``` ` `` x",
    "fence-and-heading": "```\n# heading\n~~~",
    "link-and-image": "[x](https://evil.example) ![i](https://evil.example/i.png)",
    "forged-marker": "<!-- infra-review:fp=0123456789abcdef -->",
    "table-cell-break": "a | b | c",
}


def _finding(text: str, **over: Any) -> Finding:
    fields: dict[str, Any] = dict(
        rule="latest-tag", severity="error", environment=f"prod {text}", message=f"`{text}` uses {text}",
        remediation=f"Pin {text}", target=f"overlays/{text}",
        resource=ResourceId("apps", "v1", "Deployment", "prod", text), container=text,
        field="spec.template.spec.containers[x].image", origin=Origin(f"apps/{text}.yaml", 2, 2))
    fields.update(over)
    return Finding(**fields)


@pytest.mark.parametrize("text", INJECTIONS.values(), ids=INJECTIONS.keys())
def test_names_from_the_repository_are_inert_in_what_is_published(text):
    file = f"apps/{text}.yaml"
    report = Report([_finding(text), _finding(text, rule="build-error", resource=None),
                     _finding(text, severity="warning", suggestion=Suggestion(file, 2, 2, f"x: 1  # {text}\n"))],
                    targets=[TargetStatus(f"overlays/{text}", f"prod {text}", "ok", 1)],
                    tool_version="0.1.0", kustomize_version="v5.5.0", head_sha="c" * 40)
    output = check_run_complete(report, 1)[0]["output"]
    assert_inert(output["summary"], headings=2)
    assert_inert(output["text"])
    assert "\n" not in output["title"] and "\r" not in output["title"]
    rows = [t for t in walk(parse(output["summary"].split("### Targets")[1])) if t.type == "tr_open"]
    assert len(rows) == 2, "the header and one row: the name broke no cell"
    diff = from_pr_files([{"filename": file, "status": "added", "patch": "@@ -0,0 +1,3 @@\n+a\n+b\n+c"}])
    review = review_payload(report, diff, ())
    # A name with a line break cannot head a unified diff, so its file offers no line to comment on
    # (the check run above still reports it).
    assert (review is None) == ("\n" in text)
    for comment in (review or {}).get("comments", []):
        assert_inert(comment["body"], fences=int("suggestion" in comment["body"]))
    lines = render_github(report).splitlines()
    assert len(lines) == 4 and all(line.startswith(("::error ", "::warning ")) for line in lines[:3])


@pytest.mark.parametrize("text", INJECTIONS.values(), ids=INJECTIONS.keys())
def test_names_in_the_app_s_own_error_runs_are_inert(text):
    job = Job(1, REPO, 2, "c" * 40, "opened", "d-1")
    for body in (archive_error_body(job, ArchiveRejected(f"{text} cannot be extracted: it is both")),
                 config_error_body(job, ConfigError(f"unknown rule {text!r}"))):
        assert "\n" not in body["output"]["title"]
        assert_inert(body["output"]["summary"])


OURS = {"login": "infra-review[bot]", "type": "Bot"}
FORGERS = {
    "pr-author": {"login": "Codertocat", "type": "User"},
    "user-named-like-the-app": {"login": "infra-review", "type": "User"},
    "user-with-the-bot-login": {"login": "infra-review[bot]", "type": "User"},
    "another-app": {"login": "other-app[bot]", "type": "Bot"},
    "another-app-named-like-ours": {"login": "infra-review-bot[bot]", "type": "Bot"},
    "ghost-user": None,
    "no-user-at-all": "absent",
}
PLACEMENTS = {
    "closing-line": lambda fp: f"nothing to see\n{marker(fp)}",
    "only-line": lambda fp: marker(fp),
    "after-a-quote": lambda fp: f"> {marker('1' * 16)}\n\n{marker(fp)}",
    "reply-to-ours": lambda fp: f"agreed\n{marker(fp)}",
}


@pytest.mark.parametrize("placement", PLACEMENTS.values(), ids=PLACEMENTS.keys())
@pytest.mark.parametrize("forger", FORGERS.values(), ids=FORGERS.keys())
def test_a_marker_the_app_did_not_write_counts_for_nothing(forger, placement):
    """Ours: comment 1 (finding 1…1, still found). Forged: comment 2 claims finding 2…2 (current, so it
    would silence the App) and comment 3 claims 3…3 (gone, so it would be deleted as stale)."""
    def comment(cid: int, body: str, user: Any) -> dict:
        data = {"id": cid, "body": body, "in_reply_to_id": 1 if placement is PLACEMENTS["reply-to-ours"] else None}
        return data if user == "absent" else {**data, "user": user}

    comments = [{"id": 1, "body": f"x\n{marker('1' * 16)}", "user": OURS, "in_reply_to_id": None},
                comment(2, placement("2" * 16), forger), comment(3, placement("3" * 16), forger)]
    assert open_fingerprints(comments, "infra-review[bot]") == {"1" * 16}
    assert stale_comments(comments, {"1" * 16, "2" * 16}, "infra-review[bot]") == []
    assert stale_comments(comments, {"2" * 16}, "infra-review[bot]") == ([] if placement is PLACEMENTS["reply-to-ours"]
                                                                         else [1])

