"""The rule catalogue: one module per rule id, each defining `RULE = Rule(...)`.

The registry finds them by walking this package and lists them in the catalogue's order; it does not
run them (bot.review.run_rules does). Importing this package registers the catalogue with
`bot.catalogue`, which is how configuration validates rule ids and parameters without importing the
rules. The seed policy is `policy.yaml` here, loaded by `bot.policy`.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from pathlib import Path

from bot import catalogue
from rules.base import Rule

# The order of the catalogue in spec/rules.md, which docs and reports follow.
CATALOGUE_ORDER = (
    "hardcoded-secret",
    "sops-coverage",
    "missing-resources",
    "latest-tag",
    "missing-probes",
    "single-replica",
    "env-defaults",
    "missing-network-policy",
    "missing-labels",
    "direct-apply",
    "flux-config",
    "build-error",
    "remote-unchecked",
    "chart-error",
    "chart-unavailable",
    "chart-lint",
    "probe-port",
    "service-selector",
    "route-backend",
    "invalid-manifest",
    "pod-security",
)


@cache
def _registry() -> dict[str, Rule]:
    found: dict[str, Rule] = {}
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        module = importlib.import_module(f"{__name__}.{info.name}")
        rule = getattr(module, "RULE", None)
        if isinstance(rule, Rule):
            if rule.id.replace("-", "_") != info.name:
                raise RuntimeError(
                    f"rules/{info.name}.py defines rule {rule.id!r}; the module must be named after it"
                )
            found[rule.id] = rule
    rank = {rid: i for i, rid in enumerate(CATALOGUE_ORDER)}
    return dict(sorted(found.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))


def all_rules() -> list[Rule]:
    return list(_registry().values())


def get_rule(rule_id: str) -> Rule:
    """The rule with this id; KeyError names the id when there is none."""
    try:
        return _registry()[rule_id]
    except KeyError:
        raise KeyError(f"unknown rule id {rule_id!r}") from None


catalogue.register(all_rules)
