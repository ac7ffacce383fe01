"""Helm's own engine behind one small interface: `template` a batch of releases, `lint` a chart.

Two engines, found once by `find_helm`: a `helm` binary (`HELM_BIN`, else `helm` on PATH), or the
Helm SDK that the `helm-python-sdk` package bundles (Helm's Go code as a shared library), run by
bot/render/helm_child.py. Either runs as a sandboxed child (bot.render.sandbox): an empty
environment, no network (`lookup` returns nothing, as in `helm template`), memory and output caps,
a time limit, killed with the review. A chart is untrusted code for a template engine.

A batch is one child (starting the SDK costs a few hundred milliseconds, rendering a chart a few);
a batch whose child fails as a whole (time, output, memory, a crash) is retried one release at a time,
so only the release that loops is reported, not its neighbours.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from bot.deadline import Deadline
from bot.render.sandbox import (
    MAX_TARGET_BYTES,
    RunResult,
    go_crash,
    killed,
    out_of_memory,
    run_sandboxed,
    setting,
)

HELM_TIMEOUT = setting("INFRA_REVIEW_HELM_TIMEOUT", 30)  # seconds per release
CHILD = Path(__file__).with_name("helm_child.py")
DEFAULT_KUBE_VERSION = "1.33.0"


class HelmMissing(RuntimeError):
    """No Helm engine could be found."""


@dataclass(frozen=True)
class TemplateRequest:
    """One release to template: `chart` a folder or a .tgz archive."""

    chart: Path
    values: dict[str, Any]
    release_name: str
    namespace: str
    kube_version: str = DEFAULT_KUBE_VERSION
    api_versions: tuple[str, ...] = ()
    include_crds: bool = True


@dataclass(frozen=True)
class TemplateResult:
    """Helm's output as (template path, text) in Helm's order, or why not: `error` is Helm's sentence;
    `error_file`/`error_line` the chart file (`<chart>/templates/x.yaml`) and line it names, if any;
    `stopped` when a limit ended it (says nothing lasting about the chart)."""

    ok: bool
    manifests: tuple[tuple[str, str], ...] = ()
    error: str = ""
    error_file: str = ""
    error_line: int = 0
    stopped: bool = False


@dataclass(frozen=True)
class LintMessage:
    severity: str  # "error" | "warning" | "info"
    path: str  # chart-relative (`templates/x.yaml`, `Chart.yaml`), "" when Helm names none
    line: int
    message: str


@dataclass(frozen=True)
class LintResult:
    ok: bool
    messages: tuple[LintMessage, ...] = ()
    error: str = ""


class Helm(Protocol):
    """What the release renderer needs of an engine."""

    version: str

    def template(self, requests: Sequence[TemplateRequest], stop: Deadline | None = None) -> list[TemplateResult]: ...

    def lint(self, chart: Path, values: dict[str, Any], kube_version: str = DEFAULT_KUBE_VERSION,
             stop: Deadline | None = None) -> LintResult: ...


# Helm's errors name the template and line first: `template: demo/templates/x.yaml:12:20: executing ...`,
# `parse error at (demo/templates/x.yaml:3): ...`, `YAML parse error on demo/templates/x.yaml: ...`.
_AT = re.compile(r"(?:^|template: |parse error at \(|YAML parse error on |error calling \w+: )"
                 r"(?P<file>[\w.\-/]+\.(?:ya?ml|tpl|txt|json))(?::(?P<line>\d+))?")
_CHART_FILE = re.compile(r"^[^/]+/((?:templates|charts|crds)/.+|values\.yaml|Chart\.yaml|values\.schema\.json)$")


def where(error: str) -> tuple[str, int]:
    """The chart file and line Helm's error names (("", 0) when none), as Helm names it:
    `<chart name>/templates/x.yaml`."""
    m = _AT.search(error)
    return (m.group("file"), int(m.group("line") or 0)) if m else ("", 0)


def chart_relative(file: str) -> str:
    """`<chart name>/templates/x.yaml` → `templates/x.yaml` (a subchart's files keep `charts/<sub>/`)."""
    m = _CHART_FILE.match(file)
    return m.group(1) if m else file


def one_sentence(error: str) -> str:
    """Helm's error on one line, without Go's wrapping noise."""
    text = " ".join(error.split())
    return text.removeprefix("Error: ").strip()


def _failed(error: str, stopped: bool = False) -> TemplateResult:
    file, line = where(error)
    return TemplateResult(False, error=one_sentence(error), error_file=file, error_line=line, stopped=stopped)


def _crash(who: str, run: RunResult) -> str:
    return (out_of_memory(who, run.stderr) or killed(who, run.returncode) or go_crash(who, run.stderr)
            or one_sentence(run.stderr.strip().splitlines()[-1] if run.stderr.strip() else f"{who} failed"))


def _batched(requests: Sequence[TemplateRequest],
             one_batch: Callable[[Sequence[TemplateRequest]], list[TemplateResult] | TemplateResult]) -> list[TemplateResult]:
    """`one_batch(requests)` answers each request, or with one result when the child itself failed (a
    limit, a crash); then, where several were in it, each is tried alone so only the culprit fails."""
    if not requests:
        return []
    results = one_batch(requests)
    if isinstance(results, TemplateResult):
        if len(requests) == 1:
            return [results]
        return [_one(one_batch([req])) for req in requests]
    return results


def _one(result: list[TemplateResult] | TemplateResult) -> TemplateResult:
    return result if isinstance(result, TemplateResult) else result[0]


@dataclass
class SdkHelm:
    """The Helm SDK of helm-python-sdk, in bot/render/helm_child.py under the sandbox."""

    python: str = sys.executable
    version: str = "unknown"
    timeout: float = HELM_TIMEOUT

    def __str__(self) -> str:
        return f"Helm SDK {self.version} (helm-python-sdk)"

    def _call(self, request: dict[str, Any], timeout: float, stop: Deadline | None) -> tuple[dict[str, Any] | None, str, bool]:
        """The child's answer, else (None, why, stopped)."""
        run = run_sandboxed([self.python, "-I", str(CHILD)], tempfile.gettempdir(), timeout=timeout,
                            max_output=MAX_TARGET_BYTES, stop=stop, what="helm template", printer="Helm",
                            timeout_setting="INFRA_REVIEW_HELM_TIMEOUT", scope="per-release",
                            stdin_bytes=json.dumps(request).encode())
        if run.stopped:
            return None, run.stderr, True
        try:
            answer = json.loads(run.stdout)
        except ValueError:
            return None, _crash("helm", run), False
        return (answer, "", False) if isinstance(answer, dict) else (None, "helm answered nonsense", False)

    def template(self, requests: Sequence[TemplateRequest], stop: Deadline | None = None) -> list[TemplateResult]:
        def one_batch(batch: Sequence[TemplateRequest]) -> list[TemplateResult] | TemplateResult:
            wire = [{"chart": str(r.chart), "values": r.values, "name": r.release_name, "namespace": r.namespace,
                     "kube_version": _v(r.kube_version), "api_versions": list(r.api_versions),
                     "include_crds": r.include_crds, "is_upgrade": False} for r in batch]
            answer, why, stopped = self._call({"op": "template", "requests": wire}, self.timeout * len(batch), stop)
            if answer is None:
                return _failed(why, stopped)
            out = []
            for item in answer.get("results") or []:
                if item.get("ok"):
                    out.append(TemplateResult(True, tuple((str(p), str(t)) for p, t in item.get("manifests") or [])))
                else:
                    out.append(_failed(str(item.get("error") or "helm failed")))
            if len(out) != len(batch):
                return _failed("helm answered for a different number of releases")
            return out

        return _batched(requests, one_batch)

    def lint(self, chart: Path, values: dict[str, Any], kube_version: str = DEFAULT_KUBE_VERSION,
             stop: Deadline | None = None) -> LintResult:
        answer, why, _stopped = self._call({"op": "lint", "chart": str(chart), "values": values,
                                            "kube_version": _v(kube_version)}, self.timeout, stop)
        if answer is None:
            return LintResult(False, error=why)
        if not answer.get("ok"):
            return LintResult(False, error=one_sentence(str(answer.get("error"))))
        return LintResult(True, tuple(_lint_message(m) for m in answer.get("messages") or []))


_SEVERITY = {3: "error", 2: "warning", 1: "info", 0: "info"}


def _lint_message(raw: dict[str, Any]) -> LintMessage:
    """Helm's lint message: `path` is the file it is about; the error often names a template line the
    way template errors do."""
    text = one_sentence(str(raw.get("error") or raw.get("err") or ""))
    path = str(raw.get("path") or "")
    file, line = where(text)
    return LintMessage(_SEVERITY.get(int(raw.get("severity") or 0), "info"), chart_relative(file or path), line, text)


def _v(version: str) -> str:
    return version if version.startswith("v") else f"v{version}"


@dataclass
class BinaryHelm:
    """A `helm` binary (v3 or v4): `helm template` and `helm lint` in the sandbox."""

    path: str
    version: str = "unknown"
    timeout: float = HELM_TIMEOUT
    extra_env: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"helm {self.version} ({self.path})"

    def _env(self, home: str) -> dict[str, str]:
        # Helm wants somewhere for its config and cache; a fresh folder keeps repositories.yaml and
        # registry credentials of this machine out of it.
        return {"HELM_CONFIG_HOME": f"{home}/config", "HELM_CACHE_HOME": f"{home}/cache",
                "HELM_DATA_HOME": f"{home}/data", **self.extra_env}

    def _run(self, argv: list[str], home: str, stop: Deadline | None, what: str) -> RunResult:
        return run_sandboxed(argv, home, timeout=self.timeout, max_output=MAX_TARGET_BYTES, stop=stop, what=what,
                             printer="Helm", timeout_setting="INFRA_REVIEW_HELM_TIMEOUT", scope="per-release",
                             env_extra=self._env(home))

    def template(self, requests: Sequence[TemplateRequest], stop: Deadline | None = None) -> list[TemplateResult]:
        return [self._template(r, stop) for r in requests]

    def _template(self, r: TemplateRequest, stop: Deadline | None) -> TemplateResult:
        with tempfile.TemporaryDirectory(prefix="infra-review-helm-") as home:
            values = Path(home, "values.json")
            values.write_text(json.dumps(r.values))
            argv = [self.path, "template", r.release_name, str(r.chart), "--namespace", r.namespace,
                    "--values", str(values), "--kube-version", _v(r.kube_version)]
            argv += [f"--api-versions={v}" for v in r.api_versions]
            if r.include_crds:
                argv.append("--include-crds")
            run = self._run(argv, home, stop, "helm template")
        if run.stopped:
            return _failed(run.stderr, stopped=True)
        if run.returncode != 0:
            return _failed(_crash("helm", run) if run.returncode < 0 else run.stderr.strip() or "helm template failed")
        return TemplateResult(True, tuple(split_sources(run.stdout)))

    def lint(self, chart: Path, values: dict[str, Any], kube_version: str = DEFAULT_KUBE_VERSION,
             stop: Deadline | None = None) -> LintResult:
        with tempfile.TemporaryDirectory(prefix="infra-review-helm-") as home:
            values_file = Path(home, "values.json")
            values_file.write_text(json.dumps(values))
            run = self._run([self.path, "lint", str(chart), "--values", str(values_file), "--kube-version",
                             _v(kube_version)], home, stop, "helm lint")
        messages = []
        for line in run.stdout.splitlines():
            m = re.match(r"^\[(ERROR|WARNING|INFO)\] (?:(\S+?): )?(.*)$", line.strip())
            if m:
                messages.append(_lint_message({"severity": {"ERROR": 3, "WARNING": 2}.get(m.group(1), 1),
                                               "path": m.group(2) or "", "error": m.group(3)}))
        if run.stopped or (run.returncode not in (0, 1) and not messages):
            return LintResult(False, error=_crash("helm", run))
        return LintResult(True, tuple(messages))


_SOURCE = re.compile(r"^# Source: (.+)$", re.M)


def split_sources(text: str) -> list[tuple[str, str]]:
    """`helm template`'s output as (template path, document text), by its `# Source:` comments."""
    out: list[tuple[str, str]] = []
    for doc in re.split(r"^---[ \t]*$", text, flags=re.M):
        m = _SOURCE.search(doc)
        if doc.strip() and m:
            out.append((m.group(1).strip(), doc[m.end():].lstrip("\n")))
    return out


def _binary_version(path: str) -> str:
    with tempfile.TemporaryDirectory(prefix="infra-review-helm-") as home:
        run = run_sandboxed([path, "version", "--short"], home, timeout=20, max_output=4096, stop=None,
                            what="helm version", timeout_setting="INFRA_REVIEW_HELM_TIMEOUT",
                            env_extra={"HELM_CONFIG_HOME": home, "HELM_CACHE_HOME": home, "HELM_DATA_HOME": home})
    m = re.search(r"v\d+\.\d+\.\d+", run.stdout)
    return m.group(0) if m else "unknown"


def _sdk_version(python: str) -> str | None:
    engine = SdkHelm(python)
    answer, _why, _stopped = engine._call({"op": "version"}, 20, None)
    return str(answer["version"]) if answer and answer.get("ok") else None


@lru_cache(maxsize=4)
def find_helm(explicit: str | None = None) -> Helm:
    """`HELM_BIN` if set, else `helm` on PATH, else the Helm SDK (helm-python-sdk) in this Python."""
    explicit = explicit or os.environ.get("HELM_BIN")
    if explicit:
        path = shutil.which(explicit)
        if not path:
            raise HelmMissing(f"HELM_BIN={explicit!r} is not an executable: point it at a helm binary, or unset it "
                              "to use the Helm SDK (pip install helm-python-sdk)")
        return BinaryHelm(path, _binary_version(path))
    path = shutil.which("helm")
    if path:
        return BinaryHelm(path, _binary_version(path))
    version = _sdk_version(sys.executable)
    if version:
        return SdkHelm(sys.executable, version)
    raise HelmMissing("no Helm found: `pip install helm-python-sdk` (what `make venv` does), install helm, or set "
                      "HELM_BIN; HelmReleases are not rendered without it")

