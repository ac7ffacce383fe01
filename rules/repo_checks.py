"""What the repository-scope rules share: the scope they judge, environments and severities of paths,
findings located by file and line, and line-insertion suggestions.

Repo rules judge the repository model once (files, Flux objects, overlays), not rendered objects per
environment, so every finding takes its environment from the path it is about.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.model import Finding, FluxRef, Origin, ResourceId, Suggestion
from bot.repo.discover import RepoModel
from bot.repo.kustomization import BuildError, load_kustomization
from bot.yamlpos import YamlDoc, YamlError
from rules.base import Rule

if TYPE_CHECKING:
    from bot.config import Config

EnvResolver = Callable[[str], "str | None"]
PATCH_FIELDS = ("patches", "patchesStrategicMerge", "patchesJson6902")


@dataclass
class RepoScope:
    """One repository as the repo rules see it. `changed_files` None means every file counts as changed."""

    model: RepoModel
    config: Config
    changed_files: frozenset[str] | None = None
    environment_by_path: EnvResolver | None = None

    def environment(self, path: str, flux: FluxRef | None = None, fallback: bool = True) -> str | None:
        """Environment of a repository path: the caller's mapping, the config's `environments.paths`,
        then `clusters/<env>/` / `overlays/<env>/` (normalised through the aliases), then, unless
        `fallback` is off, the repository's default environment."""
        from bot.config import normalise_env

        env = self.environment_by_path(path) if self.environment_by_path else None
        env = env or self.config.env_for_path(path) or (
            self.model.environment_of(path, flux) if fallback else self.model.named_environment(path, flux))
        return normalise_env(env, self.config) if env else None

    def severity(self, rule: Rule, environment: str | None, intrinsic: str | None = None) -> str | None:
        """The finding's severity, None when the rule is off in `environment`. `intrinsic` is a
        severity the catalogue states for this case (e.g. a warning part of an error rule); a
        repository's explicit override still wins over it."""
        configured = self.config.severity_for(rule, environment)
        if configured is None:
            return None
        if intrinsic and not self.config.has_severity_override(rule.id, environment):
            return intrinsic
        return configured

    def is_changed(self, path: str) -> bool:
        return self.changed_files is None or path in self.changed_files

    def docs(self, rel: str) -> list[YamlDoc]:
        try:
            return self.model.tree.docs(rel)
        except YamlError:
            return []


def repo_finding(
    rule: Rule,
    *,
    severity: str,
    environment: str | None,
    message: str,
    file: str,
    line: int | None,
    end_line: int | None = None,
    field: str | None = None,
    resource: ResourceId | None = None,
    target: str | None = None,
    remediation: str | None = None,
    suggestion: Suggestion | None = None,
    via: str = "manifest",
) -> Finding:
    return Finding(
        rule=rule.id,
        severity=severity,
        environment=environment,
        message=message,
        remediation=remediation or rule.remediation,
        target=target,
        resource=resource,
        field=field,
        origin=Origin(file, line, end_line or line, via),
        suggestion=suggestion,
    )


def where(environment: str | None) -> str:
    return f"in {environment}" if environment else "in an unnamed environment (judged as production)"


# --- Flux objects with their documents --------------------------------------------------------


def flux_docs(scope: RepoScope) -> Iterator[tuple[FluxRef, YamlDoc]]:
    """Each Flux object of the repository with the document that defines it (for line spans).

    Objects in files that a kustomization uses as patches are skipped: they are partial overlays of
    an object defined elsewhere, not objects of their own.
    """
    patches = patch_files(scope.model)
    for ref in scope.model.flux_objects:
        doc = scope.model.flux_document(ref) if ref.file not in patches else None
        if doc is not None:
            yield ref, doc


def patch_files(model: RepoModel) -> frozenset[str]:
    """Files that some kustomization lists under `patches`/`patchesStrategicMerge`/`patchesJson6902`."""
    out: set[str] = set()
    for directory in model.kustomization_dirs:
        try:
            kust = load_kustomization(model.tree, directory)
        except BuildError:
            continue
        out |= {ref.path for ref in kust.refs if ref.field in PATCH_FIELDS and ref.path}
    return frozenset(out)


def line_at(doc: YamlDoc, *segments: str | int) -> int:
    """First line of the value at `segments`, else of its deepest existing parent."""
    span, _ = doc.nearest(segments)
    return span[0]


# --- suggestions ---------------------------------------------------------------------------

_KEY_LINE = re.compile(r"^(\s*)(?:-\s+)?[\"']?[\w.-]+[\"']?\s*:\s*(#.*)?$")


def insert_under(lines: list[str], doc: YamlDoc, parent: tuple, new_lines: list[str], file: str) -> Suggestion | None:
    """Suggest adding `new_lines` (unindented `key: value` lines) as children of the block mapping at
    `parent`: the parent's key line is kept and the new keys follow it, indented like its first child."""
    span = doc.span(parent)
    block = _value(doc.data, parent)
    if not span or not isinstance(block, dict):
        return None
    key_line = span[0]
    if not 0 < key_line <= len(lines) or not _KEY_LINE.match(lines[key_line - 1]):
        return None
    child_indent = None
    for key in block:
        child = doc.span((*parent, key))
        if child and 0 < child[0] <= len(lines):
            text = lines[child[0] - 1]
            child_indent = text[: len(text) - len(text.lstrip())]
            break
    if child_indent is None:
        return None
    text = "\n".join([lines[key_line - 1], *(child_indent + n for n in new_lines)])
    return Suggestion(file, key_line, key_line, text)


def replace_value_line(lines: list[str], line: int, key: str, value: str, file: str) -> Suggestion | None:
    """Suggest `key: value` on a single-line `key: ...` at `line`, keeping indentation and comment."""
    if not 0 < line <= len(lines):
        return None
    m = re.match(r"^(\s*(?:-\s+)?)(['\"]?)" + re.escape(key) + r"\2(\s*:\s*)([^#]*?)(\s*#.*)?$", lines[line - 1])
    if not m or not m.group(4):
        return None
    return Suggestion(file, line, line, f"{m.group(1)}{m.group(2)}{key}{m.group(2)}{m.group(3)}{value}{m.group(5) or ''}")


def _value(data: object, path: tuple) -> object:
    cur = data
    for seg in path:
        if isinstance(cur, dict):
            cur = cur.get(seg)
        elif isinstance(cur, list) and isinstance(seg, int) and -len(cur) <= seg < len(cur):
            cur = cur[seg]
        else:
            return None
    return cur
