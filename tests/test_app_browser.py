"""The service's pages in a real browser (issue 14): first run through GitHub's App-manifest flow
against the fake GitHub, then the operators' status page showing the review that ran.

Steps of the setup test, each with a screenshot under the test's temporary folder:
1. `/` of a service without credentials shows the setup page with its one button;
2. the button posts the manifest to the fake GitHub's "new App" page, which validates it and
   redirects back to `/setup/callback` with a code and the state;
3. the service exchanges the code (`POST /app-manifests/{code}/conversions`, validated against the
   OpenAPI description), writes `.env` with mode 0600, and takes the credentials into use: the page
   shows the install link;
4. a webhook signed with the new secret is accepted and reviewed; `/` is now the status page and
   shows that review; the setup callback is gone (404).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import stat
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from browser import open_page
from conftest import APP_ID, load_payload, signed
from loopback import free_port

from bot.app.outcome import Outcome
from bot.app.server import create_app
from bot.app.settings import Settings, load_env_file, load_settings
from bot.queue.sqlite import SqliteQueue


async def until(check: Any, timeout: float = 20.0) -> None:
    """Wait until `check()` (a bool, or an awaitable of one) is true."""
    for _ in range(int(timeout / 0.05)):
        done = check()
        if await done if inspect.isawaitable(done) else done:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


@pytest.fixture
async def unconfigured(aiohttp_server: Any, fakegh: Any, tmp_path: Path) -> Any:
    """The service as first started: no App credentials, PUBLIC_URL its own address."""
    port = free_port()
    settings = Settings(app_id=None, private_key="", webhook_secret="", api_url=fakegh.url,
                        queue_url=f"sqlite:///{tmp_path / 'queue.sqlite3'}", public_url=f"http://127.0.0.1:{port}",
                        env_file=str(tmp_path / "secrets" / ".env"), max_failures=1)
    reviewed: list[Any] = []

    async def review(job: Any, gh: Any) -> Outcome:
        reviewed.append(job)
        return Outcome("failure", 3, "https://github.com/o/r/runs/1", 1.25)

    async def fail(job: Any, gh: Any, exc: BaseException) -> None:
        raise AssertionError(f"the review failed: {exc}")

    app = create_app(settings, queue=SqliteQueue(str(tmp_path / "queue.sqlite3")), review=review, fail=fail,
                     poll=0.05, watch_interval=0.02)
    server = await aiohttp_server(app, port=port)
    server.reviewed = reviewed
    server.base = f"http://127.0.0.1:{port}"
    return server


async def test_register_the_app_from_the_browser_then_review(unconfigured: Any, fakegh: Any, tmp_path: Path) -> None:
    base = unconfigured.base
    async with aiohttp.ClientSession() as http:
        refused = await http.post(f"{base}/webhook", data=b"{}", headers={"X-GitHub-Event": "ping"})
        assert refused.status == 503, "no webhook is taken before the App exists"
    async for page, shot in open_page(tmp_path):
        await page.goto(f"{base}/")
        assert await page.title() == "Set up infra-review"
        assert f"{base}/webhook" in await page.inner_text("body")
        await shot("setup-page")
        async with page.expect_navigation(url=f"{base}/setup/callback?**"):
            await page.click("#register")
        await shot("registered")
        assert "is registered" in await page.inner_text("h1")
        assert await page.get_attribute("#install", "href") == "https://github.com/apps/infra-review/installations/new"

        env_file = tmp_path / "secrets" / ".env"
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
        stored = load_env_file(env_file)
        assert stored["GITHUB_APP_ID"] == str(APP_ID) and stored["GITHUB_PRIVATE_KEY"] == fakegh.private_key
        assert stored["GITHUB_WEBHOOK_SECRET"] == fakegh.webhook_secret
        later = load_settings({"ENV_FILE": str(env_file)}, allow_setup=True)
        assert later.configured and later.app_id == APP_ID, "the next start reads the same credentials"
        assert [r.operation_id for r in fakegh.requests] == ["apps/create-from-manifest"]
        assert fakegh.calls("apps/create-from-manifest")[0].body is None

        body, headers = signed(load_payload("pull_request", "opened.payload.json"), "pull_request",
                               secret=fakegh.webhook_secret)
        async with aiohttp.ClientSession() as http:
            accepted = await http.post(f"{base}/webhook", data=body, headers=headers)
            assert accepted.status == 202, await accepted.text()
            await until(lambda: bool(unconfigured.reviewed))
            gone = await http.get(f"{base}/setup/callback?code=x&state=y")
            assert gone.status == 404, "the setup flow ends once the App exists"

        await until(functools.partial(_has_review, page, base))
        await shot("status-page")
        reviews = await page.inner_text("#reviews")
        assert "Codertocat/Hello-World" in reviews and "failure" in reviews and "1.2 s" in reviews
        assert await page.get_attribute("#reviews a", "href") == "https://github.com/o/r/runs/1"
        assert "infra-review" in await page.inner_text("#versions")
    assert sorted(p.name for p in (tmp_path / "screenshots").iterdir()) == [
        "01-setup-page.png", "02-registered.png", "03-status-page.png"]


async def _has_review(page: Any, base: str) -> bool:
    await page.goto(f"{base}/")
    return await page.title() == "infra-review status" and "No review has finished yet" not in await page.inner_text(
        "#reviews")


async def test_the_status_page_can_be_turned_off_and_setup_refuses_a_foreign_state(
        unconfigured: Any, aiohttp_server: Any, fakegh: Any, private_key: str, tmp_path: Path) -> None:
    async with aiohttp.ClientSession() as http:
        forged = await http.get(f"{unconfigured.base}/setup/callback?code=abc&state=forged")
        assert forged.status == 400 and fakegh.calls("apps/create-from-manifest") == []
        off = Settings(app_id=APP_ID, private_key=private_key, webhook_secret="s" * 20, api_url=fakegh.url,
                       queue_url=f"sqlite:///{tmp_path / 'q2.sqlite3'}", status_page=False)

        async def nothing(*_: Any) -> None:
            return None

        server = await aiohttp_server(create_app(off, queue=SqliteQueue(str(tmp_path / "q2.sqlite3")),
                                                 review=nothing, fail=nothing))
        base = str(server.make_url("")).rstrip("/")
        assert (await http.get(f"{base}/")).status == 404
        assert (await http.get(f"{base}/setup/callback?code=a&state=b")).status == 404
    assert not os.path.exists(tmp_path / "secrets" / ".env")
