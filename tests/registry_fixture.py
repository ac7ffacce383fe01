"""A real OCI registry for tests: Debian's `docker-registry` (distribution v2.8), on a free loopback port.

`registry` is an open registry (anonymous pull and push) with its storage in the session's temporary
folder; under pytest-xdist each worker starts its own. `token_registry` serves the same storage as
Docker Hub or GHCR serve an anonymous pull: it asks for a Bearer token, which its token service (a
loopback server here) grants for `pull` to anyone, and it redirects blob downloads to its storage
elsewhere (a second loopback server, as a CDN or bucket); both servers record every request. Charts
are pushed with the distribution API (`push_chart`), the way `helm push` lays them out.

Without the binary the tests skip locally, and fail when INFRA_REVIEW_REQUIRE_REGISTRY=1 (.ci/run sets
it after .ci/apt.sh, from .ci/run installs the package).

A test module imports the helpers and names this module in `pytest_plugins` for the fixtures; it is
imported before pytest could rewrite its asserts, hence PYTEST_DONT_REWRITE.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import http.client
import json
import os
import shutil
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import jwt
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from loopback import Folder, Server, spawned

REQUIRE = "INFRA_REVIEW_REQUIRE_REGISTRY"
BINARY = "/usr/bin/docker-registry"
SERVICE = "registry.test"
ISSUER = "infra-review-tests"
HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_LAYER = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def registry_binary() -> str | None:
    """Debian's path first, then whatever PATH calls it (upstream names the binary `registry`)."""
    if os.access(BINARY, os.X_OK):
        return BINARY
    return shutil.which("docker-registry") or shutil.which("registry")


def request(method: str, url: str, body: bytes = b"", headers: dict[str, str] | None = None,
            ) -> tuple[int, dict[str, str], bytes]:
    """One plain HTTP request (http.client: no proxy variables read), as (status, headers, body)."""
    parts = urlsplit(url)
    conn = (http.client.HTTPSConnection(parts.hostname or "", parts.port, timeout=10,
                                        context=ssl._create_unverified_context())  # the tests' own certificate
            if parts.scheme == "https" else http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10))
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(method, path, body=body or None, headers={"Content-Length": str(len(body)), **(headers or {})})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


@dataclass(frozen=True)
class RunningRegistry:
    url: str  # http://127.0.0.1:<port> (https:// when started with a certificate)
    root: Path  # the storage folder

    @property
    def host(self) -> str:
        return urlsplit(self.url).netloc

    @property
    def oci(self) -> str:
        return f"oci://{self.host}"


def _wait_until_up(url: str, proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """Until `GET /v2/` answers (200 open, 401 behind a token service)."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited with code {proc.returncode}")
        try:
            status, _headers, _body = request("GET", f"{url}/v2/")
            if status in (200, 401):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"docker-registry did not answer GET {url}/v2/ within {timeout:g}s")
        time.sleep(0.05)


@contextmanager
def running_registry(workdir: Path, root: Path, auth: dict[str, Any] | None = None,
                     tls: dict[str, str] | None = None, redirect: str = "") -> Iterator[RunningRegistry]:
    """A docker-registry serving `root`, stopped on exit; `auth` and `tls` as in its configuration,
    `redirect` a base URL its blobs are redirected to (the `redirect` storage middleware); on a free port
    (loopback.spawned)."""
    binary = registry_binary()
    if binary is None:
        if os.environ.get(REQUIRE) == "1":
            pytest.fail(f"docker-registry is not installed, and {REQUIRE}=1: CI must install it (.ci/apt.sh, from .ci/run)")
        pytest.skip("docker-registry is not installed (apt-get install docker-registry)")
    workdir.mkdir(parents=True, exist_ok=True)
    scheme = "https" if tls else "http"

    def start(port: int) -> subprocess.Popen:
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(root)}, "delete": {"enabled": True}},
            "http": {"addr": f"127.0.0.1:{port}", **({"tls": tls} if tls else {})},
        }
        if auth:
            config["auth"] = auth
        if redirect:
            config["middleware"] = {"storage": [{"name": "redirect", "options": {"baseurl": redirect}}]}
        config_file = workdir / f"config-{port}.yml"
        config_file.write_text(yaml.safe_dump(config))
        with (workdir / f"registry-{port}.log").open("wb") as log:
            return subprocess.Popen([binary, "serve", str(config_file)], stdout=log, stderr=subprocess.STDOUT,
                                    cwd=workdir)

    with spawned(start, lambda port, proc: _wait_until_up(f"{scheme}://127.0.0.1:{port}", proc)) as port:
        yield RunningRegistry(f"{scheme}://127.0.0.1:{port}", root)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    workdir = tmp_path_factory.mktemp("registry")
    with running_registry(workdir, workdir / "storage") as running:
        yield running


# --- a registry behind a token service -------------------------------------------------------------

class TokenService(Server):
    """Grants `pull` (and nothing else) to anyone at `/token`, as a public registry's token service does
    for an anonymous client; `asked` is every request's (query, headers)."""

    def __init__(self, key: rsa.RSAPrivateKey, certificate: bytes):
        self.key, self.certificate = key, certificate  # the certificate as DER
        super().__init__()

    @property
    def asked(self) -> list[tuple[dict[str, list[str]], dict[str, str]]]:
        return [(parse_qs(urlsplit(path).query), headers) for path, headers in self.requests]

    def answer(self, path: str) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(path)
        if parts.path != "/token":
            return 404, {"Content-Type": "application/json"}, b"{}"
        token = self.token(parse_qs(parts.query).get("scope", []))
        return 200, {"Content-Type": "application/json"}, json.dumps({"token": token}).encode()

    def token(self, scopes: list[str]) -> str:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": [a for a in actions.split(",") if a == "pull"]})
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": "", "aud": SERVICE, "iat": now, "nbf": now - 10, "exp": now + 300,
                  "jti": uuid.uuid4().hex, "access": access}
        return jwt.encode(claims, self.key, algorithm="RS256",
                          headers={"x5c": [base64.b64encode(self.certificate).decode()]})


def _signing_pair() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


class BlobStore(Folder):
    """The registry's storage served over plain HTTP, where its `redirect` middleware sends blob
    downloads; every request is recorded as (path, headers)."""


@dataclass(frozen=True)
class TokenRegistry:
    registry: RunningRegistry
    tokens: TokenService
    blobs: BlobStore


@pytest.fixture(scope="session")
def token_registry(registry: RunningRegistry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenRegistry]:
    """A second registry over `registry`'s storage (push there, pull here) that answers 401 with a
    Bearer challenge until a token from its token service comes with the request, and redirects blob
    downloads to a BlobStore."""
    workdir = tmp_path_factory.mktemp("token-registry")
    key, cert = _signing_pair()
    bundle = workdir / "token-ca.pem"
    bundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    tokens = TokenService(key, cert.public_bytes(serialization.Encoding.DER))
    blobs = BlobStore(registry.root)
    auth = {"token": {"realm": f"{tokens.url}/token", "service": SERVICE, "issuer": ISSUER,
                      "rootcertbundle": str(bundle)}}
    try:
        with running_registry(workdir, registry.root, auth, redirect=f"{blobs.url}/") as running:
            yield TokenRegistry(running, tokens, blobs)
    finally:
        tokens.close()
        blobs.close()


# --- pushing ----------------------------------------------------------------------------------------

def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_blob(registry_url: str, repository: str, data: bytes) -> str:
    """A monolithic upload (POST, then PUT with the digest); the blob's digest."""
    digest = digest_of(data)
    status, headers, body = request("POST", f"{registry_url}/v2/{repository}/blobs/uploads/")
    if status != 202:
        raise RuntimeError(f"starting an upload to {repository}: {status} {body[:200]!r}")
    location = urljoin(f"{registry_url}/", headers["location"])
    location += ("&" if "?" in location else "?") + f"digest={digest}"
    status, _headers, body = request("PUT", location, data, {"Content-Type": "application/octet-stream"})
    if status != 201:
        raise RuntimeError(f"uploading {digest} to {repository}: {status} {body[:200]!r}")
    return digest


def push_chart(registry_url: str, repository: str, tag: str, archive: bytes, name: str, version: str) -> str:
    """A chart as `helm push` lays it out (config, chart layer, annotated OCI manifest) under `tag`;
    the manifest's digest."""
    config = json.dumps({"name": name, "version": version, "apiVersion": "v2"}).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "config": {"mediaType": HELM_CONFIG, "digest": push_blob(registry_url, repository, config),
                   "size": len(config)},
        "layers": [{"mediaType": HELM_LAYER, "digest": push_blob(registry_url, repository, archive),
                    "size": len(archive)}],
        "annotations": {"org.opencontainers.image.title": name, "org.opencontainers.image.version": version},
    }).encode()
    status, _headers, body = request("PUT", f"{registry_url}/v2/{repository}/manifests/{tag}", manifest,
                                     {"Content-Type": OCI_MANIFEST})
    if status != 201:
        raise RuntimeError(f"pushing {repository}:{tag}: {status} {body[:300]!r}")
    return digest_of(manifest)
