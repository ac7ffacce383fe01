"""Files the repository keeps generated (docs/rules.md, the README's rule table, the config schema,
deploy/github-app.yml): written by their command, or checked with `--check` so a test or CI says
which command makes a stale one current."""

from __future__ import annotations

import sys
from pathlib import Path


def write_or_check(path: Path, text: str, command: str, check: bool) -> int:
    """Write `text` to `path` (when it differs), or with `check` exit 1 naming `command` if it differs."""
    current = path.read_text(encoding="utf-8") if path.exists() else None
    if current == text:
        return 0
    if check:
        print(f"{path} is stale: run `{command}`", file=sys.stderr)
        return 1
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return 0
