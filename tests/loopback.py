"""Local HTTP servers for the tests: a free port on 127.0.0.1, every request recorded, every accepted
connection counted (so a test can say that nothing reached a server); and the processes a server started."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

Route = tuple[int, dict[str, str], bytes] | Callable[[BaseHTTPRequestHandler], None]


class Server:
    """`routes` maps a path to (status, headers, body) or to a function of the request handler; a
    subclass answers by overriding `answer`. `requests`: every GET as (path, headers)."""

    def __init__(self, routes: dict[str, Route] | None = None):
        self.routes: dict[str, Route] = dict(routes or {})
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.connections = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                server.requests.append((self.path, dict(self.headers.items())))
                route = server.answer(self.path)
                if callable(route):
                    route(self)
                    return
                status, headers, body = route or (404, {}, b"")
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                if "Content-Length" not in headers and "Transfer-Encoding" not in headers:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        class Counting(ThreadingHTTPServer):
            daemon_threads = True

            def verify_request(self, request: Any, client_address: Any) -> bool:
                server.connections += 1
                return True

        self.httpd = Counting(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def answer(self, path: str) -> Route | None:
        return self.routes.get(path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def paths(self) -> list[str]:
        return [path for path, _headers in self.requests]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Folder(Server):
    """The files below `root`, by their path (nothing outside it)."""

    def __init__(self, root: Path):
        self.root = root.resolve()
        super().__init__()

    def answer(self, path: str) -> Route | None:
        file = (self.root / urlsplit(path).path.lstrip("/")).resolve()
        return (200, {}, file.read_bytes()) if file.is_relative_to(self.root) and file.is_file() else None


@contextmanager
def spawned(start: Callable[[int], subprocess.Popen], wait_ready: Callable[[int, subprocess.Popen], None],
            attempts: int = 5) -> Iterator[int]:
    """A real server process on a free loopback port: `start(port)` launches it and `wait_ready(port, proc)`
    returns once it answers (RuntimeError when it exited). Another process (an xdist worker starting its
    own) may take the port between the probe and the bind; then the server exits and another port is
    tried. Stopped, with a kill if it lingers, on exit."""
    for attempt in range(attempts):
        port = free_port()
        proc = start(port)
        try:
            wait_ready(port, proc)
            break
        except RuntimeError:
            proc.kill()
            proc.wait()
            if attempt == attempts - 1:
                raise
    try:
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid: int) -> dict[int, str]:
    """The processes below `pid` with their command lines, from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = {}, {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier and child not in found}
        for child in frontier:
            try:
                found[child] = (Path("/proc") / str(child) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                found[child] = ""
    return found


async def store_is_idle(queue_url: str) -> bool:
    """Whether the queue at `queue_url` (another process's) has nothing left to do."""
    from bot.queue import open_queue

    queue = open_queue(queue_url)
    await queue.open()
    try:
        return (await queue.stats()).idle
    finally:
        await queue.close()


async def wait_for_health(session: aiohttp.ClientSession, url: str, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """Until the service at `url` (run by `proc`) answers GET /health with 200; RuntimeError when
    the process exits first or `timeout` seconds pass."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the service exited with {proc.returncode}")
        try:
            async with session.get(f"{url}/health") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise RuntimeError(f"the service did not answer /health in {timeout:g} s")
