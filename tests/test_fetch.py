"""The policed fetcher (bot.fetch): URL and address policy, the bounded client, the cache, and how
Kustomize's remote references are read. No internet: servers listen on 127.0.0.1, reached through
`fetch.allow` prefixes (or refused without them)."""

from __future__ import annotations

import gzip
import io
import ipaddress
import tarfile
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from loopback import Server

from bot.fetch import Fetcher, FetchFailed, FetchSettings, Refused
from bot.fetch.policy import FetchPolicy, forbidden_address, under_prefix
from bot.fetch.remote import parse


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def tarball(top: str, files: dict[str, str]) -> bytes:
    """A GitHub-shaped archive: every file below one top folder."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo(top)
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
        for rel, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{top}/{rel}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue())


def fetcher(allow: tuple[str, ...] = (), **kw: Any) -> Fetcher:
    return Fetcher(FetchSettings(allow=allow, **kw), cache_dir=None)


YAML = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n"


# --- policy ------------------------------------------------------------------------------

@pytest.mark.parametrize("url, why", [
    ("http://example.com/a.yaml", "only https"),
    ("ftp://example.com/a.yaml", "only https"),
    ("https://user:secret@example.com/a.yaml", "credentials"),
    ("https://token@example.com/a.yaml", "credentials"),
    ("https://example.com:8443/a.yaml", "default port"),
    ("https://127.0.0.1/a.yaml", "loopback"),
    ("https://169.254.169.254/latest/meta-data/", "link-local"),
    ("https://[fd00:ec2::254]/latest/meta-data/", "private"),
    ("https://[::ffff:127.0.0.1]/", "embeds 127.0.0.1"),
])
def test_the_policy_refuses_what_is_not_a_public_https_url(url, why):
    with pytest.raises(Refused, match=why):
        FetchPolicy().check_url(url)


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
                                     "100.100.100.200", "0.0.0.0", "224.0.0.1", "255.255.255.255", "::1", "::",
                                     "fe80::1", "fd00:ec2::254", "::ffff:10.0.0.1", "64:ff9b::7f00:1",
                                     "2002:7f00:1::1", "ff02::1"])
def test_private_metadata_and_special_addresses_are_forbidden(address):
    assert forbidden_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["140.82.112.3", "185.199.108.133", "2606:50c0:8000::154", "64:ff9b::8c52:7003"])
def test_public_addresses_are_not(address):
    assert forbidden_address(ipaddress.ip_address(address)) is None


def test_an_allow_prefix_matches_at_a_boundary_and_lifts_scheme_port_and_address_checks():
    assert under_prefix("http://charts.internal/x.yaml", "http://charts.internal")
    assert under_prefix("http://CHARTS.internal:80/x", "http://charts.internal/")
    assert not under_prefix("http://charts.internal.evil.com/x", "http://charts.internal")
    assert not under_prefix("http://charts.internal:8080/x", "http://charts.internal")
    assert not under_prefix("https://charts.internal/x", "http://charts.internal")
    policy = FetchPolicy(("http://127.0.0.1:8080/repo/",))
    target = policy.check_url("http://127.0.0.1:8080/repo/a.yaml")
    assert target.allowed and target.host_header == "127.0.0.1:8080"
    with pytest.raises(Refused):
        policy.check_url("http://127.0.0.1:8080/other/a.yaml")
    with pytest.raises(Refused, match="credentials"):
        policy.check_url("http://u:p@127.0.0.1:8080/repo/a.yaml")



def test_an_oci_allow_prefix_allows_that_registrys_api_below_its_path():
    policy = FetchPolicy(("oci://127.0.0.1:5000/charts",))
    assert policy.check_url("http://127.0.0.1:5000/v2/charts/web/tags/list").allowed
    assert policy.allowed("https://127.0.0.1:5000/v2/charts/web/manifests/1.0.0")
    assert not policy.allowed("http://127.0.0.1:5000/v2/other/web/tags/list")
    assert not policy.allowed("http://127.0.0.1:5001/v2/charts/web/tags/list")
    whole = FetchPolicy(("oci://registry.internal",))
    assert whole.allowed("http://registry.internal/v2/team/web/blobs/sha256:ab")
    assert not whole.allowed("http://registry.internal.evil.com/v2/team/web")


# --- the client --------------------------------------------------------------------------

def test_a_loopback_url_without_allow_is_refused_before_any_connection(server):
    server.routes["/a.yaml"] = (200, {}, YAML)
    for url in (f"{server.url}/a.yaml", f"https://127.0.0.1:{server.httpd.server_address[1]}/a.yaml"):
        with pytest.raises(Refused):
            fetcher().get(url)
    assert server.requests == []


def test_a_name_resolving_to_a_private_address_is_refused_before_connecting(server):
    resolved: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        resolved.append(host)
        return ["93.184.216.34", "10.0.0.7"]  # one private answer is enough to refuse

    f = Fetcher(FetchSettings(), None, resolver=resolver)
    with pytest.raises(Refused, match="10.0.0.7, a private address"):
        f.get("https://charts.example.com/index.yaml")
    assert resolved == ["charts.example.com"]


def test_an_allowed_url_is_fetched_with_nothing_but_what_it_needs(server, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # never read
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    server.routes["/a.yaml"] = (200, {"Set-Cookie": "session=1"}, YAML)
    f = fetcher((server.url + "/",))
    assert f.get(f"{server.url}/a.yaml") == YAML
    assert f.get(f"{server.url}/a.yaml") == YAML  # the second from the cache
    [(path, headers)] = server.requests
    names = {k.lower() for k in headers}
    assert path == "/a.yaml" and headers["Host"] == f"127.0.0.1:{server.httpd.server_address[1]}"
    assert not names & {"authorization", "cookie", "proxy-authorization"}
    assert headers["Accept-Encoding"] == "identity" and headers["User-Agent"].startswith("infra-review/")


def test_a_redirect_to_an_address_not_allowed_is_refused_and_never_followed(server):
    other = Server({"/secret": (200, {}, b"metadata")})
    try:
        server.routes["/a.yaml"] = (302, {"Location": f"{other.url}/secret"}, b"")
        with pytest.raises(Refused, match="127.0.0.1"):
            fetcher((server.url + "/",)).get(f"{server.url}/a.yaml")
        assert other.requests == [] and len(server.requests) == 1
    finally:
        other.close()


def test_redirects_are_followed_each_checked_and_bounded(server):
    server.routes["/a"] = (301, {"Location": "/b"}, b"")
    server.routes["/b"] = (307, {"Location": f"{server.url}/c"}, b"")
    server.routes["/c"] = (200, {}, YAML)
    server.routes["/loop"] = (302, {"Location": "/loop"}, b"")
    f = fetcher((server.url,))
    assert f.get(f"{server.url}/a") == YAML
    with pytest.raises(FetchFailed, match="more than 5 redirects"):
        f.get(f"{server.url}/loop")
    assert [p for p, _ in server.requests].count("/loop") == 6


def test_the_size_cap_holds_with_and_without_a_content_length(server):
    big = b"x" * 5000

    def chunked(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        for _ in range(5):
            handler.wfile.write(b"3e8\r\n" + b"y" * 1000 + b"\r\n")
        handler.wfile.write(b"0\r\n\r\n")

    server.routes["/big"] = (200, {}, big)
    server.routes["/chunked"] = chunked
    f = fetcher((server.url,), max_bytes=2048)
    with pytest.raises(FetchFailed, match="5000 bytes, over the 2048 byte limit"):
        f.get(f"{server.url}/big")
    with pytest.raises(FetchFailed, match="more than 2048 bytes"):
        f.get(f"{server.url}/chunked")
    assert fetcher((server.url,), max_bytes=8192).get(f"{server.url}/chunked") == b"y" * 5000


def test_a_stalling_server_is_cut_off_at_the_time_limit(server):
    def stall(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", "100")
        handler.end_headers()
        for _ in range(50):  # a byte every 0.1 s: each read succeeds, the whole never ends in time
            handler.wfile.write(b"x")
            handler.wfile.flush()
            time.sleep(0.1)

    server.routes["/slow"] = stall
    start = time.monotonic()
    with pytest.raises(FetchFailed, match="not downloaded within 1s"):
        fetcher((server.url,), timeout=1).get(f"{server.url}/slow")
    assert time.monotonic() - start < 3


def test_failures_are_said_and_not_retried_by_the_same_fetcher(server):
    f = fetcher((server.url,))
    with pytest.raises(FetchFailed, match="answered 404"):
        f.get(f"{server.url}/missing")
    with pytest.raises(FetchFailed):
        f.get(f"{server.url}/missing")
    assert len(server.requests) == 1 and f.requests == 1


def test_the_disk_cache_serves_a_second_fetcher_without_a_request(server, tmp_path):
    server.routes["/a.yaml"] = (200, {}, YAML)
    for _ in range(2):
        assert Fetcher(FetchSettings(allow=(server.url,)), tmp_path).get(f"{server.url}/a.yaml") == YAML
    assert len(server.requests) == 1
    stale = Fetcher(FetchSettings(allow=(server.url,), cache_max_age=0.001), tmp_path)
    time.sleep(0.01)
    assert stale.get(f"{server.url}/a.yaml") == YAML and len(server.requests) == 2


# --- Kustomize's remote references -----------------------------------------------------------

@pytest.mark.parametrize("value, kind, url, subpath", [
    ("https://raw.githubusercontent.com/org/repo/v1/deploy.yaml", "file",
     "https://raw.githubusercontent.com/org/repo/v1/deploy.yaml", ""),
    ("https://example.com/manifests/app.yaml", "file", "https://example.com/manifests/app.yaml", ""),
    ("github.com/org/repo//deploy/base?ref=v1.2.0", "archive", "https://codeload.github.com/org/repo/tar.gz/v1.2.0",
     "deploy/base"),
    ("https://github.com/org/repo//deploy?ref=v1", "archive", "https://codeload.github.com/org/repo/tar.gz/v1",
     "deploy"),
    ("https://github.com/org/repo.git/deploy?version=main", "archive",
     "https://codeload.github.com/org/repo/tar.gz/main", "deploy"),
    ("git::https://github.com/org/repo//x?ref=v1&timeout=90s", "archive",
     "https://codeload.github.com/org/repo/tar.gz/v1", "x"),
    ("git@github.com:org/repo.git//deploy?ref=v2", "archive", "https://codeload.github.com/org/repo/tar.gz/v2",
     "deploy"),
    ("ssh://git@github.com/org/repo//deploy", "archive", "https://codeload.github.com/org/repo/tar.gz/HEAD",
     "deploy"),
    ("github.com/org/repo/deploy/overlay?ref=feature/x", "archive",
     "https://codeload.github.com/org/repo/tar.gz/feature/x", "deploy/overlay"),
    ("https://gitlab.com/group/sub/project//deploy?ref=v1", "archive",
     "https://gitlab.com/group/sub/project/-/archive/v1/project-v1.tar.gz", "deploy"),
    ("https://git.example.com/org/repo//deploy?ref=v1", "unsupported", "", ""),
    ("file:///srv/repo//deploy", "unsupported", "", ""),
    ("https://github.com/org/repo//../../etc?ref=v1", "unsupported", "", ""),
])
def test_remote_references_are_read_as_what_to_download(value, kind, url, subpath):
    ref = parse(value)
    assert (ref.kind, ref.url, ref.subpath) == (kind, url, subpath), ref
    if kind == "unsupported":
        assert ref.reason


def test_fields_naming_a_file_only_download_file_urls():
    assert parse("https://github.com/org/repo//p.yaml?ref=v1", repository_ok=False).kind == "file"
    assert parse("github.com/org/repo/p.yaml", repository_ok=False).kind == "unsupported"
    assert parse("https://github.com/org/repo//x?ref=v1", codeload="http://127.0.0.1:1/").url == \
        "http://127.0.0.1:1/org/repo/tar.gz/v1"


def _certificate(tmp_path, name: str):
    """A self-signed certificate for `name` (and the context that trusts it)."""
    import datetime
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_file, key_file)
    client_ctx = ssl.create_default_context(cafile=str(cert_file))
    return server_ctx, client_ctx


def test_https_connects_to_the_checked_address_with_the_real_name_for_sni_and_host(server, tmp_path):
    from bot.fetch.http import Limits, get

    server_ctx, client_ctx = _certificate(tmp_path, "charts.example.test")
    names: list[str | None] = []
    server_ctx.sni_callback = lambda sock, name, ctx: names.append(name)
    server.httpd.socket = server_ctx.wrap_socket(server.httpd.socket, server_side=True)
    server.routes["/index.yaml"] = (200, {}, YAML)
    port = server.httpd.server_address[1]
    url = f"https://charts.example.test:{port}/index.yaml"
    policy = FetchPolicy((f"https://charts.example.test:{port}/",))
    body, final = get(url, policy, Limits(1024, 5), resolver=lambda host, p: ["127.0.0.1"], context=client_ctx)
    assert body == YAML and final == url and names == ["charts.example.test"]
    assert server.requests[0][1]["Host"] == f"charts.example.test:{port}"
    with pytest.raises(FetchFailed, match="TLS"):  # the certificate must name the host asked for
        get(f"https://other.example.test:{port}/index.yaml", FetchPolicy((f"https://other.example.test:{port}/",)),
            Limits(1024, 5), resolver=lambda host, p: ["127.0.0.1"], context=client_ctx)
