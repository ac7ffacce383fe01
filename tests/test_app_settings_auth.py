"""Settings from the environment, the App JWT and the installation token cache."""

from __future__ import annotations

import jwt
import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from bot.app.auth import TokenCache, app_jwt, parse_expires_at
from bot.app.settings import SettingsError, load_env_file, load_settings


def env(private_key: str, **extra: str) -> dict[str, str]:
    return {"GITHUB_APP_ID": "4242", "GITHUB_PRIVATE_KEY": private_key, "GITHUB_WEBHOOK_SECRET": "hush", **extra}


@pytest.fixture(autouse=True)
def empty_workdir(tmp_path, monkeypatch):
    """No .env of the developer's is read by accident."""
    monkeypatch.chdir(tmp_path)


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
    ({"QUEUE_URL": "redis://cache:6379/0?lease=forever"}, "QUEUE_URL.*lease=forever must be a number"),
    ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
    ({"REVIEW_DRAFTS": "maybe"}, "REVIEW_DRAFTS"),
    ({"QUEUE_RETENTION_DAYS": "2"}, "QUEUE_RETENTION_DAYS"),
    ({"QUEUE_RETENTION_DAYS": "a week"}, "QUEUE_RETENTION_DAYS"),
    ({"PUBLIC_URL": "localhost:8080"}, "PUBLIC_URL"),
    ({"STATUS_PAGE": "sometimes"}, "STATUS_PAGE"),
    ({"LOG_FORMAT": "logfmt"}, "LOG_FORMAT"),
    ({"QUEUE_MAX_FAILURES": "0"}, "QUEUE_MAX_FAILURES"),
    ({"QUEUE_MAX_FAILURES": "101"}, "QUEUE_MAX_FAILURES"),
    ({"DRAIN_GRACE": "-1"}, "DRAIN_GRACE"),
    ({"DRAIN_GRACE": "4000"}, "DRAIN_GRACE"),
    ({"WORKERS": "65"}, "WORKERS"),
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


def test_the_new_settings_default_sensibly(private_key):
    s = load_settings(env(private_key))
    assert (s.public_url, s.status_page, s.log_format, s.max_failures, s.drain_grace, s.env_file) == (
        None, True, "auto", 5, 30.0, ".env")
    assert s.configured


def test_the_new_settings_are_read(private_key):
    s = load_settings(env(private_key, PUBLIC_URL="https://review.example.com/", STATUS_PAGE="off", LOG_FORMAT="JSON",
                          QUEUE_MAX_FAILURES="1", DRAIN_GRACE="2.5", ENV_FILE="/run/secrets/env", WORKERS="0"))
    assert (s.public_url, s.status_page, s.log_format, s.max_failures, s.drain_grace, s.env_file, s.workers) == (
        "https://review.example.com", False, "json", 1, 2.5, "/run/secrets/env", 0)


def test_every_problem_is_reported_at_once_one_a_line_without_values(private_key):
    values = env(private_key, PORT="eighty", DRAIN_GRACE="forever", PUBLIC_URL="review-host", LOG_LEVEL="LOUD")
    del values["GITHUB_WEBHOOK_SECRET"]
    with pytest.raises(SettingsError) as info:
        load_settings(values)
    lines = str(info.value).splitlines()
    assert lines == info.value.problems
    assert [line.split()[0] for line in lines] == ["GITHUB_WEBHOOK_SECRET", "PORT", "LOG_LEVEL", "PUBLIC_URL",
                                                   "DRAIN_GRACE"]
    assert all(":" in line or "such as" in line for line in lines), "each says what to do"
    for value in ("eighty", "forever", "review-host", "LOUD"):
        assert value not in str(info.value)


def test_no_credentials_at_all_is_setup_mode_when_allowed(private_key):
    s = load_settings({"PORT": "9000"}, allow_setup=True)
    assert (s.app_id, s.private_key, s.webhook_secret, s.port, s.configured) == (None, "", "", 9000, False)
    with pytest.raises(SettingsError) as info:
        load_settings({"PORT": "9000"})
    assert [p.split()[0] for p in info.value.problems] == ["GITHUB_APP_ID", "GITHUB_PRIVATE_KEY",
                                                           "GITHUB_WEBHOOK_SECRET"]


def test_some_credentials_are_never_setup_mode(private_key):
    with pytest.raises(SettingsError) as info:
        load_settings({"GITHUB_APP_ID": "4242"}, allow_setup=True)
    assert [p.split()[0] for p in info.value.problems] == ["GITHUB_PRIVATE_KEY", "GITHUB_WEBHOOK_SECRET"]


def quoted(value: str) -> str:
    """How the setup page writes a value: double quotes, with backslash escapes."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def write_env(path, text: str, mode: int = 0o600):
    path.write_text(text)
    path.chmod(mode)
    return path


def test_the_env_file_fills_in_under_the_environment(private_key, tmp_path):
    write_env(tmp_path / ".env", f"# written by the setup page\nGITHUB_APP_ID={quoted('99')}\n"
                                 f"GITHUB_PRIVATE_KEY={quoted(private_key)}\nexport GITHUB_WEBHOOK_SECRET='s3\"cret'\n"
                                 "\nPORT=9000\n")
    s = load_settings({"PORT": "9100", "GITHUB_APP_ID": ""})
    assert (s.app_id, s.private_key, s.webhook_secret, s.port) == (99, private_key, 's3"cret', 9100)
    assert load_settings({"GITHUB_APP_ID": "7"}).app_id == 7, "the environment wins"


def test_an_env_file_elsewhere_and_its_escapes(private_key, tmp_path):
    path = write_env(tmp_path / "app.env",
                     f'GITHUB_PRIVATE_KEY={quoted(private_key)}\nNOTE="a \\"quoted\\" \\\\ value"\nBARE = x y \n')
    assert load_env_file(path) == {"GITHUB_PRIVATE_KEY": private_key, "NOTE": 'a "quoted" \\ value', "BARE": "x y"}
    assert load_settings(env(private_key, ENV_FILE=str(path), GITHUB_PRIVATE_KEY="")).private_key == private_key


def test_an_env_file_others_can_read_is_refused(private_key, tmp_path):
    write_env(tmp_path / ".env", "GITHUB_APP_ID=99\n", mode=0o644)
    with pytest.raises(SettingsError, match="chmod 600"):
        load_settings(env(private_key))


def test_a_malformed_env_file_line_is_named_by_number_not_content(private_key, tmp_path):
    write_env(tmp_path / ".env", "GITHUB_APP_ID=99\nthis is not a setting\n")
    with pytest.raises(SettingsError, match="line 2") as info:
        load_settings(env(private_key))
    assert "not a setting" not in str(info.value)
