"""The sandbox every renderer runs in: a child process that can reach nothing we did not hand it.

A repository in a pull request is untrusted input to a template engine (Kustomize, Helm), so the engine
runs as a child with an empty environment (no HOME, no credentials, no KUBECONFIG), proxies pointing at
a closed local port, a PATH with nothing on it, an address-space cap, a file-size cap and no core
dumps; it leads its own session, so a timeout, an output limit or the review's deadline kills it with
everything it started. Its output is read as it comes, up to a cap, so a huge render is stopped
without being buffered; only the head and the tail of its stderr are kept.
"""

from __future__ import annotations

import atexit
import os
import re
import resource
import selectors
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from bot.deadline import Deadline


def setting(name: str, default: float) -> float:
    """A positive number from the environment; a malformed value stops the program with its name."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise ValueError(f"{name}={raw!r}: expected a positive number")
    return value


MAX_TARGET_BYTES = int(setting("INFRA_REVIEW_MAX_TARGET_BYTES", 16 * 1024 * 1024))
MAX_STDERR = 64 * 1024  # the head and the tail are kept: a crash says why first, an error last
STDERR_HEAD = 8 * 1024
MEMORY_CAP = 2 * 1024**3
FILE_SIZE_CAP = 64 * 1024 * 1024  # renderers write no files; this bounds any they try to
CLOSED_PROXY = "http://127.0.0.1:9"
STOP_POLL = 0.2  # seconds between looks at the review's deadline while a child runs
_CHUNK = 1024 * 1024


@lru_cache(maxsize=1)
def _empty_bin() -> str:
    """A directory of this process's own for the sandbox's PATH: mkdtemp makes it unguessable and
    0700, so no other user can create it first or put a program in it; removed at exit."""
    path = tempfile.mkdtemp(prefix="infra-review-nobin-")
    atexit.register(shutil.rmtree, path, True)
    return path


def _private_and_empty(path: str) -> bool:
    try:
        info = os.lstat(path)
        return (stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()
                and stat.S_IMODE(info.st_mode) == 0o700 and not os.listdir(path))
    except OSError:
        return False


def _sandbox_path() -> str:
    """`_empty_bin()`, replaced by a fresh one if it is ever no longer empty and ours."""
    path = _empty_bin()
    if not _private_and_empty(path):
        _empty_bin.cache_clear()
        path = _empty_bin()
    return path


def sandbox_env() -> dict[str, str]:
    """The whole environment of a sandboxed child: built from nothing, so no variable of ours leaks."""
    env = {
        "PATH": _sandbox_path(),
        "HOME": "/nonexistent",
        "KUBECONFIG": "/dev/null",
        "GOMEMLIMIT": "1GiB",
        "GIT_TERMINAL_PROMPT": "0",
        "LANG": "C.UTF-8",
    }
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        env[var] = CLOSED_PROXY
    env["NO_PROXY"] = env["no_proxy"] = ""
    return env


def limits() -> None:  # runs in the child before exec
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_CAP, FILE_SIZE_CAP))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


@dataclass(frozen=True)
class RunResult:
    returncode: int
    stdout: str
    stderr: str
    stopped: bool = False  # killed by us (timeout, output limit): says nothing lasting about the inputs


class _OutputLimit(Exception):
    """The child printed more than its output limit."""


def size(n: int) -> str:
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= factor and n % factor == 0:
            return f"{n // factor} {unit}"
    return f"{n} bytes"


def _communicate(proc: subprocess.Popen, stdin: bytes, deadline: float, max_output: int, stop: Deadline,
                 over: str) -> tuple[bytes, bytes]:
    """Feed `stdin` and read all of stdout (up to `max_output`, else _OutputLimit(over)) and the tail
    of stderr, as they come; Stopped as soon as `stop` says the work it is part of must stop."""
    out, err = bytearray(), bytearray()
    pending = memoryview(stdin)
    assert proc.stdout is not None and proc.stderr is not None  # both are pipes
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ, out)
        sel.register(proc.stderr, selectors.EVENT_READ, err)
        if proc.stdin is not None:
            os.set_blocking(proc.stdin.fileno(), False)
            sel.register(proc.stdin, selectors.EVENT_WRITE)
        while sel.get_map():
            stop.check()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            for key, _ in sel.select(min(remaining, STOP_POLL)):
                if key.fileobj is proc.stdin:
                    try:
                        pending = pending[os.write(key.fd, pending[:_CHUNK]):]
                    except BrokenPipeError:  # it stopped reading: what it prints says why
                        pending = pending[:0]
                    if not pending:
                        sel.unregister(key.fileobj)
                        proc.stdin.close()
                    continue
                chunk = os.read(key.fd, _CHUNK)
                if not chunk:
                    sel.unregister(key.fileobj)
                key.data.extend(chunk)
                if len(out) > max_output:
                    raise _OutputLimit(over)
                if len(err) > MAX_STDERR:
                    del err[STDERR_HEAD:len(err) - (MAX_STDERR - STDERR_HEAD)]
    return bytes(out), bytes(err)


def kill_group(proc: subprocess.Popen) -> None:
    """The child and anything it started (it leads its own session); called before it is reaped, so
    the group id cannot belong to anyone else yet."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def run_sandboxed(argv: Sequence[str], cwd: Path | str, *, timeout: float, max_output: int, stop: Deadline | None,
                  what: str, timeout_setting: str, scope: str = "per-target", printer: str | None = None,
                  env_extra: Mapping[str, str] | None = None, stdin_bytes: bytes | None = None) -> RunResult:
    """Run `argv` in `cwd` in the sandbox, with `env_extra` over sandbox_env() and `stdin_bytes` on its
    stdin (else /dev/null). It is killed, with everything it started, past `timeout` seconds or past
    `max_output` bytes of stdout (then `stopped`, with a sentence naming the limit and its setting:
    `what` ("kustomize build") timed out, `printer` (default `what`) printed more than ...), and when
    `stop` says the work it belongs to must stop (then Stopped is raised)."""
    stop = stop or Deadline()
    stop.check()
    env = {**sandbox_env(), **(env_extra or {})}
    try:
        proc = subprocess.Popen(list(argv), cwd=cwd, env=env,
                                stdin=subprocess.DEVNULL if stdin_bytes is None else subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=limits,
                                start_new_session=True)
    except OSError as exc:
        return RunResult(127, "", f"cannot run {argv[0]}: {exc.strerror or exc}")
    over = (f"{printer or what} printed more than {size(max_output)}, the {scope} output limit "
            "(INFRA_REVIEW_MAX_TARGET_BYTES), and was stopped")
    deadline = time.monotonic() + timeout
    with proc:
        try:
            out, err = _communicate(proc, stdin_bytes or b"", deadline, max_output, stop, over)
            proc.wait(max(deadline - time.monotonic(), 0))
        except (TimeoutError, subprocess.TimeoutExpired):
            kill_group(proc)
            return RunResult(124, "", f"{what} timed out after {timeout:.0f}s, the {scope} limit "
                                      f"({timeout_setting}), and was stopped", stopped=True)
        except _OutputLimit as exc:
            kill_group(proc)
            return RunResult(1, "", str(exc), stopped=True)
        except BaseException:
            kill_group(proc)
            raise
    return RunResult(proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))


_OUT_OF_MEMORY = re.compile(r"^(?:fatal error: out of memory|runtime: out of memory|fatal error: runtime: cannot "
                            r"allocate memory|runtime: cannot allocate memory)", re.M)
_CRASH = re.compile(r"^(?:panic: |fatal error: )(.+)$", re.M)
_STACK = re.compile(r"^goroutine \d+ \[", re.M)


def out_of_memory(who: str, stderr: str) -> str | None:
    """The sentence for a Go runtime that could not get memory (with the cap), else None."""
    return f"{who} ran out of memory (limit {size(MEMORY_CAP)})" if _OUT_OF_MEMORY.search(stderr) else None


def killed(who: str, returncode: int | None) -> str | None:
    """The sentence for a child ended by a signal, else None; SIGKILL is what the kernel sends when
    memory runs out."""
    if returncode is None or returncode >= 0:
        return None
    sig = -returncode
    name = signal.Signals(sig).name if sig in signal.valid_signals() else f"signal {sig}"
    if sig == signal.SIGKILL:
        return f"{who} was killed ({name}), most likely for running out of memory (limit {size(MEMORY_CAP)})"
    return f"{who} crashed: killed by {name}"


def go_crash(who: str, stderr: str) -> str | None:
    """The sentence for a Go panic or fatal error, else None."""
    crash = _CRASH.search(stderr)
    if crash and (_STACK.search(stderr) or crash.group(0).startswith("fatal error")):
        return f"{who} crashed: {crash.group(1).removesuffix(' [recovered]').strip()}"
    return None


def has_stack(stderr: str) -> bool:
    return _STACK.search(stderr) is not None
