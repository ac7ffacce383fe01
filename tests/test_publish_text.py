from __future__ import annotations

from test_publish_samples import DEPLOY, build_error, latest_tag, missing_probe, sample_report

from bot.publish.github import check_title
from bot.publish.report import Report, TargetStatus
from bot.publish.text import render_text, summary_line


def test_grouped_by_environment_then_file_with_location_rule_and_fix() -> None:
    out = render_text(sample_report())
    prod, staging = out.index("== production =="), out.index("== staging ==")
    assert prod < staging
    prod_block = out[prod:staging]
    assert f"{DEPLOY}:21" in prod_block and "latest-tag" in prod_block and "NEW" in prod_block
    assert "fix: Pin the image to a version tag or digest." in prod_block
    assert "| " + "        image: nginx:1.27.3" in prod_block
    assert prod_block.index(DEPLOY) < prod_block.index("(no file)")
    staging_block = out[staging:]
    assert "missing-probes" in staging_block and "existing" in staging_block


def test_suppressed_listed_briefly_with_reason() -> None:
    out = render_text(sample_report())
    assert "suppressed (1):" in out
    line = next(line for line in out.splitlines() if "hardcoded-secret" in line)
    assert f"{DEPLOY}:30" in line and "(test fixture only)" in line
    assert "Use secretKeyRef" not in out


def test_colour_only_when_asked() -> None:
    assert "\x1b[" not in render_text(sample_report())
    coloured = render_text(sample_report(), colour=True)
    assert "\x1b[31m" in coloured and "\x1b[0m" in coloured


def test_summary_line() -> None:
    """The check run's headline (check_title), then how much was checked: one wording everywhere."""
    assert render_text(sample_report()).rstrip().splitlines()[-1] == summary_line(sample_report())
    report = sample_report()
    assert summary_line(report) == f"{check_title(report)} — 3 targets checked (Kustomize v5.5.0)"
    assert summary_line(report) == ("3 new errors in production, staging (1 existing, 1 suppressed) — 3 targets "
                                    "checked (Kustomize v5.5.0)")
    assert summary_line(report, "all").startswith("3 errors, 1 warning in production, staging (1 suppressed)")
    two = Report([latest_tag(), build_error(), missing_probe(new=True)],
                 [TargetStatus("a", "production", "ok", 1)] * 3)
    two.findings[0].new = False
    assert summary_line(two) == "1 new error, 1 new warning in production, staging (1 existing) — 3 targets checked"
    assert summary_line(Report([], [TargetStatus("a", None, "ok", 1)])) == "No findings — 1 target checked"
    assert summary_line(Report([], [], kustomize_version="v5.5.0")).endswith("(Kustomize v5.5.0)")


def test_adds_nothing_beyond_finding_fields() -> None:
    f = latest_tag()
    out = render_text(Report([f]))
    words = {w for line in out.splitlines() for w in line.replace(":", " ").split()}
    source = " ".join(str(v) for v in (f.rule, f.severity, f.environment, f.message, f.remediation,
                                       f.resource, f.container, f.origin.file, f.origin.line,
                                       f.suggestion.text if f.suggestion else ""))
    framing = {"==", "|", "NEW", "fix", "suggested", "replacement", "for", "line", "Deployment", "production/api,",
               "container", "in", "0", "targets", "new", "1", "error", "—", "checked"}
    assert words - framing <= set(source.replace(":", " ").split()) | {"21"}
