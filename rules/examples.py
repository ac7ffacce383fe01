"""A rule's example (`Rule.example`) run through the engine `infra-review check` uses, so a test can hold
each rule to it: the bad version is flagged, the fixed one is not. Offline, so the example says the same
on every machine."""

from __future__ import annotations

import difflib
import tempfile
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

from bot.config import Config, parse_config
from bot.model import Finding
from rules.base import Example, Rule

CONFIG_PATH = ".github/infra-review.yml"
SIDES = ("bad", "good")


def side_files(example: Example, side: str) -> dict[str, str]:
    if side not in SIDES:
        raise ValueError(f"side {side!r}: give one of {', '.join(SIDES)}")
    return example.bad if side == "bad" else example.good


def changed_files(example: Example) -> dict[str, str]:
    """The files of the fixed version that the fix added or changed: what a reader needs to see of it."""
    return {path: text for path, text in example.good.items() if example.bad.get(path) != text}


def changed_lines(example: Example, path: str) -> tuple[set[int], set[int]]:
    """The lines (0-based) of `path` that the fix removes or rewrites in the bad version, and that it
    writes in the good one."""
    before, after = example.bad.get(path, "").splitlines(), example.good.get(path, "").splitlines()
    removed: set[int] = set()
    added: set[int] = set()
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, before, after, autojunk=False).get_opcodes():
        if tag != "equal":
            removed.update(range(i1, i2))
            added.update(range(j1, j2))
    return removed, added


def write_files(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def example_config(files: dict[str, str]) -> Config:
    """The example's own configuration, if it has one, with fetching off."""
    from rules import all_rules

    text = files.get(CONFIG_PATH)
    config = parse_config(text, all_rules()) if text is not None else Config.default()
    return replace(config, fetch_enabled=False)


def check_example(rule: Rule, side: str, root: Path | None = None) -> list[Finding]:
    """The findings of `rule`, suppressed ones included, on one side ("bad" or "good") of its example,
    written into the empty folder `root` (default: a temporary one) and checked as `infra-review check
    --offline --env ENVIRONMENT` checks a tree."""
    from bot.review.pipeline import run_check

    if rule.example is None:
        raise ValueError(f"rule {rule.id} has no example")
    files = side_files(rule.example, side)
    folder = nullcontext(root) if root is not None else tempfile.TemporaryDirectory(prefix="infra-review-example-")
    with folder as where:
        written = write_files(Path(where), files)
        report = run_check(written, None, example_config(files), envs=[rule.example.environment])
    return [f for f in report.findings if f.rule == rule.id]
