"""docs/rules.md is generated from the rule modules and must be current."""

from __future__ import annotations

from rules import all_rules
from rules.docs import DOC_PATH, main, readme_table, render_markdown


def test_docs_rules_md_is_current():
    assert DOC_PATH.exists(), "run `python -m rules.docs`"
    assert DOC_PATH.read_text(encoding="utf-8") == render_markdown(), (
        "docs/rules.md is stale: run `python -m rules.docs`"
    )
    assert main(["--check"]) == 0


def test_docs_cover_every_rule_and_the_policy():
    text = render_markdown()
    for rule in all_rules():
        assert f"### `{rule.id}`" in text and rule.rationale in text
        for edge in rule.edge_cases:
            assert edge in text
    assert "| replicas (minimum) | 1 | 2 | 3 |" in text
    assert "| limits.memory | 256Mi | 512Mi | 1Gi |" in text
    assert "- Severity (production / staging / development): error / off / off" in text  # single-replica


def test_readme_table_rows():
    rows = readme_table().splitlines()
    assert len(rows) == 2 + len(all_rules())
    assert "| [`latest-tag`](docs/rules.md#latest-tag-image-without-a-fixed-version) |" in readme_table()
    by_id = {row.split("`")[1]: row for row in rows[2:]}
    assert by_id["build-error"].endswith("| error / error / error |")
    assert by_id["pod-security"].endswith("| warning / notice / notice |")


def test_check_detects_stale(tmp_path, monkeypatch):
    import rules.docs as docs

    monkeypatch.setattr(docs, "DOC_PATH", tmp_path / "rules.md")
    assert docs.main(["--check"]) == 1
    assert docs.main([]) == 0 and docs.main(["--check"]) == 0
