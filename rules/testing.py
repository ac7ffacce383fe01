"""Build an environment from YAML text, for tests of rules (here and in other packages)."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent
from typing import Any

from bot.model import Finding, Suggestion
from bot.objects import EnvContext
from bot.plain import load_plain


def env_from_yaml(
    root: Path,
    text: str,
    environment: str = "production",
    name: str = "manifests.yaml",
    policy: dict | None = None,
) -> EnvContext:
    """Write `text` (dedented) to `root/name` and load it as the rendered objects of one environment,
    with real line provenance and `read_lines` serving the file."""
    from bot.config import effective_policy

    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dedent(text).lstrip("\n"), encoding="utf-8")
    return EnvContext(
        environment,
        load_plain(path, root=root),
        policy if policy is not None else effective_policy(),
        read_lines=lambda f: (root / f).read_text(encoding="utf-8").splitlines(),
    )


def apply_suggestion(lines: list[str], suggestion: Suggestion) -> list[str]:
    """The file's lines after replacing the suggested range."""
    return lines[: suggestion.line - 1] + suggestion.text.split("\n") + lines[suggestion.end_line :]


def of_rule(findings: list[Finding], rule: str, name: str | None = None) -> list[Finding]:
    return [
        f for f in findings if f.rule == rule and (name is None or (f.resource and f.resource.name == name))
    ]


def finding_text(f: Finding) -> str:
    """Every string a reporter could print for `f`."""
    parts: list[Any] = [*f.to_json().values(), f.suppression_reason, f.suggestion and f.suggestion.text]
    return "\n".join(str(p) for p in parts)
