"""What operators see of the service (issue 14): JSON logs with the review's identity and nothing
secret, the App manifest, the pages' escaping."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest

from bot.app.logs import REDACTED, configure_logging, log_context
from bot.app.manifest import EVENTS, PERMISSIONS, SENT_TO_EVERY_APP, app_manifest, main, manifest_yaml
from bot.app.pages import Status, setup_page, status_page

PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx\n-----END RSA PRIVATE KEY-----"


@pytest.fixture
def json_log():
    stream = io.StringIO()
    handler = configure_logging("DEBUG", "json", stream, secrets=["my-webhook-secret-value"])
    yield lambda: [row for row in map(json.loads, stream.getvalue().splitlines()) if row["logger"] != "asyncio"]
    logging.getLogger().removeHandler(handler)


def test_every_line_of_a_review_carries_its_identity_across_tasks_and_threads(json_log) -> None:
    log = logging.getLogger("bot.test")

    async def review() -> None:
        with log_context(delivery="d-1", installation=7, repository="o/r", pr=42, sha="abc123"):
            log.info("rendering")
            await asyncio.to_thread(log.info, "in the rendering thread")
            await asyncio.create_task(asyncio.sleep(0))
            await asyncio.gather(asyncio.to_thread(log.warning, "in a task's thread"))
        log.info("after the review")

    asyncio.run(review())
    lines = json_log()
    identity = {"delivery": "d-1", "installation": 7, "repository": "o/r", "pr": 42, "sha": "abc123"}
    assert [line["message"] for line in lines[:3]] == ["rendering", "in the rendering thread", "in a task's thread"]
    for line in lines[:3]:
        assert {k: line[k] for k in identity} == identity and line["logger"] == "bot.test"
        assert line["level"] in ("info", "warning") and line["time"].endswith("Z")
    assert "delivery" not in lines[3], "the context ends with the review"


@pytest.mark.parametrize("secret", [
    "ghs_16CharsAtLeastABCDEFGH12", "ghp_abcdefghijklmnopqrstuvwx", "github_pat_11ABCDEFG0123456789_abcdefghij",
    "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiIxMjMifQ.c2lnbmF0dXJlLXBhcnQ", PEM, "my-webhook-secret-value",
])
def test_no_token_or_key_is_ever_written(json_log, secret: str) -> None:
    log = logging.getLogger("bot.test")
    log.warning("request failed with %s", secret)
    try:
        raise RuntimeError(f"Authorization: token {secret}")
    except RuntimeError:
        log.exception("and in a traceback")
    text = json.dumps(json_log())
    assert secret.splitlines()[1 if "\n" in secret else 0] not in text
    assert REDACTED in text


def test_text_on_a_terminal_json_elsewhere() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    for stream, parses in ((Tty(), False), (io.StringIO(), True)):
        handler = configure_logging("INFO", "auto", stream)
        with log_context(repository="o/r", pr=1):
            logging.getLogger("bot.x").info("hello")
        logging.getLogger().removeHandler(handler)
        line = stream.getvalue().strip()
        if parses:
            assert json.loads(line)["repository"] == "o/r"
        else:
            assert line.endswith("hello [repository=o/r pr=1]")


def test_the_manifest_asks_for_the_minimum_and_the_events_the_handlers_route() -> None:
    from bot.app.handlers import EVENTS as HANDLED

    manifest = app_manifest("https://review.example.com/")
    assert manifest["default_permissions"] == {"checks": "write", "pull_requests": "write", "contents": "read",
                                               "issues": "write", "metadata": "read"} == PERMISSIONS
    assert set(EVENTS) | SENT_TO_EVERY_APP == set(HANDLED)
    assert manifest["hook_attributes"]["url"] == "https://review.example.com/webhook"
    assert manifest["redirect_url"] == "https://review.example.com/setup/callback" and manifest["public"] is False
    assert main(["--check"]) == 0, "deploy/github-app.yml is generated: run `python -m bot.app.manifest`"
    assert "pull_requests: write" in manifest_yaml()


def test_pages_escape_what_they_show() -> None:
    hostile = '<script>alert(1)</script>"'
    status = Status("0.1.0", "v5.5.0", "v4.2.3", 1, 0, 5.0, 1,
                    reviews=[{"repo": hostile, "pr_number": 1, "head_sha": "a" * 40, "state": "done",
                              "finished_at": 1.0, "summary": {"conclusion": hostile, "findings": 3, "seconds": 2.5,
                                                              "check_run_url": 'javascript:"x'}}],
                    dead_letters=[{"repo": "o/r", "pr_number": 2, "failures": 5, "error": hostile, "at": 1.0}])
    html = status_page(status)
    assert "<script>" not in html and "&lt;script&gt;" in html and 'href="javascript:&quot;x"' in html
    form = setup_page("https://github.com/settings/apps/new?state=s", app_manifest("https://x.example"))
    assert 'name="manifest" value="{&quot;name&quot;: &quot;infra-review&quot;' in form
