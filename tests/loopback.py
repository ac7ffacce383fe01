"""Local HTTP servers for the tests: a free port on 127.0.0.1, every request recorded, every accepted
connection counted (so a test can say that nothing reached a server)."""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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
