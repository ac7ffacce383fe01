from bot.cli.readme import README, rendered


def test_readme_rule_table_is_generated_from_the_rules():
    text = README.read_text()
    assert rendered(text) == text, "run `python -m bot.cli.readme`"
    assert "`missing-network-policy`" in text and "make demo" in text and "make test" in text


def test_install_shows_pip_first_and_make_for_contributors():
    text = README.read_text()
    install = text[text.index("## Install"):text.index("\n## ", text.index("## Install") + 1)]
    assert text.index("## Install") < text.index("## What it does"), "installing is the first thing said"
    assert install.index("pip install infra-review") < install.index("make test")
    assert "infra-review check " in install and "contributors" in install
