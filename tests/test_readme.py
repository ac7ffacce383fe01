from bot.cli.readme import README, rendered


def test_readme_rule_table_is_generated_from_the_rules():
    text = README.read_text()
    assert rendered(text) == text, "run `python -m bot.cli.readme`"
    assert "`missing-network-policy`" in text and "make demo" in text and "make test" in text
