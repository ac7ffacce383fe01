"""Settings from the environment, the App JWT and the installation token cache."""

from __future__ import annotations

import jwt
import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from bot.app.auth import TokenCache, app_jwt, parse_expires_at
from bot.app.settings import SettingsError, load_settings


def env(private_key: str, **extra: str) -> dict[str, str]:
    return {"GITHUB_APP_ID": "4242", "GITHUB_PRIVATE_KEY": private_key, "GITHUB_WEBHOOK_SECRET": "hush", **extra}


def test_defaults_and_secrets_not_in_repr(private_key):
    s = load_settings(env(private_key))
    assert (s.app_id, s.api_url, s.port, s.queue_url) == (4242, "https://api.github.com", 8080,
                                                           "sqlite:///./infra-review.sqlite3")
    assert "hush" not in repr(s) and "PRIVATE" not in repr(s)


def test_queue_retention_defaults_to_a_week_and_never_below_githubs_redelivery_window(private_key):
    assert load_settings(env(private_key)).queue_retention == 7 * 86_400
    assert load_settings(env(private_key, QUEUE_RETENTION_DAYS="30")).queue_retention == 30 * 86_400
    assert load_settings(env(private_key, QUEUE_RETENTION_DAYS="3")).queue_retention == 3 * 86_400


def test_private_key_from_path_and_escaped_newlines(private_key, tmp_path):
    path = tmp_path / "key.pem"
    path.write_text(private_key)
    values = env(private_key, GITHUB_PRIVATE_KEY_PATH=str(path))
    del values["GITHUB_PRIVATE_KEY"]
    assert load_settings(values).private_key == private_key
    escaped = private_key.strip().replace("\n", "\\n")
    assert load_settings(env(escaped)).private_key.startswith("-----BEGIN")


@pytest.mark.parametrize(("change", "named"), [
    ({"GITHUB_APP_ID": ""}, "GITHUB_APP_ID"),
    ({"GITHUB_APP_ID": "abc"}, "GITHUB_APP_ID"),
    ({"GITHUB_WEBHOOK_SECRET": ""}, "GITHUB_WEBHOOK_SECRET"),
    ({"GITHUB_PRIVATE_KEY": "not a key"}, "GITHUB_PRIVATE_KEY"),
    ({"PORT": "70000"}, "PORT"),
    ({"GITHUB_API_URL": "ftp://x"}, "GITHUB_API_URL"),
    ({"QUEUE_URL": "postgres://x"}, "QUEUE_URL"),
    ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
    ({"REVIEW_DRAFTS": "maybe"}, "REVIEW_DRAFTS"),
    ({"QUEUE_RETENTION_DAYS": "2"}, "QUEUE_RETENTION_DAYS"),
    ({"QUEUE_RETENTION_DAYS": "a week"}, "QUEUE_RETENTION_DAYS"),
])
def test_bad_setting_is_named_without_its_value(private_key, change, named):
    with pytest.raises(SettingsError, match=named) as info:
        load_settings(env(private_key, **change))
    for value in change.values():
        if len(value) > 3:
            assert value not in str(info.value)


def test_missing_key_names_both_variables(private_key):
    values = env(private_key)
    del values["GITHUB_PRIVATE_KEY"]
    with pytest.raises(SettingsError, match="GITHUB_PRIVATE_KEY_PATH"):
        load_settings(values)


def test_jwt_claims(private_key):
    token = app_jwt(4242, private_key, now=1_700_000_000)
    public = load_pem_private_key(private_key.encode(), None).public_key()
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    claims = jwt.decode(token, public, algorithms=["RS256"], options={"verify_exp": False})
    assert claims == {"iat": 1_700_000_000 - 60, "exp": 1_700_000_000 + 540, "iss": "4242"}


def test_token_cache_expires_before_expires_at():
    now = [1000.0]
    cache = TokenCache(clock=lambda: now[0], margin=300)
    cache.put(7, "ghs_abc", expires_at=1000 + 3600)
    assert cache.get(7) == "ghs_abc"
    now[0] = 1000 + 3600 - 301
    assert cache.get(7) == "ghs_abc"
    now[0] = 1000 + 3600 - 299
    assert cache.get(7) is None
    cache.put(7, "ghs_def", expires_at=now[0] + 3600)
    cache.invalidate(7)
    assert 7 not in cache


def test_parse_expires_at():
    assert parse_expires_at("2016-07-11T22:14:10Z") == 1468275250.0
