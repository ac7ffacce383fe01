"""Which findings a run reports, chosen on the command line (`--rule`, `--skip-rule`, `--min-severity`,
`--new-only`): applied to the report before any reporter, so the exit code, the text and the files
agree on what was said."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bot.model import SEVERITIES, Finding


@dataclass(frozen=True)
class Selection:
    rules: frozenset[str] = frozenset()  # only these rule ids (empty: every rule)
    skip: frozenset[str] = frozenset()
    min_severity: str = "notice"
    new_only: bool = False

    def unknown(self, known: Iterable[str]) -> list[str]:
        """The rule ids named that no rule has."""
        ids = set(known)
        return sorted((self.rules | self.skip) - ids)

    def keeps(self, f: Finding) -> bool:
        return ((not self.rules or f.rule in self.rules) and f.rule not in self.skip
                and SEVERITIES.index(f.severity) <= SEVERITIES.index(self.min_severity)
                and (f.new or not self.new_only))

    def apply(self, findings: Iterable[Finding]) -> list[Finding]:
        return [f for f in findings if self.keeps(f)]
