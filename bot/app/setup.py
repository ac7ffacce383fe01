"""First run like Probot: register the GitHub App from a browser (GitHub's App-manifest flow).

1. `/` posts the manifest (bot.app.manifest) to GitHub's "new App" page with a random `state`;
2. GitHub sends the browser back to `/setup/callback?code=…&state=…`;
3. the code is exchanged with `POST /app-manifests/{code}/conversions` for the App's id, private key and
   webhook secret;
4. they are written to the env file (mode 0600, atomically) — or, where the file system is read-only,
   shown once as a Kubernetes Secret to encrypt with SOPS — and the service loads them without a restart.

The flow only exists while the service has no credentials: the server refuses it afterwards.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import yaml

ACCEPT = "application/vnd.github+json"


class SetupFailed(Exception):
    """The flow could not finish; the message says what to do and holds no credential."""


def web_url(api_url: str) -> str:
    """GitHub's web address for its API address: api.github.com → github.com, a GitHub Enterprise
    Server's `/api/v3` → the server itself, anything else (a test fake) as it is."""
    api = api_url.rstrip("/")
    if api == "https://api.github.com":
        return "https://github.com"
    return api.removesuffix("/api/v3")


def form_action(api_url: str, state: str, org: str | None = None) -> str:
    where = f"/organizations/{org}/settings/apps/new" if org else "/settings/apps/new"
    return f"{web_url(api_url)}{where}?{urlencode({'state': state})}"


@dataclass
class Registration:
    """One browser's pending registration: the `state` that ties GitHub's redirect to it."""

    state: str

    @classmethod
    def start(cls) -> Registration:
        return cls(secrets.token_urlsafe(24))

    def matches(self, state: str | None) -> bool:
        return state is not None and secrets.compare_digest(state, self.state)


async def convert(session: aiohttp.ClientSession, api_url: str, code: str) -> dict[str, Any]:
    """The App's configuration for a manifest code (`apps/create-from-manifest`); GitHub takes no
    authentication here, the one-hour code is the credential."""
    if not code or not code.replace("-", "").replace("_", "").isalnum() or len(code) > 256:
        raise SetupFailed("GitHub's redirect carried no usable code: start again from the setup page")
    url = f"{api_url.rstrip('/')}/app-manifests/{code}/conversions"
    async with session.post(url, headers={"Accept": ACCEPT, "X-GitHub-Api-Version": "2022-11-28"}) as resp:
        if resp.status != 201:
            raise SetupFailed(f"GitHub refused the code ({resp.status}): codes expire after an hour and work once; "
                              "start again from the setup page")
        data = await resp.json()
    for key in ("id", "slug", "pem", "webhook_secret", "html_url"):
        if not data.get(key):
            raise SetupFailed(f"GitHub's answer has no {key}: start again from the setup page")
    return data


def credentials(app: Mapping[str, Any]) -> dict[str, str]:
    """The environment variables the service reads its App credentials from."""
    return {"GITHUB_APP_ID": str(app["id"]), "GITHUB_APP_SLUG": str(app["slug"]),
            "GITHUB_WEBHOOK_SECRET": str(app["webhook_secret"]), "GITHUB_PRIVATE_KEY": str(app["pem"])}


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def write_env_file(path: Path, values: Mapping[str, str]) -> None:
    """Write (or replace) `path` with these variables, mode 0600 from the first byte: a temporary file
    created 0600 in the same folder, then renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".env-", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write("# Written by infra-review's setup page: the GitHub App's credentials. Keep it secret.\n")
            out.writelines(f"{key}={_quoted(value)}\n" for key, value in values.items())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def secret_manifest(values: Mapping[str, str], namespace: str = "infra-review") -> str:
    """The credentials as the Kubernetes Secret deploy/ reads (to be encrypted with SOPS before commit)."""
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Secret",
                           "metadata": {"name": "infra-review-secrets", "namespace": namespace},
                           "type": "Opaque", "stringData": dict(values)}, sort_keys=False)
