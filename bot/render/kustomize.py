"""The renderer of record: the real Kustomize binary, run in a sandbox on a scratch copy.

The scratch copy holds only the files the dependency graph says the target reads, so a path the
scan missed cannot be read; the binary runs with a timeout, an address-space cap, an empty
environment (no HOME, no credentials), proxies pointing at a closed local port and a PATH with
nothing on it (no git), so a remote reference the scan missed still cannot reach the network:
remote entries are fetched by our own policed fetcher (bot.fetch) and placed in the scratch copy.
The directory it builds comes after `--` as `./<dir>`, so no folder name is ever read as an option,
and its output is read as it comes, up to a per-target limit.
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


BUILD_TIMEOUT = setting("INFRA_REVIEW_BUILD_TIMEOUT", 60)
MAX_TARGET_BYTES = int(setting("INFRA_REVIEW_MAX_TARGET_BYTES", 16 * 1024 * 1024))
MAX_STDERR = 64 * 1024  # the head and the tail are kept: a crash says why first, an error last
STDERR_HEAD = 8 * 1024
MEMORY_CAP = 2 * 1024**3
FILE_SIZE_CAP = 64 * 1024 * 1024  # the build writes no files; this bounds any it tries to
CLOSED_PROXY = "http://127.0.0.1:9"
STOP_POLL = 0.2  # seconds between looks at the review's deadline while a build runs
_CHUNK = 1024 * 1024


class RendererMissing(RuntimeError):
    """No Kustomize binary could be found."""


@dataclass(frozen=True)
class Kustomize:
    argv: tuple[str, ...]  # the command before the directory: ("kustomize", "build") or ("kubectl", "kustomize")
    version: str

    def __str__(self) -> str:
        return f"{Path(self.argv[0]).name} {' '.join(self.argv[1:])} (Kustomize {self.version})"


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20, env=_sandbox_env(), check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    text = out.stdout + out.stderr
    m = re.search(r"Kustomize Version:\s*(v?[\w.\-+]+)", text) or re.search(r"(v\d+\.\d+\.\d+)", text)
    return m.group(1) if m else "unknown"


@lru_cache(maxsize=4)
def find_kustomize(explicit: str | None = None) -> Kustomize:
    """`KUSTOMIZE_BIN` if set, else `kustomize` on PATH, else `kubectl kustomize`."""
    explicit = explicit or os.environ.get("KUSTOMIZE_BIN")
    if explicit:
        path = shutil.which(explicit)
        if not path:
            raise RendererMissing(f"KUSTOMIZE_BIN={explicit!r} is not an executable: point it at a kustomize binary")
        name = Path(path).name
        if name.startswith("kubectl"):
            return Kustomize((path, "kustomize"), _version([path, "version", "--client"]))
        return Kustomize((path, "build"), _version([path, "version"]))
    venv_bin = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "kustomize"
    for candidate in (shutil.which("kustomize"), str(venv_bin) if venv_bin.is_file() else None):
        if candidate:
            return Kustomize((candidate, "build"), _version([candidate, "version"]))
    kubectl = shutil.which("kubectl")
    if kubectl:
        return Kustomize((kubectl, "kustomize"), _version([kubectl, "version", "--client"]))
    raise RendererMissing(
        "no Kustomize found: install kustomize or kubectl, set KUSTOMIZE_BIN, or run `make venv` "
        "to install the pinned release into .venv/bin"
    )


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


def _sandbox_env() -> dict[str, str]:
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


def _limits() -> None:  # runs in the child before exec
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
    """The build printed more than the per-target limit."""


def _size(n: int) -> str:
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= factor and n % factor == 0:
            return f"{n // factor} {unit}"
    return f"{n} bytes"


UNRESTRICTED = ("--load-restrictor", "LoadRestrictionsNone")


def build_argv(kz: Kustomize, directory: str, unrestricted: bool = False) -> list[str]:
    """The build command for a directory: after `--` and as `./<dir>`, so that no folder name, such
    as `--output=/some/file` or `-x`, can be read as an option. `unrestricted`: with Kustomize's load
    restrictions off, as Flux's kustomize-controller builds (files outside the kustomization's folder
    may be read; the scratch copy holds only repository files, so nothing else can be)."""
    if directory != "." and not directory.startswith(("/", "./")):
        directory = f"./{directory}"
    return [*kz.argv, *(UNRESTRICTED if unrestricted else ()), "--", directory]


def _read_bounded(proc: subprocess.Popen, deadline: float, max_output: int, stop: Deadline) -> tuple[bytes, bytes]:
    """All of stdout (up to `max_output`) and the tail of stderr, read as they come; Stopped as soon
    as `stop` says the work it is part of must stop."""
    out, err = bytearray(), bytearray()
    assert proc.stdout is not None and proc.stderr is not None  # both are pipes
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ, out)
        sel.register(proc.stderr, selectors.EVENT_READ, err)
        while sel.get_map():
            stop.check()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            for key, _ in sel.select(min(remaining, STOP_POLL)):
                chunk = os.read(key.fd, _CHUNK)
                if not chunk:
                    sel.unregister(key.fileobj)
                key.data.extend(chunk)
                if len(out) > max_output:
                    raise _OutputLimit(f"the build printed more than {_size(max_output)}, the per-target "
                                       "output limit (INFRA_REVIEW_MAX_TARGET_BYTES), and was stopped")
                if len(err) > MAX_STDERR:
                    del err[STDERR_HEAD:len(err) - (MAX_STDERR - STDERR_HEAD)]
    return bytes(out), bytes(err)


def _kill_group(proc: subprocess.Popen) -> None:
    """The build and anything it started (it leads its own session); called before it is reaped, so
    the group id cannot belong to anyone else yet."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def run_build(kz: Kustomize, workdir: Path, directory: str, timeout: float = BUILD_TIMEOUT,
              max_output: int | None = None, stop: Deadline | None = None, unrestricted: bool = False) -> RunResult:
    """Run `kustomize build <directory>` inside `workdir` in the sandbox. Its output is read as it
    comes and the build is killed (with everything it started) past `timeout` or past `max_output`
    bytes (default MAX_TARGET_BYTES), so neither a slow nor a huge build holds the service; and when
    `stop` says the review it belongs to must stop (then Stopped is raised). `unrestricted`: load
    restrictions off (build_argv)."""
    limit = MAX_TARGET_BYTES if max_output is None else max_output
    stop = stop or Deadline()
    stop.check()
    try:
        proc = subprocess.Popen(build_argv(kz, directory, unrestricted), cwd=workdir, env=_sandbox_env(),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                preexec_fn=_limits, start_new_session=True)
    except OSError as exc:
        return RunResult(127, "", f"cannot run {kz.argv[0]}: {exc.strerror or exc}")
    deadline = time.monotonic() + timeout
    with proc:
        try:
            out, err = _read_bounded(proc, deadline, limit, stop)
            proc.wait(max(deadline - time.monotonic(), 0))
        except (TimeoutError, subprocess.TimeoutExpired):
            _kill_group(proc)
            return RunResult(124, "", f"kustomize build timed out after {timeout:.0f}s, the per-target limit "
                                      "(INFRA_REVIEW_BUILD_TIMEOUT), and was stopped", stopped=True)
        except _OutputLimit as exc:
            _kill_group(proc)
            return RunResult(1, "", str(exc), stopped=True)
        except BaseException:
            _kill_group(proc)
            raise
    return RunResult(proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))


_KLOG = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ [^\]\s]+:\d+\] ?(.*)$")
_GO_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\",
               '"': '"', "'": "'"}
_OUT_OF_MEMORY = re.compile(r"^(?:fatal error: out of memory|runtime: out of memory|fatal error: runtime: cannot "
                            r"allocate memory|runtime: cannot allocate memory)", re.M)
_CRASH = re.compile(r"^(?:panic: |fatal error: )(.+)$", re.M)
_STACK = re.compile(r"^goroutine \d+ \[", re.M)
# Kustomize tries every `resources:` entry as a file and then as a folder, and reports both attempts;
# only the one that matches what the entry is says anything.
_AS_FOLDER = re.compile(r"accumulation err='accumulating resources from '([^']*)': '[^']*' must resolve to a file': "
                        r"(?:recursed accumulation of path '[^']*': )?")
_AS_FILE = re.compile(r"accumulation err='(.*)': must build at directory: (?:not a valid directory: .*|'[^']*': "
                      r"file is not directory)$")
_REPEATED = re.compile(r"accumulating resources: (?=(?:accumulating|merging) resources from ')")


def _go_unquote(text: str, start: int) -> str:
    """The Go-quoted string (strconv.Quote) starting at the quote at `start`, unescaped; up to the end
    of the text when it is not closed."""
    out: list[str] = []
    i = start + 1
    while i < len(text):
        c = text[i]
        if c == '"':
            break
        if c == "\\" and i + 1 < len(text):
            e = text[i + 1]
            width = {"x": 2, "u": 4, "U": 8}.get(e)
            if width and re.fullmatch(r"[0-9a-fA-F]+", text[i + 2:i + 2 + width] or "-"):
                code = int(text[i + 2:i + 2 + width], 16)
                out.append(chr(code) if code <= 0x10FFFF else "\ufffd")
                i += 2 + width
                continue
            out.append(_GO_ESCAPES.get(e, "\\" + e))
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _klog_error(lines: list[str]) -> str | None:
    """The `err` of the last error klog wrote (`E1201 17:09:32.699923 25153 run.go:72] "command failed"
    err="..."`), else its message; None when kubectl logged nothing."""
    found = None
    for i, line in enumerate(lines):
        m = _KLOG.match(line)
        if not m or line[0] not in "EF":
            continue
        rest = m.group(1)
        key = rest.find(" err=")
        if key >= 0 and rest[key + 5:key + 6] == '"':
            found = _go_unquote(rest, key + 5)
        elif key >= 0 and rest[key + 5:].startswith("<"):
            # klog's form for a value of several lines: err=<, the lines indented by a tab, then " >".
            block = []
            for follow in lines[i + 1:]:
                if follow.strip() == ">":
                    break
                block.append(follow[1:] if follow.startswith("\t") else follow)
            found = " ".join(ln.strip() for ln in block if ln.strip())
        elif rest.startswith('"'):
            found = _go_unquote(rest, 0)
        else:
            found = rest
    return found


def _plain(message: str) -> str:
    """Kustomize's sentence without the attempt that did not apply (see _AS_FOLDER, _AS_FILE)."""
    message = _AS_FOLDER.sub(lambda m: f"accumulating resources from '{m.group(1)}': ", message)
    while (m := _AS_FILE.search(message)) is not None:
        message = message[:m.start()] + m.group(1)
    return _REPEATED.sub("", message).strip()


def clean_error(stderr: str, workdir: Path | None = None, returncode: int | None = None) -> str:
    """Why a build failed, in one sentence: kustomize's own error (from kubectl's klog line or
    kustomize's `Error:` line) without log prefixes, timestamps or stack traces, scratch paths made
    repository-relative; a crash, a kill or running out of memory said in words, with the limit."""
    text = stderr.strip()
    if workdir is not None:
        for base in dict.fromkeys((str(workdir), str(Path(workdir).resolve()))):
            text = text.replace(base + "/", "").replace(base, ".")
    if _OUT_OF_MEMORY.search(text):
        return f"kustomize ran out of memory (limit {_size(MEMORY_CAP)})"
    if returncode is not None and returncode < 0:
        sig = -returncode
        name = signal.Signals(sig).name if sig in signal.valid_signals() else f"signal {sig}"
        if sig == signal.SIGKILL:
            return f"kustomize was killed ({name}), most likely for running out of memory (limit {_size(MEMORY_CAP)})"
        return f"kustomize crashed: killed by {name}"
    crash = _CRASH.search(text)
    if crash and (_STACK.search(text) or crash.group(0).startswith("fatal error")):
        return f"kustomize crashed: {crash.group(1).removesuffix(' [recovered]').strip()}"
    lines = [ln for ln in text.splitlines() if ln.strip()]
    said = _klog_error(lines)
    if said is None:
        errs = [ln for ln in lines if ln.startswith(("Error:", "error:"))]
        said = re.sub(r"^(Error|error):\s*", "", errs[-1]) if errs else None
    if said is None and _STACK.search(text):
        return "kustomize crashed"
    if said is None:
        said = lines[-1] if lines else ""
    said = _plain(" ".join(ln.strip() for ln in said.splitlines()))
    if not said:
        return f"kustomize failed (exit status {returncode})" if returncode else "kustomize build failed"
    return said
