"""The renderer of record: the real Kustomize binary, run in a sandbox on a scratch copy.

The scratch copy holds only the files the dependency graph says the target reads, so a path the
scan missed cannot be read; the binary runs with a timeout, an address-space cap, an empty
environment (no HOME, no credentials), proxies pointing at a closed local port and a PATH with
nothing on it (no git), so a remote reference the scan missed still cannot reach the network.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

BUILD_TIMEOUT = float(os.environ.get("INFRA_REVIEW_BUILD_TIMEOUT", "60"))
MEMORY_CAP = 2 * 1024**3
MAX_OUTPUT = 64 * 1024 * 1024
CLOSED_PROXY = "http://127.0.0.1:9"


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
    """An empty directory for the sandbox's PATH (one per user, reused; emptied if tampered with)."""
    path = Path(tempfile.gettempdir()) / f"infra-review-nobin-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    for entry in path.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    return str(path)


def _sandbox_env() -> dict[str, str]:
    env = {
        "PATH": _empty_bin(),
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
    resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_OUTPUT, MAX_OUTPUT))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


@dataclass(frozen=True)
class RunResult:
    returncode: int
    stdout: str
    stderr: str


def run_build(kz: Kustomize, workdir: Path, directory: str, timeout: float = BUILD_TIMEOUT) -> RunResult:
    """Run `kustomize build <directory>` inside `workdir` in the sandbox."""
    argv = [*kz.argv, directory]
    try:
        proc = subprocess.run(
            argv, cwd=workdir, env=_sandbox_env(), capture_output=True, timeout=timeout,
            preexec_fn=_limits, start_new_session=True, check=False,
        )
    except subprocess.TimeoutExpired:
        return RunResult(124, "", f"kustomize build timed out after {timeout:.0f}s")
    if len(proc.stdout) > MAX_OUTPUT:
        return RunResult(1, "", f"kustomize output exceeds {MAX_OUTPUT} bytes")
    return RunResult(proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace"))


def clean_error(stderr: str, workdir: Path | None = None) -> str:
    """Kustomize's message for people: the last `Error:` line, scratch paths removed."""
    text = stderr.strip()
    if workdir is not None:
        text = text.replace(str(workdir) + "/", "").replace(str(workdir), ".")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    errs = [ln for ln in lines if ln.startswith("Error:") or ln.startswith("error:")]
    msg = (errs[-1] if errs else (lines[-1] if lines else "kustomize build failed"))
    return re.sub(r"^(Error|error):\s*", "", msg)
