"""Keep the README's rule table generated from the rule modules (`python -m bot.cli.readme`)."""

from __future__ import annotations

import sys
from pathlib import Path

from bot.generated import write_or_check
from rules.docs import readme_table

START, END = "<!-- rules-table:start -->", "<!-- rules-table:end -->"
README = Path(__file__).resolve().parents[2] / "README.md"


def rendered(text: str) -> str:
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{readme_table().strip()}\n{END}{tail}"


def main(argv: list[str]) -> int:
    return write_or_check(README, rendered(README.read_text()), "python -m bot.cli.readme", "--check" in argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
