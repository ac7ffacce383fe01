"""The harness of the hostile-content suite (tests/test_hostile_content*.py): a secret outside the
repository that no output may show, a guard against network use, and a whole `check` run bounded in
time, in process or in a child whose memory is measured.

What the guards see, and what they do not:

- `network_guard` replaces `socket.socket.connect`/`connect_ex`, `socket.create_connection` and
  `socket.getaddrinfo` in this process: a connection to an address that is not loopback, or a name
  lookup of anything but an IP literal or `localhost`, is recorded and fails with OSError, and the
  test fails. It covers what runs in the test's own process (discovery, the fetcher, the rules). It
  does not see the sandboxed children (kustomize, the Helm child), which make their own system calls:
  those run with an empty environment and every proxy variable pointing at 127.0.0.1:9 (the sandbox,
  bot/render/sandbox.py), and the CLI runs of this suite get the same proxies and `--offline`. A child
  that opened a raw socket itself would not be seen; there is no network namespace here.
- `reads_outside` is an audit hook (sys.addaudithook) on `open`, `os.listdir` and `os.scandir` in this
  process: any of them on a path under the sentinel folder fails the test. Children are not audited;
  what they could read reaches us only through their output, which is why the sentinel holds a secret
  that each case looks for in every output (the JSON report, stderr).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest_paths import REPO
from trees import flux_kustomization, write

from bot.config import Config
from bot.model import Finding
from bot.publish.jsonout import render_json
from bot.publish.report import Report
from bot.publish.text import render_text
from bot.render.build import DiskCache
from bot.review.pipeline import run_check

SECRET = f"sentinel-{uuid.uuid4().hex}"  # in the files outside the repository; never in any output
CASE_TIMEOUT = 60.0  # seconds one whole check may take
MEMORY_CAP = 512 * 2**20  # bytes of RSS one CLI run (with its children) may reach
CLOSED = "http://127.0.0.1:9"
OFFLINE = dataclasses.replace(Config.default(), fetch_enabled=False)

# A Deployment whose image holds the secret: were it ever rendered, latest-tag would quote the image.
SECRET_MANIFEST = f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: stolen
spec:
  template:
    spec:
      containers:
      - name: x
        image: registry.example/{SECRET}:latest
"""
KFILE = "overlays/production/kustomization.yaml"
CONFIGMAP = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  k: v\n"


# --- the secret outside ----------------------------------------------------------------------------

@dataclasses.dataclass
class Layout:
    """`repo` and, beside it, `outside` (the sentinel folder: a manifest, a kustomization, an env file
    and a chart, each holding SECRET)."""

    repo: Path
    outside: Path
    fifos: list[Path] = dataclasses.field(default_factory=list)
    sockets: list[socket.socket] = dataclasses.field(default_factory=list)

    def fifo(self, rel: str) -> Path:
        path = self.repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(path)
        self.fifos.append(path)
        return path

    def unix_socket(self, rel: str) -> Path:
        """A listening UNIX socket at `rel` (bound from its folder: socket paths are short)."""
        path = self.repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        here = os.getcwd()
        os.chdir(path.parent)
        try:
            sock.bind(path.name)
        finally:
            os.chdir(here)
        sock.listen(1)
        self.sockets.append(sock)
        return path

    def close(self) -> None:
        """Free anything a hung reader waits on: a FIFO opened for reading gets its end of file."""
        for fifo in self.fifos:
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
        for sock in self.sockets:
            sock.close()


def layout_fixture(tmp_path: Path) -> Iterator[Layout]:
    """The `layout` fixture of the hostile suites: the repository and the sentinel beside it; any
    read under the sentinel by this process fails the test."""
    outside = write(tmp_path / "outside", {
        "secret.yaml": SECRET_MANIFEST,
        "kustomization.yaml": "resources:\n- secret.yaml\n",
        "secret.env": f"TOKEN={SECRET}\n",
        "chart/Chart.yaml": "apiVersion: v2\nname: stolen\nversion: 1.0.0\n",
        "chart/templates/x.yaml": SECRET_MANIFEST,
    })
    found = _Reads(outside)
    _WATCHED.append(found)
    layout = Layout(tmp_path / "repo", outside)
    layout.repo.mkdir()
    try:
        yield layout
    finally:
        _WATCHED.remove(found)
        layout.close()
    assert not found.paths, f"read outside the repository: {found.paths[:5]}"


@dataclasses.dataclass
class _Reads:
    folder: Path
    paths: list[str] = dataclasses.field(default_factory=list)


_WATCHED: list[_Reads] = []


def watched() -> list[str]:
    """The reads under the current test's sentinel folder so far (the list itself)."""
    return _WATCHED[-1].paths
_AUDITED = ("open", "os.listdir", "os.scandir")


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if not _WATCHED or event not in _AUDITED or not args:
        return
    target = args[0]
    if isinstance(target, int) or target is None:
        return
    try:
        path = os.path.realpath(os.fsdecode(target))
    except (TypeError, ValueError):
        return
    for watch in _WATCHED:
        if path == str(watch.folder) or path.startswith(str(watch.folder) + os.sep):
            watch.paths.append(path)


sys.addaudithook(_audit)  # hooks stay for the process's life: this one does nothing while nothing is watched


# --- the network guard -----------------------------------------------------------------------------

def _loopback(host: object) -> bool:
    if not isinstance(host, str):
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _literal(host: object) -> bool:
    try:
        ipaddress.ip_address(str(host).strip("[]").split("%")[0])
    except ValueError:
        return False
    return True


def network_guard_fixture(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every in-process connection to a non-loopback address, and every name lookup of something that
    is neither an IP literal nor localhost, refused (OSError) and recorded; the test fails on any."""
    attempts: list[str] = []
    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex
    create, lookup = socket.create_connection, socket.getaddrinfo

    def allowed(address: Any) -> bool:
        return isinstance(address, (str, bytes)) or (isinstance(address, tuple) and _loopback(address[0]))

    def guarded_connect(self: socket.socket, address: Any) -> None:
        if not allowed(address):
            attempts.append(f"connect {address!r}")
            raise OSError(f"hostile-content suite: no network ({address!r})")
        return connect(self, address)

    def guarded_connect_ex(self: socket.socket, address: Any) -> int:
        if not allowed(address):
            attempts.append(f"connect_ex {address!r}")
            raise OSError(f"hostile-content suite: no network ({address!r})")
        return connect_ex(self, address)

    def guarded_create(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        if not allowed(address):
            attempts.append(f"create_connection {address!r}")
            raise OSError(f"hostile-content suite: no network ({address!r})")
        return create(address, *args, **kwargs)

    def guarded_lookup(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not _loopback(host) and not _literal(host):
            attempts.append(f"getaddrinfo {host!r}")
            raise socket.gaierror(socket.EAI_NONAME, f"hostile-content suite: no name lookups ({host!r})")
        return lookup(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)
    monkeypatch.setattr(socket, "create_connection", guarded_create)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_lookup)
    yield attempts
    assert not attempts, f"network use: {attempts}"


# --- a whole check, bounded ------------------------------------------------------------------------

@dataclasses.dataclass
class Checked:
    report: Report
    seconds: float

    def of(self, *rules: str) -> list[Finding]:
        return [f for f in self.report.findings if f.rule in rules]

    def at(self, rules: tuple[str, ...], file: str, line: int | None = None) -> Finding:
        """The finding of one of `rules` at `file` (and `line`); fails listing every finding."""
        for f in self.of(*rules):
            if f.origin is not None and f.origin.file == file and (line is None or f.origin.line == line):
                return f
        raise AssertionError(f"no {'/'.join(rules)} at {file}:{line}; findings: "
                             f"{[(f.rule, f.origin and f.origin.file, f.origin and f.origin.line, f.message[:160]) for f in self.report.findings]}"
                             f"; notes: {self.report.notes}")


def check(root: Path, config: Config = OFFLINE, **kwargs: Any) -> Checked:
    """`run_check` of `root` in a thread bounded by CASE_TIMEOUT (a hang fails the test instead of
    hanging it); its outputs must not hold SECRET."""
    result: dict[str, Any] = {}

    def work() -> None:
        try:
            result["report"] = run_check(root, None, config, cache=DiskCache(None), **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            result["error"] = exc

    started = time.monotonic()
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(CASE_TIMEOUT)
    seconds = time.monotonic() - started
    assert not thread.is_alive(), f"check did not finish in {CASE_TIMEOUT:.0f} s (a hang)"
    if "error" in result:
        raise result["error"]
    report: Report = result["report"]
    for out in (render_json(report), render_text(report)):
        assert SECRET not in out, "the report shows what lies outside the repository"
    return Checked(report, seconds)


@dataclasses.dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    max_rss: int  # bytes: the largest resident set of the run and everything it waited for

    @property
    def doc(self) -> dict[str, Any]:
        try:
            return json.loads(self.stdout)
        except ValueError:
            raise AssertionError(f"no JSON report (rc {self.returncode}): {self.stderr[-2000:]}") from None

    def findings(self, *rules: str) -> list[dict[str, Any]]:
        return [f for f in self.doc["findings"] if f["rule"] in rules]


def run_cli(root: Path, *args: str, env: dict[str, str] | None = None, offline: bool = True,
            timeout: float = CASE_TIMEOUT) -> Ran:
    """`infra-review check ROOT --format json [--offline] ARGS` in a child (bare environment, proxies at a
    closed local port), killed with its process group past `timeout`. Its peak memory is read with
    wait4, which reports the child with the descendants it waited for (kustomize, the Helm child),
    and nothing of the other runs of this worker. No Traceback, and no SECRET, in anything it printed."""
    argv = [sys.executable, "-m", "bot", "check", str(root), "--format", "json", *(("--offline",) if offline else ()),
            *args]
    base = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(root.parent),
            "INFRA_REVIEW_CACHE": os.environ.get("INFRA_REVIEW_CACHE") or str(root.parent / ".cache"),
            **{v: CLOSED for v in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy")}}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        proc = subprocess.Popen(argv, cwd=root.parent, stdout=out, stderr=err, env={**base, **(env or {})},
                                start_new_session=True)
        status, usage = _wait(proc, started + timeout)
        seconds = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        ran = Ran(status, out.read().decode(errors="replace"), err.read().decode(errors="replace"), seconds,
                  usage.ru_maxrss * 1024)
    assert status != -signal.SIGKILL or seconds < timeout, f"the run did not finish in {timeout:.0f} s (a hang)"
    assert "Traceback" not in ran.stderr, ran.stderr[-3000:]
    assert SECRET not in ran.stdout and SECRET not in ran.stderr, "an output shows what lies outside the repository"
    assert ran.max_rss < MEMORY_CAP, f"peak RSS {ran.max_rss / 2**20:.0f} MiB"
    return ran


def _wait(proc: subprocess.Popen, deadline: float) -> tuple[int, Any]:
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
            return proc.returncode, usage
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pid, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage
        time.sleep(0.05)


@contextmanager
def timed(limit: float) -> Iterator[None]:
    started = time.monotonic()
    yield
    spent = time.monotonic() - started
    assert spent < limit, f"{spent:.1f} s, over {limit:.0f} s"


# --- small repositories ----------------------------------------------------------------------------

def overlay(layout: Layout, kustomization: str, files: dict[str, str] | None = None) -> Path:
    """`overlays/production` with this kustomization (and its files) in the repository."""
    return write(layout.repo, {KFILE: kustomization,
                               **{f"overlays/production/{k}": v for k, v in (files or {}).items()}})


def flux_repo(layout: Layout, files: dict[str, str], path: str = "./deploy") -> Path:
    """A production cluster whose `apps` Kustomization applies `path`."""
    return write(layout.repo, {"clusters/production/apps.yaml": flux_kustomization(path), **files})
