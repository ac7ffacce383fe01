"""Repository text in review comments, check runs and CI logs stays text (issue 7, item 7).

The markdown is parsed with a CommonMark parser (markdown-it-py, GitHub's dialect: raw HTML on,
tables) the way GitHub reads it, and the assertions are about what that parse contains: no HTML but
our markers, no mention or cross-reference, no code fence but ours, no table cell out of place.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token

from bot.model import Finding, Origin, ResourceId, Suggestion
from bot.publish import escape
from bot.publish.dryrun import render_dry_run
from bot.publish.github import check_run_complete, marker, parse_fingerprints, review_payload
from bot.publish.github_actions import render_github
from bot.publish.report import Report, TargetStatus
from bot.publish.text import render_text
from bot.review.anchors import from_pr_files

FORGED = "<!-- infra-review:fp=0123456789abcdef -->"
HOSTILE = ("x`<img src=x onerror=alert(1)>` @octocat @org/team owner/repo#1 GH-7 &#64;admin "
           "<details><summary>s</summary> [link](https://evil.example) ![i](https://evil.example/i.png) | "
           f"```\n::add-mask::z\r##[error]w\n~~~\n# heading {FORGED} ")
FILE = "app/deploy.yaml"


def hostile_finding(**over) -> Finding:
    fields = dict(
        rule="latest-tag", severity="error", environment="production",
        message=f"container `{HOSTILE}` of `{HOSTILE}` uses {HOSTILE!r}; pin it",
        remediation=f"Pin {HOSTILE}", target=f"overlays/{HOSTILE}",
        resource=ResourceId("apps", "v1", "Deployment", "prod", HOSTILE), container=HOSTILE,
        field="spec.template.spec.containers[x].image", origin=Origin(FILE, 2, 2),
        suggestion=Suggestion(FILE, 2, 2, f"        image: nginx:1.27  # {HOSTILE}\n"))
    fields.update(over)
    return Finding(**fields)


def hostile_report() -> Report:
    findings = [
        hostile_finding(),
        hostile_finding(environment=f"staging {HOSTILE}", rule="missing-probes", suggestion=None),
        hostile_finding(rule="hardcoded-secret", suppressed=True, suppression_reason=HOSTILE, new=False),
        hostile_finding(rule="build-error", origin=Origin(f"dir/{HOSTILE}.yaml", 3, 3), suggestion=None),
    ]
    return Report(findings, targets=[TargetStatus(f"overlays/{HOSTILE}", f"prod {HOSTILE}", "ok", 1)],
                  tool_version="0.1.0", kustomize_version="v5.5.0", head_sha="c" * 40)


def parse(markdown: str) -> list[Token]:
    return MarkdownIt("commonmark", {"html": True}).enable("table").parse(markdown)


def walk(tokens: list[Token]) -> Iterator[Token]:
    for tok in tokens:
        yield tok
        yield from walk(tok.children or [])


def assert_inert(markdown: str, fences: int = 0, headings: int = 0) -> None:
    tokens = list(walk(parse(markdown)))
    html = [t.content.strip() for t in tokens if t.type in ("html_block", "html_inline")]
    assert all(re.fullmatch(r"(<!-- infra-review:fp=[0-9a-f]{16} -->\s*)+", h) for h in html), html
    assert FORGED not in "".join(html)
    assert not [t for t in tokens if t.type in ("link_open", "image")]
    assert len([t for t in tokens if t.type == "heading_open"]) == headings
    assert len([t for t in tokens if t.type == "fence"]) == fences
    text = " ".join(t.content for t in tokens if t.type == "text")
    assert not re.search(r"(?<![\w\u200b])@[\w]", text), text
    assert not re.search(r"#\d|GH-\d", text), text


@pytest.fixture
def diff():
    return from_pr_files([{"filename": FILE, "status": "added", "patch": "@@ -0,0 +1,3 @@\n+a\n+b\n+c"}])


def test_review_comments_show_repository_text_without_acting_on_it(diff):
    review = review_payload(hostile_report(), diff, ())
    assert review is not None
    comments = review["comments"]
    assert len(comments) == 2
    for comment in comments:
        assert_inert(comment["body"], fences=1 if "suggestion" in comment["body"] else 0)
    suggestion = next(t for t in walk(parse(comments[0]["body"])) if t.type == "fence")
    assert suggestion.info == "suggestion"
    assert HOSTILE.replace("\r", "\n") in suggestion.content, "the fix is applied verbatim"
    assert comments[0]["body"].rstrip().endswith(marker(hostile_finding().fingerprint))
    for comment in comments:
        assert "0123456789abcdef" not in parse_fingerprints(comment["body"]), "a forged marker counts for nothing"
        assert len(parse_fingerprints(comment["body"])) == comment["body"].count("<!-- infra-review:fp=") - \
            comment["body"].count(FORGED)
    assert_inert(review["body"])


def test_check_run_summary_and_text_are_inert_and_the_tables_keep_their_shape():
    output = check_run_complete(hostile_report(), 1)[0]["output"]
    assert_inert(output["summary"], headings=3)  # production, staging …, Targets
    assert_inert(output["text"])
    assert "\n" not in output["title"]
    target_row = output["summary"].split("### Targets")[1]
    target_tokens = list(walk(parse(target_row)))
    assert sum(t.type == "td_open" for t in target_tokens) == 4, "one row of four cells"


@pytest.mark.parametrize("render", [render_text, lambda r: render_dry_run(r, from_pr_files([]))])
def test_text_outputs_never_start_a_workflow_command(render):
    out = render(hostile_report())
    commands = [line for line in re.split(r"\r\n?|\n", out) if re.match(r"\s*(::|##\[)", line)]
    assert not commands, commands
    assert "::add-mask::z" in out, "the text is still shown"


def test_workflow_command_output_is_one_command_per_finding():
    out = render_github(hostile_report())
    lines = out.splitlines()
    assert len(lines) == 4  # three unsuppressed findings and the summary
    assert all(line.startswith(("::error ", "::warning ", "::notice ")) for line in lines[:3])
    assert not re.match(r"\s*(::|##\[)", lines[3])


@pytest.mark.parametrize("text, code", [
    ("plain", "`plain`"), ("a`b", "``a`b``"), ("`edge`", "`` `edge` ``"), ("x\ny", "`x y`"),
])
def test_code_spans_hold_any_text(text, code):
    assert escape.code(text) == code
    (span,) = [t for t in walk(parse(escape.code(text))) if t.type == "code_inline"]
    assert span.content == text.replace("\n", " ")


def test_inline_keeps_our_code_spans_and_the_words():
    rendered = escape.inline("image `nginx:latest` for @team in <b>prod</b>")
    tokens = list(walk(parse(rendered)))
    assert [t.content for t in tokens if t.type == "code_inline"] == ["nginx:latest"]
    assert "".join(t.content for t in tokens if t.type == "text").replace(escape.ZWSP, "") == \
        "image  for @team in <b>prod</b>"
