"""What configuration may know of the rules: their ids, parameters and default severities.

`bot.config` validates a repository's `rules:` and `forbid_suppression:` keys against the catalogue
without importing the rule modules: the `rules` package registers its catalogue here when it is
imported (`register(all_rules)`), so the dependency runs rules → bot and never back. A leaf: it
imports nothing from the project.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol


class KnownRule(Protocol):
    """What configuration reads of a rule; `rules.base.Rule` satisfies it."""

    @property
    def id(self) -> str: ...
    @property
    def params(self) -> Mapping[str, Any]: ...
    def severity_for(self, environment: str | None) -> str | None: ...


class NoCatalogue(RuntimeError):
    """A rule was looked up before any catalogue was registered (nothing imported `rules`)."""


_provider: Callable[[], Iterable[KnownRule]] | None = None


def register(provider: Callable[[], Iterable[KnownRule]]) -> None:
    """Make `provider` (called on each lookup, so it may discover rules lazily) the rule catalogue."""
    global _provider
    _provider = provider


def known_rules() -> dict[str, KnownRule]:
    """The registered rules by id; NoCatalogue when nothing has registered one."""
    if _provider is None:
        raise NoCatalogue("no rule catalogue is registered: import the `rules` package before validating rule ids")
    return {rule.id: rule for rule in _provider()}
