"""Security audit (issue 7) regressions at the app's edge, against the real app on a TCP port."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import replace

import pytest

from bot.app.server import WORKER
from tests.conftest import load_payload, signed


def large_payload(size: int = 300 * 1024) -> dict:
    """A real `opened` payload whose PR description makes it `size` bytes or more."""
    payload = load_payload("pull_request", "opened.payload.json")
    payload["pull_request"]["body"] = "A long description.\n" * (size // 20)
    return payload


async def post_slowly(client, body: bytes, headers: dict[str, str], *, chunked: bool = False,
                      piece: int = 8192, pause: float = 0.005) -> tuple[int, dict]:
    """POST /webhook over a raw socket in small writes with pauses, as a congested network delivers it."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}"
    head = ["POST /webhook HTTP/1.1", f"Host: {client.host}:{client.port}", "Connection: close", framing,
            *(f"{k}: {v}" for k, v in headers.items())]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
    try:
        for start in range(0, len(body), piece):
            part = body[start:start + piece]
            writer.write(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
            await writer.drain()
            await asyncio.sleep(pause)
        if chunked:
            writer.write(b"0\r\n\r\n")
            await writer.drain()
    except ConnectionError:
        pass  # the server may answer (413) and close before the whole body is sent
    response = await reader.read()
    writer.close()
    status = int(response.split(b" ", 2)[1])
    answer = response.split(b"\r\n\r\n", 1)[1]
    if b"chunked" in response.split(b"\r\n\r\n", 1)[0].lower():
        answer = b"".join(re.findall(rb"[0-9a-f]+\r\n(.*?)\r\n", answer, re.S))
    return status, json.loads(answer)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_signed_body_arriving_in_many_segments_is_accepted(make_bot, chunked):
    bot = await make_bot()
    await bot.app[WORKER].stop()
    body, headers = signed(large_payload(), "pull_request")
    assert len(body) > 300 * 1024
    status, answer = await post_slowly(bot.client, body, headers, chunked=chunked)
    assert (status, answer) == (202, {"status": "queued"})
    stored = await bot.queue.next_delivery()
    assert stored.payload.encode() == body


async def test_chunked_body_over_the_cap_is_413_without_content_length(make_bot, settings):
    bot = await make_bot(settings_override=replace(settings, max_body_bytes=64 * 1024))
    body, headers = signed(large_payload(), "pull_request")
    status, answer = await post_slowly(bot.client, body, headers, chunked=True)
    assert status == 413 and answer == {"error": "payload too large"}
    assert await bot.queue.next_delivery() is None


@pytest.mark.parametrize("encode", [
    lambda text: text.encode("utf-16"),
    lambda text: text.encode("utf-16-le"),
    lambda text: text.encode("utf-32"),
    lambda text: b"\xef\xbb\xbf" + text.encode(),
], ids=["utf-16", "utf-16-no-bom", "utf-32", "utf-8-bom"])
async def test_signed_body_that_is_not_plain_utf8_json_is_400(make_bot, encode):
    bot = await make_bot()
    body, headers = signed(encode(json.dumps(load_payload("pull_request", "opened.payload.json"))),
                           "pull_request")
    resp = await bot.client.post("/webhook", data=body, headers=headers)
    assert resp.status == 400, await resp.text()
    assert "error" in await resp.json()
    assert await bot.queue.next_delivery() is None
    await bot.settle()
    assert bot.reviewed == [] and await bot.queue.jobs() == []


async def test_unsigned_requests_cannot_grow_the_metric_series(make_bot):
    bot = await make_bot()
    body, headers = signed(b"{}", "pull_request")
    headers["X-Hub-Signature-256"] = "sha256=" + "0" * 64
    for n in range(300):
        await bot.client.post("/webhook", data=body, headers={**headers, "X-GitHub-Event": f"bogus-{n}"})
    await bot.client.post("/webhook", data=body, headers=headers)
    text = await (await bot.client.get("/metrics")).text()
    series = [line for line in text.splitlines() if line.startswith("infra_review_webhook_deliveries_total{")]
    assert series == ['infra_review_webhook_deliveries_total{event="other",outcome="rejected_401"} 300.0',
                      'infra_review_webhook_deliveries_total{event="pull_request",outcome="rejected_401"} 1.0']
    assert "bogus" not in text


def test_review_duration_histogram_is_cumulative_counts():
    from bot.app.metrics import Metrics

    metrics = Metrics()
    for seconds in (0.5, 3, 3, 1000):
        metrics.observe_review(seconds)
    text = metrics.render()
    buckets = dict(re.findall(r'infra_review_review_duration_seconds_bucket\{le="([^"]+)"\} ([\d.]+)', text))
    assert [float(buckets[b]) for b in ("0.5", "2.0", "5.0", "600.0", "+Inf")] == [1, 1, 3, 3, 4]
    assert "infra_review_review_duration_seconds_sum 1006.5" in text
    assert "infra_review_review_duration_seconds_count 4.0" in text


def test_github_endpoints_are_bounded_labels():
    from bot.app.metrics import endpoint

    assert endpoint("post", "https://api.github.com/repos/octo/hello-world/check-runs/1234") == (
        "POST /repos/{owner}/{repo}/check-runs/{n}")
    assert endpoint("GET", "https://api.github.com/repos/a/b/tarball/" + "ab12" * 10) == (
        "GET /repos/{owner}/{repo}/tarball/{sha}")
    assert endpoint("GET", "/repos/a/b/contents/.github/infra-review.yml?ref=main") == (
        "GET /repos/{owner}/{repo}/contents/{x}/{x}")
    assert endpoint("POST", "/app/installations/99/access_tokens") == "POST /app/installations/{n}/access_tokens"


def test_only_the_apps_bot_user_owns_fingerprint_markers():
    from bot.publish.github import marker, open_fingerprints, stale_comments

    ours = {"login": "infra-review[bot]", "type": "Bot"}
    body = f"x\n{marker('1' * 16)}"
    comments = [
        {"id": 1, "body": body, "user": ours},
        {"id": 2, "body": f"y\n{marker('2' * 16)}", "user": {"login": "octocat", "type": "User"}},
        {"id": 3, "body": f"z\n{marker('3' * 16)}", "user": {"login": "other-app[bot]", "type": "Bot"}},
        {"id": 4, "body": f"w\n{marker('4' * 16)}", "user": {"login": "infra-review[bot]", "type": "User"}},
        {"id": 5, "body": f"v\n{marker('5' * 16)}", "user": None},
    ]
    assert open_fingerprints(comments, "infra-review[bot]") == {"1" * 16}
    assert stale_comments(comments, set(), "infra-review[bot]") == [1]
    assert stale_comments(comments, {"1" * 16}, "infra-review[bot]") == []
