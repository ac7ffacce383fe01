"""Webhook intake: signature first, size limits, persistence before the answer, redelivery once."""

from __future__ import annotations

import json

import pytest

from bot.app.server import WORKER
from bot.app.webhooks import WebhookRejected, parse_event, sign, verify_signature
from tests.conftest import SECRET, load_payload, signed


def test_verify_signature_constant_time_over_raw_bytes():
    body = json.dumps(load_payload("ping", "payload.json")).encode()
    verify_signature(body, sign(body, SECRET), SECRET)
    for bad in (None, "", sign(body, "other"), sign(body + b" ", SECRET), "sha1=abc"):
        with pytest.raises(WebhookRejected) as info:
            verify_signature(body, bad, SECRET)
        assert info.value.status == 401


def test_parse_checks_size_before_signature():
    body, headers = signed(load_payload("pull_request", "opened.payload.json"), "pull_request")
    headers = {k.lower(): v for k, v in headers.items()}
    event = parse_event(headers, body, secret=SECRET, max_bytes=len(body))
    assert (event.event, event.data["action"]) == ("pull_request", "opened")
    with pytest.raises(WebhookRejected) as info:
        parse_event({**headers, "x-hub-signature-256": "sha256=00"}, body, secret=SECRET, max_bytes=len(body) - 1)
    assert info.value.status == 413


@pytest.mark.parametrize("signature", [None, "sha256=" + "0" * 64])
async def test_bad_or_missing_signature_is_401_and_no_work(make_bot, fakegh, signature):
    bot = await make_bot()
    body, headers = signed(load_payload("pull_request", "opened.payload.json"), "pull_request")
    if signature is None:
        del headers["X-Hub-Signature-256"]
    else:
        headers["X-Hub-Signature-256"] = signature
    resp = await bot.client.post("/webhook", data=body, headers=headers)
    assert resp.status == 401
    assert await bot.queue.next_delivery() is None
    assert await bot.queue.jobs() == []
    assert fakegh.requests == []


async def test_oversized_body_is_413(make_bot, settings):
    from dataclasses import replace

    small = replace(settings, max_body_bytes=2048)
    bot = await make_bot(settings_override=small)
    resp = await bot.send("pull_request", load_payload("pull_request", "opened.payload.json"))
    assert resp.status == 413
    assert await bot.queue.next_delivery() is None


async def test_delivery_persisted_before_answer_and_redelivery_processed_once(make_bot, fakegh):
    bot = await make_bot()
    await bot.app[WORKER].stop()
    payload = load_payload("pull_request", "opened.payload.json")
    first = await bot.send("pull_request", payload, delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958")
    assert first.status == 202
    stored = await bot.queue.next_delivery()
    assert stored.delivery_id == "72d3162e-cc78-11e3-81ab-4c9367dc0958" and stored.event == "pull_request"
    again = await bot.send("pull_request", payload, delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958")
    assert again.status == 200 and (await again.json())["status"] == "duplicate"
    await bot.app[WORKER].start()
    await bot.settle()
    assert len(bot.reviewed) == 1
    assert len(fakegh.calls("checks/create")) == 1


async def test_unrouted_event_is_acknowledged_without_storing(make_bot):
    bot = await make_bot()
    resp = await bot.send("ping", load_payload("ping", "payload.json"))
    assert resp.status == 200 and (await resp.json())["status"] == "ignored"
    assert await bot.queue.next_delivery() is None


async def test_health_ready_metrics(make_bot):
    bot = await make_bot()
    assert (await bot.client.get("/health")).status == 200
    ready = await bot.client.get("/ready")
    assert ready.status == 200, await ready.text()
    await bot.send("pull_request", load_payload("pull_request", "opened.payload.json"))
    bad_body, headers = signed(b"{}", "pull_request")
    headers["X-Hub-Signature-256"] = "sha256=" + "1" * 64
    await bot.client.post("/webhook", data=bad_body, headers=headers)
    await bot.settle()
    resp = await bot.client.get("/metrics")
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = scrape(await resp.text())
    assert samples[("infra_review_webhook_deliveries_total", (("event", "pull_request"), ("outcome", "queued")))] == 1
    assert samples[("infra_review_webhook_deliveries_total",
                    (("event", "pull_request"), ("outcome", "rejected_401")))] == 1
    assert samples[("infra_review_queue_jobs", (("state", "done"),))] == 1
    assert samples[("infra_review_github_requests_total", (("endpoint", "POST /repos/{owner}/{repo}/check-runs"),
                                                           ("method", "POST"), ("status", "201")))] == 1
    assert samples[("infra_review_review_duration_seconds_count", ())] == 1


def scrape(text: str) -> dict[tuple[str, tuple], float]:
    """/metrics parsed by prometheus-client's own parser: (sample name, sorted labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_ready_fails_when_queue_unusable(make_bot):
    bot = await make_bot()
    await bot.queue.close()
    resp = await bot.client.get("/ready")
    assert resp.status == 503 and "queue" in (await resp.json())["problems"][0]
    await bot.queue.open()


async def test_a_review_s_outcome_is_kept_for_the_status_page_and_counted(make_bot):
    """What a review returns (bot.app.outcome) is stored with its job and counted in /metrics: renders by
    renderer and cache, findings by rule and severity, the time of each stage. A job given up shows with
    its error."""
    from collections import Counter

    from bot.app.outcome import Outcome
    from bot.queue.base import Job

    async def review(job, gh):
        return Outcome("failure", 2, "https://github.com/o/r/runs/9", 3.5, {"render (kustomize)": 1.5, "rules": 0.2},
                       Counter({("kustomize", True): 3, ("helm", False): 1}),
                       Counter({("latest-tag", "error"): 2}))

    bot = await make_bot(review)
    await bot.send("pull_request", load_payload("pull_request", "opened.payload.json"))
    await bot.settle()
    (record,) = await bot.queue.recent()
    assert record.summary == {"conclusion": "failure", "findings": 2, "check_run_url": "https://github.com/o/r/runs/9",
                              "seconds": 3.5}
    samples = scrape(await (await bot.client.get("/metrics")).text())
    assert samples[("infra_review_renders_total", (("cache", "hit"), ("renderer", "kustomize")))] == 3
    assert samples[("infra_review_renders_total", (("cache", "miss"), ("renderer", "helm")))] == 1
    assert samples[("infra_review_findings_total", (("rule", "latest-tag"), ("severity", "error")))] == 2
    assert samples[("infra_review_review_stage_seconds_count", (("stage", "rules"),))] == 1
    assert samples[("infra_review_queue_dead_letters", ())] == 0

    job = await bot.queue.enqueue(Job(1, "o/broken", 7, "b" * 40, "opened", "d-9"))
    claimed = await bot.queue.claim()
    assert claimed is not None and claimed.id == job.id
    await bot.queue.dead_letter(job.key, f"GitHubBroken: 502 five times (token ghs_{'x' * 36}, secret {SECRET})")
    page = await (await bot.client.get("/")).text()
    assert "o/broken" in page and "GitHubBroken: 502 five times" in page and "Codertocat/Hello-World" in page
    assert "ghs_" not in page and SECRET not in page and "[redacted]" in page, "errors are scrubbed like logs"
    assert scrape(await (await bot.client.get("/metrics")).text())[("infra_review_queue_dead_letters", ())] == 1
