"""The seed policy: the environment table, required labels, sensitive names and credential patterns
that rules read and a repository's `policy:` overrides (`bot.config.effective_policy` merges them).

A leaf: it reads the table as data from `rules/policy.yaml`, where the rule catalogue documents it
(docs/rules.md), and imports nothing from `rules` or the rest of `bot`.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

POLICY_FILE = Path(__file__).resolve().parents[1] / "rules" / "policy.yaml"


@cache
def _policy_text() -> str:
    return POLICY_FILE.read_text(encoding="utf-8")


def default_policy() -> dict[str, Any]:
    """A fresh copy of the seed policy (callers may merge into it)."""
    return yaml.safe_load(_policy_text())
