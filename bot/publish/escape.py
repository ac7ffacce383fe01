"""Where repository text meets markdown or a CI log: the one place it is made inert.

Finding messages mix our prose with names, keys, paths and reasons taken from the pull request. In
GitHub markdown (review comments, check-run summaries) such text could mention people, link other
repositories' issues, inject HTML (a forged `<!-- infra-review:fp=... -->` marker among them) or open
a code fence that swallows the rest of a comment. In a GitHub Actions log, a line starting with `::`
or `##[` is a workflow command (`::add-mask::`, `::error::`, `::stop-commands::`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

ZWSP = "\u200b"  # invisible, and not whitespace to the Actions runner's TrimStart()
_LINE_BREAKS = re.compile(r"\r\n?|\n")
_TICKS = re.compile(r"`+")
_MARKDOWN_PUNCT = re.compile(r"[\\`~<>\[\]|!&]")
# Autolinked references: @user, @org/team, #123, owner/repo#123, GH-123.
_REFERENCE = re.compile(r"([@#])(?=[\w-])|\b(GH-)(?=\d)", re.IGNORECASE)
_COMMAND_LINE = re.compile(r"^(\s*)(::|##\[)", re.MULTILINE)


def _code_spans(line: str) -> Iterator[tuple[bool, str]]:
    """(is_code, text) pieces of one line as CommonMark reads it: a backtick run opens a code span
    that the next run of the same length closes; a run that nothing closes is literal text."""
    runs = [(m.start(), m.end()) for m in _TICKS.finditer(line)]
    done, i = 0, 0
    while i < len(runs):
        start, end = runs[i]
        close = next((k for k in range(i + 1, len(runs)) if runs[k][1] - runs[k][0] == end - start), None)
        if close is None:
            i += 1
            continue
        yield False, line[done:start]
        yield True, line[start:runs[close][1]]
        done, i = runs[close][1], close + 1
    yield False, line[done:]


def one_line(text: str) -> str:
    """Plain text (a check-run title) kept on one line."""
    return _LINE_BREAKS.sub(" ", text)


def _neutral_references(text: str) -> str:
    return _REFERENCE.sub(lambda m: (m.group(1) or m.group(2)) + ZWSP, text)


def inline(text: str) -> str:
    """Markdown for one paragraph line that shows `text` as written, our code spans kept as code.

    Line breaks become spaces (a block construct such as a fence or an HTML block can then never
    start); outside code spans the characters that open HTML, entities, links, images, fences or
    table cells are backslash-escaped (emphasis is left alone: it can only change how text looks),
    and references get an invisible break so nobody is notified or cross-referenced. Code spans are
    inert and kept verbatim.
    """
    out = []
    for is_code, piece in _code_spans(one_line(text)):
        if is_code:
            out.append(piece)
        else:
            out.append(_neutral_references(_MARKDOWN_PUNCT.sub(lambda m: "\\" + m.group(0), piece)))
    return "".join(out)


def code(text: str) -> str:
    """`text` as one inline code span, whatever backticks it holds."""
    flat = one_line(text)
    longest = max((len(m.group(0)) for m in _TICKS.finditer(flat)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") or not flat.strip() else ""
    return f"{fence}{pad}{flat}{pad}{fence}"


def cell(markdown: str) -> str:
    """Markdown for a table cell: a `|`, even inside a code span, would end the cell (GFM)."""
    return markdown.replace("|", "\\|")


def fence(text: str) -> str:
    """A backtick fence longer than any backtick run in `text`, so a fenced block cannot be closed early."""
    longest = max((len(m.group(0)) for m in _TICKS.finditer(text)), default=0)
    return "`" * max(3, longest + 1)


def log_lines(text: str) -> str:
    """Text for a CI log with no line that the Actions runner would read as a workflow command (it
    splits lines at CR, LF and CRLF, and reads a command after leading white space)."""
    return _COMMAND_LINE.sub(lambda m: m.group(1) + ZWSP + m.group(2), _LINE_BREAKS.sub("\n", text))
