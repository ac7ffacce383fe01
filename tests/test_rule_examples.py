"""Every rule's example (`Rule.example`), which `explain` and docs/rules.md show, is held to its rule: the
bad version is flagged, the fixed one is not, checked the way `infra-review check --offline` checks a tree."""

from __future__ import annotations

import json

import pytest
from trees import run_bot

from bot.__main__ import main
from rules import all_rules
from rules.base import Rule
from rules.docs import render_markdown
from rules.examples import changed_files, check_example, write_files

RULES = all_rules()


def test_every_rule_has_an_example_with_a_fix():
    assert [r.id for r in RULES if r.example is None] == []
    assert [r.id for r in RULES if r.example and not (changed_files(r.example) and r.example.note)] == []


@pytest.mark.parametrize("rule", RULES, ids=[r.id for r in RULES])
def test_the_rule_flags_the_bad_version_and_not_the_fixed_one(rule: Rule, tmp_path):
    assert check_example(rule, "bad", tmp_path / "bad"), f"{rule.id} does not flag its example"
    fixed = check_example(rule, "good", tmp_path / "good")
    assert fixed == [], [f.message for f in fixed]


@pytest.mark.parametrize("rule_id", ["latest-tag", "chart-error"])
def test_check_example_finds_what_the_command_line_finds(rule_id: str, tmp_path):
    rule = next(r for r in RULES if r.id == rule_id)
    assert rule.example is not None
    root = write_files(tmp_path / "bad", rule.example.bad)
    out = run_bot("check", str(root), "--offline", "--env", rule.example.environment, "--rule", rule_id,
                  "--format", "json", cwd=tmp_path)
    said = [(f["message"], f["file"], f["line"]) for f in json.loads(out.stdout)["findings"]]
    found = [(f.message, f.origin.file, f.origin.line) for f in check_example(rule, "bad", tmp_path / "again")]
    assert said and sorted(said) == sorted(found)


@pytest.mark.parametrize("rule", RULES, ids=[r.id for r in RULES])
def test_explain_shows_the_example(rule: Rule, capsys):
    assert rule.example is not None
    assert main(["explain", rule.id]) == 0
    out = capsys.readouterr().out
    assert f"Example ({rule.example.environment}):" in out
    for side, files in (("bad", rule.example.bad), ("good", changed_files(rule.example))):
        for path, text in files.items():
            assert f"  # {side}: {path}\n" in out
            assert all(line.strip() in out for line in text.splitlines())


def test_docs_show_every_example_as_yaml_blocks():
    sections = {part.split("`", 1)[0]: part for part in render_markdown().split("\n### `")[1:]}
    for rule in RULES:
        assert rule.example is not None
        section = sections[rule.id]
        for files in (rule.example.bad, changed_files(rule.example)):
            for path, body in files.items():
                assert f"```yaml\n# {path}\n{body}```\n" in section, (rule.id, path)
