"""Keep the README's rule table generated from the rule modules (`python -m bot.cli.readme`)."""

from __future__ import annotations

import sys
from pathlib import Path

from rules.docs import readme_table

START, END = "<!-- rules-table:start -->", "<!-- rules-table:end -->"
README = Path(__file__).resolve().parents[2] / "README.md"


def rendered(text: str) -> str:
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{readme_table().strip()}\n{END}{tail}"


def main(argv: list[str]) -> int:
    text = README.read_text()
    new = rendered(text)
    if "--check" in argv:
        if new != text:
            print("README.md rule table is stale: run `python -m bot.cli.readme`", file=sys.stderr)
            return 1
        return 0
    README.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
