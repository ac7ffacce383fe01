"""The one way infra-review runs git (local `check --base REF`, `review`, the demo)."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path


class GitError(RuntimeError):
    """git could not run, or refused; the message is git's own last line."""


def git(repo: Path, *command: str, operands: Sequence[str] = (), paths: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None, timeout: float = 120) -> bytes:
    """Run `git -C REPO COMMAND --end-of-options OPERANDS [-- PATHS]` and return its stdout.

    The one way we run git: refs and paths, which users and repositories supply, go in `operands`
    or `paths`, after `--end-of-options` or `--`, so none of them can be read as an option.
    """
    argv = ["git", "-C", str(repo), *command]
    if operands:
        argv += ["--end-of-options", *operands]
    if paths is not None:
        argv += ["--", *paths]
    try:
        out = subprocess.run(argv, capture_output=True, env=env, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise GitError(f"cannot run git ({exc})") from None
    if out.returncode != 0:
        lines = out.stderr.decode(errors="replace").strip().splitlines()
        raise GitError(lines[-1] if lines else f"git {' '.join(command[:1])} failed")
    return out.stdout
