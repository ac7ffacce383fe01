"""The `--format json` document of issue 3: a stable contract for scripts and CI."""

from __future__ import annotations

import json
from typing import Any

from bot.publish.report import TOOL_NAME, Report, sorted_findings, summarize

JSON_VERSION = 1


def to_json(report: Report) -> dict[str, Any]:
    """Suppressed findings are listed (with `suppressed: true`) but counted only in
    `summary.suppressed`, never in errors/warnings/notices/new. `notes` say what was not checked."""
    return {
        "version": JSON_VERSION,
        "tool": {"name": TOOL_NAME, "version": report.tool_version, "kustomize": report.kustomize_version,
                 "helm": report.helm_version},
        "targets": [
            {"path": t.path, "environment": t.environment, "status": t.status, "resources": t.resources}
            for t in report.targets
        ],
        "findings": [f.to_json() for f in sorted_findings(report.findings)],
        "summary": summarize(report.findings).to_json(),
        "notes": list(report.notes),
    }


def render_json(report: Report) -> str:
    return json.dumps(to_json(report), indent=2) + "\n"
