"""The dependency direction docs/architecture.md describes: configuration, the policy table and
quantities are leaves that know nothing of the rule modules; every rule registers its checks on
its `RULE`."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
import textwrap

import pytest
from conftest_paths import REPO

import rules
from rules.base import Rule

LEAVES = ("bot.config", "bot.policy", "bot.quantity", "bot.catalogue")
# Rules with no check of their own: the pipeline makes their findings from what the renderer reports.
MADE_BY_PIPELINE = {"build-error", "remote-unchecked", "chart-error", "chart-unavailable", "chart-lint"}
# Environment rules with a repository part (files that no target renders).
ENV_AND_REPO = {"hardcoded-secret", "invalid-manifest"}


def fresh(code: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in a new interpreter, so sys.modules holds only what it imports."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("module", LEAVES)
def test_leaf_imports_no_rules_module(module):
    out = fresh(f"""
        import sys, {module}
        print(sorted(m for m in sys.modules if m == "rules" or m.startswith("rules.")))
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"importing {module} imports {out.stdout.strip()}"


def test_config_validates_rules_without_importing_them():
    """bot.config checks rule ids and parameters against the catalogue it is given, or the one the
    `rules` package registers on import; on its own it imports no rule."""
    out = fresh("""
        import sys
        from dataclasses import dataclass, field
        from bot.catalogue import NoCatalogue
        from bot.config import ConfigError, effective_policy, parse_config

        @dataclass
        class Fake:
            id: str
            params: dict = field(default_factory=dict)
            def severity_for(self, environment):
                return "error"

        assert effective_policy()["environments"]
        parse_config("policy: {environments: {production: {requests: {cpu: 100m}}}}")
        text = "rules: {fake: {params: {n: 2}}}\\nforbid_suppression: [fake]\\n"
        config = parse_config(text, [Fake("fake", {"n": 1})])
        assert config.params == {"fake": {"n": 2}} and config.forbid_suppression == {"fake"}
        for bad in ("rules: {other: off}", "rules: {fake: {params: {n: x}}}", "forbid_suppression: [other]"):
            try:
                parse_config(bad, [Fake("fake", {"n": 1})])
            except ConfigError:
                pass
            else:
                raise AssertionError(bad)
        try:
            parse_config("rules: {latest-tag: off}")
        except NoCatalogue:
            pass
        else:
            raise AssertionError("no catalogue is registered yet")
        assert not any(m == "rules" or m.startswith("rules.") for m in sys.modules)

        import rules  # registers the catalogue
        assert parse_config("rules: {latest-tag: off}").severities == {"latest-tag": {"*": None}}
    """)
    assert out.returncode == 0, out.stderr


def rule_modules():
    for info in pkgutil.iter_modules(rules.__path__):
        module = importlib.import_module(f"rules.{info.name}")
        if isinstance(getattr(module, "RULE", None), Rule):
            yield module


def test_every_rule_registers_its_checks_on_its_rule():
    """One shape: `RULE.check` (per environment) and `RULE.check_repo` (once per repository); a
    function the module defines under either name is the one its RULE carries."""
    seen = set()
    for module in rule_modules():
        rule = module.RULE
        seen.add(rule.id)
        for name in ("check", "check_repo"):
            if callable(getattr(module, name, None)):
                assert getattr(rule, name) is getattr(module, name), f"{rule.id}: {name} is not on RULE"
        if rule.id in MADE_BY_PIPELINE:
            assert rule.check is None and rule.check_repo is None, rule.id
        elif rule.id in ENV_AND_REPO:
            assert rule.scope == "env" and rule.check and rule.check_repo, rule.id
        else:
            assert (rule.check is None) != (rule.check_repo is None), f"{rule.id}: exactly one of check/check_repo"
            assert (rule.check is not None) == (rule.scope == "env"), f"{rule.id}: check goes with scope env"
    assert seen == {r.id for r in rules.all_rules()}
    assert MADE_BY_PIPELINE | ENV_AND_REPO <= seen


def test_catalogue_lists_rules_and_runs_none():
    assert not any(hasattr(rules, name) for name in ("run_env_rules", "run_repo_rules", "default_policy"))
