"""Small repositories for tests, and the CLI run the way a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest_paths import REPO


def write(root: Path, files: dict[str, str]) -> Path:
    """Write each file (text dedented, a leading blank line dropped) below `root`; returns `root`."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return root


def line_of(root: Path, rel: str, text: str) -> int:
    """The 1-based number of the first line of `rel` that holds `text`."""
    return next(n for n, line in enumerate((root / rel).read_text().splitlines(), 1) if text in line)


def flux_kustomization(path: str, name: str = "apps", source: str = "GitRepository/flux-system") -> str:
    """A Flux Kustomization (flux-system namespace, `wait: true`) syncing `path` from `source`."""
    kind, _, source_name = source.partition("/")
    return textwrap.dedent(f"""\
        apiVersion: kustomize.toolkit.fluxcd.io/v1
        kind: Kustomization
        metadata:
          name: {name}
          namespace: flux-system
        spec:
          interval: 10m
          path: {path}
          prune: true
          wait: true
          sourceRef:
            kind: {kind}
            name: {source_name}
        """)


def run_bot(*args: str, cwd: Path = REPO, env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """`infra-review ARGS` in a child process with a bare environment (no HOME, a minimal PATH) and the
    session's render cache, so what it prints is what a user in CI would see."""
    base = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(cwd),
            "INFRA_REVIEW_CACHE": os.environ.get("INFRA_REVIEW_CACHE") or str(cwd / ".infra-review-cache")}
    return subprocess.run([sys.executable, "-m", "bot", *args], cwd=cwd, capture_output=True, text=True,
                          env={**base, **(env or {})}, timeout=timeout)
