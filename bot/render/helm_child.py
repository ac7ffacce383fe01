"""The child process that renders a chart with Helm's own engine (the helm-python-sdk's libhelm).

Run only by bot.render.helm, in the sandbox, as `python -I <this file>`: one JSON request on stdin
(`version`, `lint` of a chart, or `template` of a batch of releases), one JSON answer on stdout. It imports nothing but the standard library and helm_python, so it needs
no PYTHONPATH, and `-I` keeps the chart's folder, the working directory and every PYTHON* variable
out of its imports. A Helm error is an answer ({"ok": false, "error": ...}); anything else is a crash
the parent reads from stderr.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import helm_python as helm
from helm_python import _native  # the render options the wrapper does not expose (kube_version, api_versions)


def _check_dependencies(chart: helm.Chart) -> None:
    """Helm's action.CheckDependencies, which `helm template` runs and the SDK's render does not: a
    dependency Chart.yaml declares must be in charts/."""
    present = {dep.get("name") for dep in chart.dependencies}
    missing = [str(dep.get("name")) for dep in chart.metadata.get("dependencies") or []
               if dep.get("name") not in present]
    if missing:
        raise helm.HelmChartInvalidError(
            f"found in Chart.yaml, but missing in charts/ directory: {', '.join(missing)}")


def _template(req: dict[str, Any]) -> dict[str, Any]:
    helm.validate_release_name(req["name"])  # as `helm template` does; the SDK's render does not
    opts: dict[str, Any] = {
        "name": req["name"],
        "namespace": req["namespace"],
        "revision": 1,
        "is_install": not req["is_upgrade"],
        "is_upgrade": req["is_upgrade"],
        "enable_dns": False,
    }
    if req.get("kube_version"):
        opts["kube_version"] = req["kube_version"]
    if req.get("api_versions"):
        opts["api_versions"] = req["api_versions"]
    with helm.Chart.load(req["chart"]) as chart:
        _check_dependencies(chart)
        rendered: dict[str, str] = json.loads(
            _native.call_string("helm_render", chart._raw(), json.dumps(req["values"]), json.dumps(opts)))
        crds = chart.crds if req["include_crds"] else []
    # As `helm template`: CRDs first when asked for, no NOTES.txt, no template that rendered to nothing.
    # Helm orders the rest by kind; this orders it by template path, which is stable too.
    manifests = [(crd["filename"], crd["data"]) for crd in crds]
    manifests += [(path, text) for path, text in sorted(rendered.items())
                  if not path.endswith("/NOTES.txt") and text.strip()]
    return {"ok": True, "manifests": manifests}


def _one(req: dict[str, Any]) -> dict[str, Any]:
    """One release of a batch: Helm's error is its answer, the others still render."""
    try:
        return _template(req)
    except helm.HelmError as exc:
        return {"ok": False, "error": str(exc)}


def _lint(req: dict[str, Any]) -> dict[str, Any]:
    report = helm.lint(req["chart"], req["values"], kube_version=req.get("kube_version") or None)
    return {"ok": True, "messages": report.get("messages") or [], "errors": report.get("errors") or []}


def main() -> None:
    req = json.loads(sys.stdin.buffer.read())
    try:
        if req["op"] == "version":
            answer: dict[str, Any] = {"ok": True, "version": helm.helm_sdk_version()}
        elif req["op"] == "lint":
            answer = _lint(req)
        else:
            answer = {"ok": True, "results": [_one(item) for item in req["requests"]]}
    except helm.HelmError as exc:
        answer = {"ok": False, "error": str(exc)}
    sys.stdout.buffer.write(json.dumps(answer).encode())


if __name__ == "__main__":
    main()
