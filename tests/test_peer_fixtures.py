"""Our rules on other linters' test manifests: every row of peer-fixtures/EXPECTED.tsv must agree.

Each fixture file is checked on its own as the complete rendered `production` environment
(see ../shared/peer-fixtures/README.md). Where a later issue changed a verdict (issue 9: requests
default to limits), tests/fixtures/peer-verdicts.tsv replaces that row, with the reason.
"""

from __future__ import annotations

import csv
from functools import cache
from pathlib import Path

import pytest
from conftest_paths import PEER_FIXTURES, PEER_VERDICTS, needs

from bot.config import Config, effective_policy
from bot.model import Finding
from bot.objects import EnvContext
from bot.plain import load_plain
from bot.review.run_rules import run_env_rules
from rules import all_rules

FIXTURES = PEER_FIXTURES
pytestmark = needs(PEER_FIXTURES, "other linters' fixtures (peer-fixtures)")
ENV_RULES = {r.id for r in all_rules() if r.scope == "env"}


def _table(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))


def _key(row: dict[str, str]) -> tuple[str, ...]:
    return row["file"], row["kind"], row["name"], row["rule"]


REVISED = {_key(row): row for row in _table(PEER_VERDICTS)}
ORIGINAL = _table(FIXTURES / "EXPECTED.tsv")
ROWS = [REVISED.get(_key(row), row) for row in ORIGINAL]


def test_every_revised_verdict_replaces_a_row_and_changes_it():
    originals = {_key(row): row for row in ORIGINAL}
    for key, row in REVISED.items():
        assert key in originals, f"{key}: no such row in EXPECTED.tsv"
        assert originals[key]["expected"] != row["expected"] and row["why"], key


@cache
def findings_for(file: str) -> tuple[Finding, ...]:
    path = FIXTURES / file
    objects = load_plain(path, root=FIXTURES)
    ctx = EnvContext("production", objects, effective_policy(Config.default()))
    return tuple(run_env_rules(ctx, Config.default()))


def test_expected_table_is_there_and_complete():
    assert len(ROWS) == 173, "EXPECTED.tsv changed size; update this count deliberately"
    assert {r["rule"] for r in ROWS} <= ENV_RULES


@pytest.mark.parametrize(
    "row", ROWS, ids=[f"{r['file']}:{r['kind']}/{r['name']}:{r['rule']}={r['expected']}" for r in ROWS]
)
def test_row_agrees(row):
    found = [
        f
        for f in findings_for(row["file"])
        if f.rule == row["rule"]
        and f.resource
        and (f.resource.kind, f.resource.name) == (row["kind"], row["name"])
    ]
    if row["expected"] == "finding":
        assert found, f"expected a {row['rule']} finding: {row['why']}"
    else:
        assert not found, f"expected none ({row['why']}), got: {[f.message for f in found]}"


def test_findings_map_to_lines_of_the_fixture():
    for row in ROWS:
        for f in findings_for(row["file"]):
            assert f.origin.file == row["file"] and f.origin.line and f.origin.line >= 1
