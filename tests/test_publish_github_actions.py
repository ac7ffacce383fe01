from __future__ import annotations

from test_publish_samples import DEPLOY, build_error, latest_tag, missing_probe, sample_report

from bot.model import Finding, Origin
from bot.publish.github_actions import command, escape_data, escape_property, render_github
from bot.publish.text import summary_line


def test_escaping_follows_actions_toolkit() -> None:
    assert escape_data("50% done\r\nnext") == "50%25 done%0D%0Anext"
    assert escape_property("a:b,c%\n") == "a%3Ab%2Cc%25%0A"
    assert escape_data("a:b,c") == "a:b,c"


def test_command_per_severity_with_location() -> None:
    assert command(latest_tag()).startswith(f"::error file={DEPLOY},line=21,endLine=21,title=latest-tag (production)::")
    assert command(missing_probe()).startswith("::warning ")
    assert "title=missing-probes (staging) [existing]::" in command(missing_probe())
    assert command(build_error()).startswith("::error title=build-error (production)::kustomize build failed")
    notice = Finding("x", "notice", None, "m", "", origin=Origin("a,b:c.yaml", 3, 5))
    assert command(notice) == "::notice file=a%2Cb%3Ac.yaml,line=3,endLine=5,title=x::m"


def test_message_is_one_line_and_keeps_the_fix() -> None:
    line = command(latest_tag())
    assert "\n" not in line and "%0AFix: Pin the image" in line


def test_render_skips_suppressed_and_ends_with_summary() -> None:
    out = render_github(sample_report()).splitlines()
    assert len(out) == 5  # four unsuppressed findings and the summary
    assert not any("hardcoded-secret" in line for line in out)
    assert out[-1] == summary_line(sample_report())


def test_only_findings_that_decide_the_exit_code_are_errors_and_they_come_first() -> None:
    """As the App's annotations: an existing finding is a notice under fail-on new, and new findings
    lead (GitHub shows only the first ten annotations of each level per step)."""
    levels = [line.split(" ", 1)[0] for line in render_github(sample_report()).splitlines()[:-1]]
    assert levels == ["::error", "::error", "::error", "::notice"]
    existing = next(line for line in render_github(sample_report()).splitlines() if "missing-probes" in line)
    assert existing.startswith("::notice") and "[existing]" in existing
    every = [line.split(" ", 1)[0] for line in render_github(sample_report(), "all").splitlines()[:-1]]
    assert every == ["::error", "::error", "::error", "::warning"]
