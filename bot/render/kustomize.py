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

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from bot.deadline import Deadline

# The sandbox was born here: its names that callers and tests import from this module stay importable.
from bot.render.sandbox import MAX_STDERR as MAX_STDERR
from bot.render.sandbox import (
    MAX_TARGET_BYTES,
    RunResult,
    go_crash,
    has_stack,
    killed,
    out_of_memory,
    run_sandboxed,
)
from bot.render.sandbox import _empty_bin as _empty_bin
from bot.render.sandbox import sandbox_env as _sandbox_env
from bot.render.sandbox import setting as setting

BUILD_TIMEOUT = setting("INFRA_REVIEW_BUILD_TIMEOUT", 60)
# Go's collector off until the heap nears 384 MiB: a build lives a tenth of a second and most never
# get there, yet at Go's default (GOGC=100) collecting took 40 % of its CPU and a second core (90
# builds two at a time: 12.2 CPU-seconds and 6.4 s, against 8.1 and 4.2 s; peak RSS 87 -> 99 MiB).
# Past the limit the collector runs as often as it must, so a large build is still bounded: below
# the sandbox's address-space cap, and the 512 MiB the hostile-input suite allows a review.
BUILD_GC = {"GOGC": "off", "GOMEMLIMIT": "384MiB"}


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


UNRESTRICTED = ("--load-restrictor", "LoadRestrictionsNone")


def build_argv(kz: Kustomize, directory: str, unrestricted: bool = False) -> list[str]:
    """The build command for a directory: after `--` and as `./<dir>`, so that no folder name, such
    as `--output=/some/file` or `-x`, can be read as an option. `unrestricted`: with Kustomize's load
    restrictions off, as Flux's kustomize-controller builds (files outside the kustomization's folder
    may be read; the scratch copy holds only repository files, so nothing else can be)."""
    if directory != "." and not directory.startswith(("/", "./")):
        directory = f"./{directory}"
    return [*kz.argv, *(UNRESTRICTED if unrestricted else ()), "--", directory]


def run_build(kz: Kustomize, workdir: Path, directory: str, timeout: float = BUILD_TIMEOUT,
              max_output: int | None = None, stop: Deadline | None = None, unrestricted: bool = False) -> RunResult:
    """Run `kustomize build <directory>` inside `workdir` in the sandbox (bot.render.sandbox): killed,
    with everything it started, past `timeout` or past `max_output` bytes (default MAX_TARGET_BYTES),
    so neither a slow nor a huge build holds the service; and when `stop` says the review it belongs
    to must stop (then Stopped is raised). `unrestricted`: load restrictions off (build_argv)."""
    return run_sandboxed(build_argv(kz, directory, unrestricted), workdir, timeout=timeout, env_extra=BUILD_GC,
                         max_output=MAX_TARGET_BYTES if max_output is None else max_output, stop=stop,
                         what="kustomize build", printer="the build", timeout_setting="INFRA_REVIEW_BUILD_TIMEOUT")


_KLOG = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ [^\]\s]+:\d+\] ?(.*)$")
_GO_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\",
               '"': '"', "'": "'"}
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
    crash = out_of_memory("kustomize", text) or killed("kustomize", returncode) or go_crash("kustomize", text)
    if crash:
        return crash
    lines = [ln for ln in text.splitlines() if ln.strip()]
    said = _klog_error(lines)
    if said is None:
        errs = [ln for ln in lines if ln.startswith(("Error:", "error:"))]
        said = re.sub(r"^(Error|error):\s*", "", errs[-1]) if errs else None
    if said is None and has_stack(text):
        return "kustomize crashed"
    if said is None:
        said = lines[-1] if lines else ""
    said = _plain(" ".join(ln.strip() for ln in said.splitlines()))
    if not said:
        return f"kustomize failed (exit status {returncode})" if returncode else "kustomize build failed"
    return said
