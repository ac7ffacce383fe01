"""App configuration from the environment; a bad value stops start-up with the setting's name."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_API_URL = "https://api.github.com"
DEFAULT_QUEUE_URL = "sqlite:///./infra-review.sqlite3"
# GitHub caps webhook payloads at 25 MB; anything larger is not from GitHub.
DEFAULT_MAX_BODY = 25 * 1024 * 1024
# Finished jobs and handled deliveries are kept this long. GitHub lets a delivery be redelivered for
# 3 days, and recognising a redelivery needs its id, so the window never goes below that.
DEFAULT_RETENTION_DAYS = 7
MIN_RETENTION_DAYS = 3
DAY = 86_400.0
# A review that runs longer is stopped and its check run fails, saying so (builds have their own limit).
DEFAULT_REVIEW_TIMEOUT = 600.0
LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names it but never shows its value."""


@dataclass(frozen=True)
class Settings:
    app_id: int
    private_key: str = field(repr=False)
    webhook_secret: str = field(repr=False)
    api_url: str = DEFAULT_API_URL
    port: int = 8080
    queue_url: str = DEFAULT_QUEUE_URL
    log_level: str = "INFO"
    max_body_bytes: int = DEFAULT_MAX_BODY
    review_drafts: bool = False
    app_slug: str | None = None
    mutation_interval: float = 1.0
    workers: int = 2
    queue_retention: float = DEFAULT_RETENTION_DAYS * DAY
    review_timeout: float = DEFAULT_REVIEW_TIMEOUT


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise SettingsError(f"{name} is not set")
    return value


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer") from None
    if value < minimum or (maximum is not None and value > maximum):
        raise SettingsError(f"{name} must be between {minimum} and {maximum or 'unbounded'}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    raw = raw.strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise SettingsError(f"{name} must be true or false")


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number") from None
    if value < 0:
        raise SettingsError(f"{name} must not be negative")
    return value


def check_private_key(pem: str, name: str = "GITHUB_PRIVATE_KEY") -> None:
    """Raise SettingsError unless `pem` is a loadable RSA private key (RS256 needs RSA)."""
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        raise SettingsError(f"{name} is not a PEM private key") from None
    if not isinstance(key, RSAPrivateKey):
        raise SettingsError(f"{name} must be an RSA key (GitHub Apps sign JWTs with RS256)")


def _private_key(env: Mapping[str, str]) -> str:
    text = env.get("GITHUB_PRIVATE_KEY", "").strip()
    if text:
        # Platforms that cannot hold multi-line values often store the PEM with literal "\n".
        pem = text.replace("\\n", "\n") + "\n"
        check_private_key(pem, "GITHUB_PRIVATE_KEY")
        return pem
    path = env.get("GITHUB_PRIVATE_KEY_PATH", "").strip()
    if not path:
        raise SettingsError("GITHUB_PRIVATE_KEY or GITHUB_PRIVATE_KEY_PATH is not set")
    try:
        pem = Path(path).read_text()
    except OSError as exc:
        raise SettingsError(f"GITHUB_PRIVATE_KEY_PATH cannot be read ({exc.strerror})") from None
    check_private_key(pem, "GITHUB_PRIVATE_KEY_PATH")
    return pem


def _url(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, "").strip() or default
    if not value.startswith(("http://", "https://")):
        raise SettingsError(f"{name} must be an http(s) URL")
    return value.rstrip("/")


def _queue_url(env: Mapping[str, str]) -> str:
    value = env.get("QUEUE_URL", "").strip() or DEFAULT_QUEUE_URL
    if not value.startswith(("sqlite://", "redis://", "rediss://")):
        raise SettingsError("QUEUE_URL must start with sqlite:// or redis://")
    return value


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; `env` defaults to os.environ."""
    env = os.environ if env is None else env
    app_id = _int(env, "GITHUB_APP_ID", 0, minimum=1) if env.get("GITHUB_APP_ID", "").strip() else None
    if app_id is None:
        raise SettingsError("GITHUB_APP_ID is not set")
    log_level = (env.get("LOG_LEVEL", "").strip() or "INFO").upper()
    if log_level not in LOG_LEVELS:
        raise SettingsError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")
    return Settings(
        app_id=app_id,
        private_key=_private_key(env),
        webhook_secret=_required(env, "GITHUB_WEBHOOK_SECRET"),
        api_url=_url(env, "GITHUB_API_URL", DEFAULT_API_URL),
        port=_int(env, "PORT", 8080, minimum=1, maximum=65535),
        queue_url=_queue_url(env),
        log_level=log_level,
        max_body_bytes=_int(env, "MAX_WEBHOOK_BYTES", DEFAULT_MAX_BODY, minimum=1024),
        review_drafts=_bool(env, "REVIEW_DRAFTS", False),
        app_slug=env.get("GITHUB_APP_SLUG", "").strip() or None,
        mutation_interval=_float(env, "GITHUB_MUTATION_INTERVAL", 1.0),
        workers=_int(env, "WORKERS", 2, minimum=1, maximum=64),
        queue_retention=DAY * _int(env, "QUEUE_RETENTION_DAYS", DEFAULT_RETENTION_DAYS, minimum=MIN_RETENTION_DAYS,
                                   maximum=3650),
        review_timeout=float(_int(env, "REVIEW_TIMEOUT", int(DEFAULT_REVIEW_TIMEOUT), minimum=10, maximum=86_400)),
    )
