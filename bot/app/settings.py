"""App configuration from the environment (and the env file the setup page writes).

Every problem is found before start-up stops: `SettingsError` lists them all, one line each, naming the
variable and what to do, never showing a value (a value may be a secret).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from ..queue import open_queue

T = TypeVar("T")
N = TypeVar("N", int, float)

DEFAULT_API_URL = "https://api.github.com"
DEFAULT_QUEUE_URL = "sqlite:///./infra-review.sqlite3"
DEFAULT_ENV_FILE = ".env"
# GitHub caps webhook payloads at 25 MB; anything larger is not from GitHub.
DEFAULT_MAX_BODY = 25 * 1024 * 1024
# The time-to-live of finished jobs (dead letters among them) and handled deliveries. GitHub lets a
# delivery be redelivered for 3 days, and recognising a redelivery needs its id, so the window never
# goes below that.
DEFAULT_RETENTION_DAYS = 7
MIN_RETENTION_DAYS = 3
DAY = 86_400.0
# A review that runs longer is stopped and its check run fails, saying so (builds have their own limit).
DEFAULT_REVIEW_TIMEOUT = 600.0
# Review failures (an exception, a timeout) a job gets before it is given up as a dead letter.
DEFAULT_MAX_FAILURES = 5
# On SIGTERM, how long running reviews may go on before they are handed back to the queue.
DEFAULT_DRAIN_GRACE = 30.0
LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
LOG_FORMATS = ("auto", "json", "text")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")
_KEY = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)")
_ESCAPE = re.compile(r"\\(.)")
_ESCAPED = {"n": "\n", "r": "\r", "t": "\t"}
# The App's credentials: all present (configured), or all absent (setup mode), never some.
CREDENTIALS = ("GITHUB_APP_ID", "GITHUB_PRIVATE_KEY", "GITHUB_PRIVATE_KEY_PATH", "GITHUB_WEBHOOK_SECRET")


class SettingsError(ValueError):
    """Settings are missing or malformed: one problem a line, each naming its setting, never a value."""

    def __init__(self, *problems: str) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


@dataclass(frozen=True)
class Settings:
    """`app_id` is None, and the two secrets empty, only in setup mode (see `configured`)."""

    app_id: int | None
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
    public_url: str | None = None
    status_page: bool = True
    log_format: str = "auto"
    max_failures: int = DEFAULT_MAX_FAILURES
    drain_grace: float = DEFAULT_DRAIN_GRACE
    env_file: str = DEFAULT_ENV_FILE

    @property
    def configured(self) -> bool:
        """Whether the App's credentials are there; False only in setup mode, before the App exists."""
        return self.app_id is not None and bool(self.private_key) and bool(self.webhook_secret)


class _Problems:
    """Runs each setting's parser and keeps every problem instead of stopping at the first."""

    def __init__(self) -> None:
        self.found: list[str] = []

    def __call__(self, parse: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return parse(*args, **kwargs)
        except SettingsError as exc:
            self.found.extend(exc.problems)
            return cast(T, None)  # never used: load_settings raises when anything was found


def _set(env: Mapping[str, str], name: str) -> str:
    return env.get(name, "").strip()


def _required(env: Mapping[str, str], name: str, what: str) -> str:
    value = _set(env, name)
    if not value:
        raise SettingsError(f"{name} is not set: set it to {what}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
    return _number(env, name, default, int, minimum, maximum, "a whole number")


def _float(env: Mapping[str, str], name: str, default: float, *, maximum: float | None = None) -> float:
    return _number(env, name, default, float, 0.0, maximum, "a number of seconds")


def _number(env: Mapping[str, str], name: str, default: N, parse: Callable[[str], N], minimum: N, maximum: N | None,
            what: str) -> N:
    raw = _set(env, name)
    if not raw:
        return default
    try:
        value: N | None = parse(raw)
    except ValueError:
        value = None
    if value is None or not minimum <= value <= (float("inf") if maximum is None else maximum):
        bounds = (f"between {_show(minimum)} and {_show(maximum)}" if maximum is not None
                  else f"of at least {_show(minimum)}")
        raise SettingsError(f"{name} must be {what} {bounds}: fix it, or unset it for {_show(default)}")
    return value


def _show(number: float | None) -> str:
    return f"{number:g}" if isinstance(number, float) else str(number)


def _retention(env: Mapping[str, str]) -> float:
    return DAY * _int(env, "QUEUE_RETENTION_DAYS", DEFAULT_RETENTION_DAYS, minimum=MIN_RETENTION_DAYS, maximum=3650)


def _review_timeout(env: Mapping[str, str]) -> float:
    return float(_int(env, "REVIEW_TIMEOUT", int(DEFAULT_REVIEW_TIMEOUT), minimum=10, maximum=86_400))


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    raw = raw.strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise SettingsError(f"{name} must be true or false: fix it, or unset it for {str(default).lower()}")


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...], *, upper: bool = False) -> str:
    raw = _set(env, name) or default
    value = raw.upper() if upper else raw.lower()
    if value not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}: fix it, or unset it for {default}")
    return value


def check_private_key(pem: str, name: str = "GITHUB_PRIVATE_KEY") -> None:
    """Raise SettingsError unless `pem` is a loadable RSA private key (RS256 needs RSA)."""
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        raise SettingsError(f"{name} is not a PEM private key: give the .pem file GitHub generated for the App, "
                            "whole") from None
    if not isinstance(key, RSAPrivateKey):
        raise SettingsError(f"{name} must be an RSA key (GitHub Apps sign JWTs with RS256): give the .pem file "
                            "GitHub generated for the App")


def _private_key(env: Mapping[str, str]) -> str:
    text = _set(env, "GITHUB_PRIVATE_KEY")
    if text:
        # Platforms that cannot hold multi-line values often store the PEM with literal "\n".
        pem = text.replace("\\n", "\n") + "\n"
        check_private_key(pem, "GITHUB_PRIVATE_KEY")
        return pem
    path = _set(env, "GITHUB_PRIVATE_KEY_PATH")
    if not path:
        raise SettingsError("GITHUB_PRIVATE_KEY or GITHUB_PRIVATE_KEY_PATH is not set: set one to the App's private "
                            "key (PEM) or to the path of its .pem file")
    try:
        pem = Path(path).read_text()
    except OSError as exc:
        raise SettingsError(f"GITHUB_PRIVATE_KEY_PATH cannot be read ({exc.strerror}): point it at a readable "
                            ".pem file") from None
    check_private_key(pem, "GITHUB_PRIVATE_KEY_PATH")
    return pem


def _url(env: Mapping[str, str], name: str, default: str, example: str) -> str:
    value = _set(env, name) or default
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingsError(f"{name} must be an http(s) URL such as {example}")
    return value.rstrip("/")


def _public_url(env: Mapping[str, str]) -> str | None:
    """Where GitHub reaches the service (the App manifest's webhook URL); None: not known."""
    return _url(env, "PUBLIC_URL", "", "https://review.example.com") if _set(env, "PUBLIC_URL") else None


def _queue_url(env: Mapping[str, str]) -> str:
    value = _set(env, "QUEUE_URL") or DEFAULT_QUEUE_URL
    if not value.startswith(("sqlite://", "redis://", "rediss://")):
        raise SettingsError("QUEUE_URL must start with sqlite:// or redis:// (rediss:// for TLS): fix it, or unset "
                            f"it for {DEFAULT_QUEUE_URL}")
    try:
        open_queue(value)  # connects nothing: parses the URL and its parameters
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    return value


def _app_id(env: Mapping[str, str]) -> int:
    if not _set(env, "GITHUB_APP_ID"):
        raise SettingsError("GITHUB_APP_ID is not set: set it to the App's numeric ID (the App's settings page, "
                            "About)")
    try:
        return _int(env, "GITHUB_APP_ID", 0, minimum=1)
    except SettingsError:
        raise SettingsError("GITHUB_APP_ID must be the App's numeric ID (the App's settings page, About)") from None


def _credentials(env: Mapping[str, str], allow_setup: bool, check: _Problems) -> tuple[int | None, str, str]:
    """The App's id, private key and webhook secret; none of them in setup mode (all absent, and allowed)."""
    if allow_setup and not any(_set(env, name) for name in CREDENTIALS):
        return None, "", ""
    return (check(_app_id, env), check(_private_key, env),
            check(_required, env, "GITHUB_WEBHOOK_SECRET", "the webhook secret entered in the App's settings"))


def load_env_file(path: str | Path) -> dict[str, str]:
    """The variables of an env file: `KEY=VALUE` lines (`export ` allowed), `#` comments, values bare or
    quoted; in double quotes `\\n`, `\\"` and `\\\\` are escapes (a PEM on one line). The file holds
    credentials, so one that other users may read is refused."""
    path = Path(path)
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        raise SettingsError(f"ENV_FILE {path} can be read by other users: run `chmod 600 {path}`")
    values, problems = {}, []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _KEY.fullmatch(line)
        if match is None:
            problems.append(f"ENV_FILE {path} line {number} is not KEY=VALUE: fix or remove it")
            continue
        values[match[1]] = _unquote(match[2].strip())
    if problems:
        raise SettingsError(*problems)
    return values


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1]
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return _ESCAPE.sub(lambda m: _ESCAPED.get(m[1], m[1]), value[1:-1])
    return value


def _with_env_file(env: Mapping[str, str], check: _Problems) -> Mapping[str, str]:
    """The env file's values under the environment's. An empty variable does not hide the file's value:
    a deployment template often sets the credentials empty until the setup page has written them."""
    path = Path(_set(env, "ENV_FILE") or DEFAULT_ENV_FILE)
    if not path.is_file():
        return env
    from_file = check(load_env_file, path) or {}
    return {**from_file, **{name: value for name, value in env.items() if value.strip()}}


def load_settings(env: Mapping[str, str] | None = None, *, allow_setup: bool = False) -> Settings:
    """Read and validate every setting; `env` defaults to os.environ. With `allow_setup`, no credentials
    at all is setup mode (`Settings.configured` is False) rather than an error."""
    env = os.environ if env is None else env
    check = _Problems()
    env = _with_env_file(env, check)
    app_id, private_key, webhook_secret = _credentials(env, allow_setup, check)
    settings = Settings(
        app_id=app_id,
        private_key=private_key,
        webhook_secret=webhook_secret,
        api_url=check(_url, env, "GITHUB_API_URL", DEFAULT_API_URL, DEFAULT_API_URL),
        port=check(_int, env, "PORT", 8080, minimum=1, maximum=65535),
        queue_url=check(_queue_url, env),
        log_level=check(_choice, env, "LOG_LEVEL", "INFO", LOG_LEVELS, upper=True),
        max_body_bytes=check(_int, env, "MAX_WEBHOOK_BYTES", DEFAULT_MAX_BODY, minimum=1024),
        review_drafts=check(_bool, env, "REVIEW_DRAFTS", False),
        app_slug=_set(env, "GITHUB_APP_SLUG") or None,
        mutation_interval=check(_float, env, "GITHUB_MUTATION_INTERVAL", 1.0),
        workers=check(_int, env, "WORKERS", 2, minimum=0, maximum=64),
        queue_retention=check(_retention, env),
        review_timeout=check(_review_timeout, env),
        public_url=check(_public_url, env),
        status_page=check(_bool, env, "STATUS_PAGE", True),
        log_format=check(_choice, env, "LOG_FORMAT", "auto", LOG_FORMATS),
        max_failures=check(_int, env, "QUEUE_MAX_FAILURES", DEFAULT_MAX_FAILURES, minimum=1, maximum=100),
        drain_grace=check(_float, env, "DRAIN_GRACE", DEFAULT_DRAIN_GRACE, maximum=3600),
        env_file=_set(env, "ENV_FILE") or DEFAULT_ENV_FILE,
    )
    if check.found:
        raise SettingsError(*check.found)
    return settings
