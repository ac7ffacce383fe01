from __future__ import annotations

from test_publish_samples import DEPLOY, build_error, latest_tag, missing_probe, sample_report

from bot.model import Finding, Origin
from bot.publish.github_actions import command, escape_data, escape_property, render_github


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
    assert out[-1] == "3 errors, 1 warning (3 new) in 3 targets, 1 suppressed (Kustomize v5.5.0)"
