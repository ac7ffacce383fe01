from __future__ import annotations

import dataclasses

from test_publish_samples import DEPLOY, build_error, latest_tag, missing_probe, sample_report

from bot.model import Finding, Origin, ResourceId
from bot.publish.github import check_title
from bot.publish.report import Report, TargetStatus
from bot.publish.text import count_table, entries, render_text, shared_lead, shared_tail, summary_line

LABELS = "Dashboards, cost reports and `kubectl` queries select by these labels, so this object is invisible to them in "


def labels(env: str, name: str, file: str = "base/app.yaml", line: int = 5, missing: str = "name, part-of") -> Finding:
    return Finding("missing-labels", "error", env, f"Deployment/{env}/{name} lacks the labels {missing}. {LABELS}{env}.",
                   "Add the labels.", target=f"overlays/{env}", resource=ResourceId("apps", "v1", "Deployment", env, name),
                   field="metadata.labels", origin=Origin(file, line, line))


def test_a_base_line_failing_in_three_environments_is_one_entry_naming_them() -> None:
    report = Report([labels(env, "api") for env in ("development", "staging", "production")])
    out = render_text(report)
    (entry,) = entries(report.findings)
    assert [f.environment for f in entry.findings] == ["production", "staging", "development"]
    line = next(x for x in out.splitlines() if "missing-labels" in x and "app.yaml" in x)
    assert "[production, staging, development]" in line and "Deployment api" in line
    assert out.count("Deployment") == 1, "the resource is named once per entry, not per environment"
    assert out.count("lacks the labels name, part-of") == 1
    assert "invisible to them in production, staging, development." in out, "the shared clause, said once"


def test_the_path_once_per_folder_and_each_message_only_where_it_differs() -> None:
    report = Report([labels("production", "api"), labels("production", "web", line=20, missing="version"),
                     labels("production", "db", file="base/db/db.yaml")])
    out = render_text(report).splitlines()
    assert out.count("base/") == 1 and out.count("base/db/") == 1
    assert any(x.strip().startswith("app.yaml:5 ") for x in out) and any(x.strip().startswith("app.yaml:20") for x in out)
    assert sum("lacks the labels version" in x for x in out) == 1
    assert not any(LABELS in x for x in out), "no entry repeats the shared clause: the footer says it once"
    why = [x for x in out if x.strip().startswith("why:")]
    assert len(why) == 1 and "Dashboards" in why[0]


def test_environments_that_say_different_things_each_say_theirs() -> None:
    prod = labels("production", "api")
    dev = dataclasses.replace(labels("development", "api", missing="version"), severity="warning")
    out = render_text(Report([prod, dev]))
    assert "[production, development: warning]" in out
    assert "production: lacks the labels name, part-of" in out
    assert "development: lacks the labels version" in out


def test_explanation_and_fix_once_per_rule_in_a_footer_then_a_count_table() -> None:
    report = sample_report()
    out = render_text(report)
    assert out.count("Pin the image to a version tag or digest.") == 1, "the fix once per rule"
    footer = out[out.index("What each rule found"):]
    assert "latest-tag: Image tag is mutable" in footer and "fix: Pin the image" in footer
    assert "fix: Add a readinessProbe." in footer
    table = count_table(report.findings)
    assert table[0].split() == ["rule", "severity", "new", "existing", "suppressed"]
    assert [row.split() for row in table[1:]] == [["build-error", "error", "1", "0", "0"],
                                                  ["hardcoded-secret", "error", "0", "0", "1"],
                                                  ["latest-tag", "error", "2", "0", "0"],
                                                  ["missing-probes", "warning", "0", "1", "0"]]
    assert "\n".join(table) in out
    assert out.index("\n".join(table)) > out.index("What each rule found")


def test_a_finding_that_needs_its_own_fix_keeps_it_and_suggestions_are_shown() -> None:
    out = render_text(sample_report())
    assert f"suggested replacement for {DEPLOY} line 21:" in out and "| " + "        image: nginx:1.27.3" in out
    assert out.count("suggested replacement") == 1, "one suggestion for the one source line of two environments"
    odd = dataclasses.replace(latest_tag("staging"), remediation="Use the staging registry's tag.")
    lines = render_text(Report([latest_tag(), latest_tag(), odd])).splitlines()
    assert any(x.strip() == "fix: Use the staging registry's tag." for x in lines)


def test_suppressed_listed_briefly_with_reason() -> None:
    out = render_text(sample_report())
    assert "suppressed (1):" in out
    line = next(line for line in out.splitlines() if "hardcoded-secret" in line and "(test" in line)
    assert f"{DEPLOY}:30" in line and "(test fixture only)" in line
    assert "Use secretKeyRef" not in out


def test_new_and_existing_are_marked_per_entry() -> None:
    old = latest_tag("staging", new=False)
    out = render_text(Report([latest_tag(), old]))
    assert "NEW in production" in out
    assert "existing" in render_text(Report([old]))


def test_shared_clauses() -> None:
    said = ["a lacks x. Tools select by labels, so it is invisible.", "b lacks y. Tools select by labels, so it is invisible."]
    assert shared_tail(said) == (". ", "Tools select by labels, so it is invisible.")
    assert shared_tail(said[:1]) is None, "one finding is said whole"
    assert shared_tail(["x: too short.", "y: too short."]) is None
    assert shared_tail(["a `k: v` and more words here", "b `k: v` and more words here"]) is None, "never inside code"
    assert shared_lead(["lacks the labels name", "lacks the labels name"]) == "lacks the labels name"
    assert shared_lead(["its chart was not rendered: offline, so chart a was not fetched",
                        "its chart was not rendered: offline, so chart b was not fetched"]) == (
        "its chart was not rendered: offline")
    assert shared_lead(["a x", "b x"]) is None


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
    framing = {"|", "NEW", "fix", "suggested", "replacement", "for", "line", "Deployment", "production/api,",
               "container", "in", "0", "targets", "new", "1", "error", "—", "checked", "base/api/",
               "deployment.yaml", "What", "each", "rule", "found,", "why", "it", "matters,", "and", "the",
               "`infra-review", "explain", "RULE`", "says", "more", "about", "a", "its", "parameters",
               "an", "example.", "severity", "existing", "suppressed"}
    assert words - framing <= set(source.replace(":", " ").split()) | {"21"}
