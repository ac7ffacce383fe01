"""The client against the fake GitHub: retries, rate limits, pacing, token refresh, pagination."""

from __future__ import annotations

import asyncio

import pytest
from gidgethub import BadRequest

from bot.app.client import RetryPolicy

REPO_VARS = {"owner": "Codertocat", "repo": "Hello-World"}
CHECK = {"name": "infra-review", "head_sha": "ec26c3e57ca3a959ca5aad62de7213c562f8c821", "status": "in_progress"}


async def test_token_is_fetched_once_and_reused(github, fakegh):
    gh = github(1)
    await gh.getitem("/repos/{owner}/{repo}", REPO_VARS)
    await gh.getitem("/repos/{owner}/{repo}/pulls/{pull_number}", {**REPO_VARS, "pull_number": 2})
    assert len(fakegh.calls("apps/create-installation-access-token")) == 1
    assert fakegh.calls("apps/create-installation-access-token")[0].path == "/app/installations/1/access_tokens"


async def test_502s_are_retried_with_backoff(github, fakegh, fake_time):
    fakegh.fail("pulls/get", status=502, times=2)
    pr = await github(1).getitem("/repos/{owner}/{repo}/pulls/{pull_number}", {**REPO_VARS, "pull_number": 2})
    assert pr["number"] == 2
    assert [r.status for r in fakegh.calls("pulls/get")] == [502, 502, 200]
    assert fake_time.sleeps == [1.0, 2.0]


async def test_persistent_5xx_gives_up(github, fakegh):
    fakegh.fail("pulls/get", status=503, times=10)
    with pytest.raises(Exception) as info:
        await github(1).getitem("/repos/{owner}/{repo}/pulls/{pull_number}", {**REPO_VARS, "pull_number": 2})
    assert getattr(info.value, "status_code", None) == 503
    assert len(fakegh.calls("pulls/get")) == RetryPolicy().attempts


async def test_secondary_rate_limit_honours_retry_after(github, fakegh, fake_time):
    fakegh.secondary_rate_limit("checks/create", retry_after=17)
    run = await github(1).post("/repos/{owner}/{repo}/check-runs", REPO_VARS, data=CHECK)
    assert run["status"] == "in_progress"
    assert [r.status for r in fakegh.calls("checks/create")] == [403, 201]
    assert 17 in fake_time.sleeps


async def test_secondary_rate_limit_without_retry_after_waits_a_minute(github, fakegh, fake_time):
    fakegh.secondary_rate_limit("checks/create", retry_after=None)
    await github(1).post("/repos/{owner}/{repo}/check-runs", REPO_VARS, data=CHECK)
    assert max(fake_time.sleeps) >= 60


async def test_plain_403_is_not_retried(github, fakegh):
    fakegh.fail("pulls/get", status=403, message="Resource not accessible by integration")
    with pytest.raises(BadRequest):
        await github(1).getitem("/repos/{owner}/{repo}/pulls/{pull_number}", {**REPO_VARS, "pull_number": 2})
    assert len(fakegh.calls("pulls/get")) == 1


async def test_exhausted_primary_limit_waits_for_reset(github, fakegh, fake_time):
    gh = github(1)
    await gh.getitem("/repos/{owner}/{repo}", REPO_VARS)
    fakegh.exhaust_rate_limit(reset_at=int(fake_time.now) + 120)
    await gh.getitem("/repos/{owner}/{repo}", REPO_VARS)
    assert fake_time.sleeps == []
    await gh.getitem("/repos/{owner}/{repo}", REPO_VARS)
    assert len(fake_time.sleeps) == 1 and 120 <= fake_time.sleeps[0] <= 122


async def test_401_refreshes_the_token_once(github, fakegh):
    gh = github(1)
    await gh.getitem("/repos/{owner}/{repo}", REPO_VARS)
    fakegh.expire_tokens()
    await gh.getitem("/repos/{owner}/{repo}", REPO_VARS)
    assert [r.status for r in fakegh.calls("repos/get")] == [200, 401, 200]
    assert len(fakegh.calls("apps/create-installation-access-token")) == 2


async def test_requests_refused_together_share_one_new_token(github, fakegh):
    gh = github(1)
    await gh.getitem("/repos/{owner}/{repo}", REPO_VARS)
    fakegh.expire_tokens()
    await asyncio.gather(*(gh.getitem("/repos/{owner}/{repo}", REPO_VARS) for _ in range(5)))
    assert sorted(r.status for r in fakegh.calls("repos/get")) == [200] * 6 + [401] * 5
    assert len(fakegh.calls("apps/create-installation-access-token")) == 2, "one refresh for the five"


async def test_mutations_are_paced_per_installation(github, fakegh, fake_time):
    gh = github(1)
    for _ in range(3):
        await gh.post("/repos/{owner}/{repo}/check-runs", REPO_VARS, data=CHECK)
    paced = [s for s in fake_time.sleeps if 0.5 < s <= 1.0]
    assert len(paced) == 2


async def test_pagination_follows_link_headers(github, fakegh):
    pull = fakegh.repos["Codertocat/Hello-World"].pulls[2]
    pull.files = [{"filename": f"f{i}.yaml", "status": "added", "patch": "@@ -0,0 +1 @@\n+x"} for i in range(250)]
    names = [f["filename"] async for f in github(1).getiter(
        "/repos/{owner}/{repo}/pulls/{pull_number}/files{?per_page}", {**REPO_VARS, "pull_number": 2, "per_page": 100})]
    assert names == [f"f{i}.yaml" for i in range(250)]
    assert [r.query.get("page") for r in fakegh.calls("pulls/list-files")] == [None, "2", "3"]
