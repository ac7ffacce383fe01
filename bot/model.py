"""Plain data shared by every stage: resource ids, origins, targets, findings.

A leaf module: no I/O, imports nothing from the project. Vocabulary follows Kustomize
(resource id = group/version/kind/namespace/name, origin) so its docs explain ours.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

SEVERITIES = ("error", "warning", "notice")
ENVIRONMENTS = ("development", "staging", "production")


@dataclass(frozen=True, order=True)
class ResourceId:
    """Kustomize's resource id: group/version/kind/namespace/name ('' where absent)."""

    group: str
    version: str
    kind: str
    namespace: str
    name: str

    @classmethod
    def of(cls, obj: dict[str, Any], default_namespace: str = "") -> ResourceId:
        api = str(obj.get("apiVersion") or "")
        group, _, version = api.rpartition("/")
        meta = obj.get("metadata") or {}
        if not isinstance(meta, dict):
            meta = {}
        return cls(
            group=group,
            version=version,
            kind=str(obj.get("kind") or ""),
            namespace=str(meta.get("namespace") or default_namespace),
            name=str(meta.get("name") or ""),
        )

    def __str__(self) -> str:
        ns = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind}/{ns}{self.name}"


# --- field paths -------------------------------------------------------------------------
# A field path is written like `spec.template.spec.containers[api].image`: dotted keys, `[name]`
# selects the list item whose `name` is that value, `[3]` an index, and `["a.b/c"]` a key that
# holds dots or brackets (label and annotation keys).

Segment = str | int | tuple[str, str]  # key | index | ("name", value)

_SEG = re.compile(r'\.?([^.\[\]"]+)|\["((?:[^"\\]|\\.)*)"\]|\[([^\]"]*)\]')


def parse_path(path: str) -> tuple[Segment, ...]:
    """Parse the field-path notation into segments; raises ValueError on malformed input."""
    out: list[Segment] = []
    pos = 0
    while pos < len(path):
        m = _SEG.match(path, pos)
        if not m or m.end() == pos:
            raise ValueError(f"malformed field path {path!r} at {pos}")
        key, quoted, sel = m.groups()
        if key is not None:
            out.append(key)
        elif quoted is not None:
            out.append(quoted.replace('\\"', '"').replace("\\\\", "\\"))
        elif sel.isdigit():
            out.append(int(sel))
        else:
            out.append(("name", sel))
        pos = m.end()
    return tuple(out)


def format_path(segments: tuple[Segment, ...] | list[Segment]) -> str:
    parts: list[str] = []
    for seg in segments:
        if isinstance(seg, tuple):
            parts.append(f"[{seg[1]}]")
        elif isinstance(seg, int):
            parts.append(f"[{seg}]")
        elif re.search(r'[.\[\]"]', seg) or not seg:
            esc = seg.replace("\\", "\\\\").replace('"', '\\"')
            parts.append(f'["{esc}"]')
        else:
            parts.append(("." if parts else "") + seg)
    return "".join(parts)


def split_image(image: str) -> tuple[str, str, str]:
    """(name, tag, digest) of an image reference, as Kustomize's `image.Split` reads it."""
    name, _, digest = image.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1:], digest
    return name, "", digest


def concrete_path(obj: Any, segments: tuple[Segment, ...]) -> tuple[str | int, ...]:
    """`segments` with each `[name]` selector replaced by the index it selects in `obj`, as far as
    they resolve (the rest is kept as written)."""
    out: list[Any] = []
    cur = obj
    for i, seg in enumerate(segments):
        if isinstance(seg, tuple):
            idx = next((j for j, x in enumerate(cur) if isinstance(x, dict) and str(x.get(seg[0])) == seg[1]),
                       None) if isinstance(cur, list) else None
            if idx is None:
                return (*out, *segments[i:])
            seg = idx
        out.append(seg)
        cur = cur[seg] if isinstance(seg, int) and isinstance(cur, list) and -len(cur) <= seg < len(cur) \
            else cur.get(seg) if isinstance(cur, dict) else None
    return tuple(out)


def get_path(obj: Any, path: str | tuple[Segment, ...]) -> Any:
    """The value at a field path, or None where any step is absent."""
    segs = parse_path(path) if isinstance(path, str) else path
    cur = obj
    for seg in segs:
        if isinstance(seg, tuple):
            if not isinstance(cur, list):
                return None
            cur = next((x for x in cur if isinstance(x, dict) and str(x.get(seg[0])) == seg[1]), None)
        elif isinstance(seg, int):
            cur = cur[seg] if isinstance(cur, list) and -len(cur) <= seg < len(cur) else None
        else:
            cur = cur.get(seg) if isinstance(cur, dict) else None
        if cur is None:
            return None
    return cur


def secret_data(value: str) -> str | None:
    """A Secret `data` value decoded (base64; the line breaks kustomize wraps long values with are
    ignored), None when it is not base64."""
    try:
        return base64.b64decode("".join(value.split()), validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return None


def as_dict(value: Any) -> dict[Any, Any]:
    """`value` when it is a mapping, else an empty one: YAML from a repository may hold any type."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    """`value` when it is a list, else an empty one."""
    return value if isinstance(value, list) else []


def type_name(value: Any) -> str:
    """How YAML would call a value's type, for messages about a field of the wrong type."""
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string", dict: "a mapping",
             list: "a list"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


@dataclass(frozen=True)
class Origin:
    """Where a value came from: a repository-relative file and 1-based line range.

    `via` says which mechanism set it: `manifest`, `patch` (strategic merge), `json6902`,
    `kustomization` (a field such as images/replicas/namespace), `generator`, `flux`
    (a Flux Kustomization field or postBuild substitution), `remote` (content fetched for a remote
    `resources:` entry, located at that entry) or `enclosing` (the field is absent and this is where
    adding it fixes it).
    """

    file: str | None
    line: int | None
    end_line: int | None = None
    via: str = "manifest"
    detail: str = ""

    def span(self) -> tuple[str, int, int] | None:
        """(file, first line, last line) when the origin names both a file and a line."""
        if not self.file or not self.line:
            return None
        return self.file, self.line, max(self.end_line or self.line, self.line)

    def __str__(self) -> str:
        if not self.file:
            return "<unknown>"
        return f"{self.file}:{self.line}" if self.line else self.file


UNKNOWN = Origin(None, None, None, "unknown")


@dataclass(frozen=True)
class FluxRef:
    """A Flux object found in the repository, with where it is defined."""

    kind: str  # Kustomization | HelmRelease | GitRepository | OCIRepository | HelmRepository
    name: str
    namespace: str
    file: str
    line: int
    spec: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    # Fields Flux's API would reject for their type, left out of `spec` (bot.repo.flux_spec).
    problems: tuple[Any, ...] = field(default=(), compare=False, hash=False)


@dataclass(frozen=True)
class Target:
    """A build target: a directory Flux applies (or an overlay nobody applies)."""

    path: str  # repository-relative directory, '.' for the root
    environment: str | None
    flux: FluxRef | None = None  # the Flux Kustomization that applies it, if any

    @property
    def key(self) -> str:
        """Unique within a repository: two clusters may each have a Flux Kustomization of the same
        name pointing at the same path, so the defining file is part of it."""
        return f"{self.path}@{self.flux.file}#{self.flux.namespace}/{self.flux.name}" if self.flux else self.path


@dataclass(frozen=True)
class Suggestion:
    """A ready-to-apply replacement for lines `line..end_line` of `file`."""

    file: str
    line: int
    end_line: int
    text: str


@dataclass
class Finding:
    """One rule violation, created once with everything a reporter needs."""

    rule: str
    severity: str
    environment: str | None
    message: str
    remediation: str
    target: str | None = None
    resource: ResourceId | None = None
    container: str | None = None
    field: str | None = None
    origin: Origin = UNKNOWN
    suggestion: Suggestion | None = None
    new: bool = True
    suppressed: bool = False
    suppression_reason: str | None = None
    # Every document that defines or patches the finding's resource (file, first line, last line):
    # where a review may anchor a comment when the finding's own line is outside the diff.
    places: tuple[tuple[str, int, int], ...] = dataclasses.field(default=(), compare=False, repr=False)
    # The field path `origin` describes (the absent probe, not the container it belongs to).
    located: str | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def fingerprint(self) -> str:
        """Stable across line shifts: rule, environment, resource id, container, field path (without a
        resource: the file, and the target, so two targets failing in one file stay two findings)."""
        r = self.resource
        rid = f"{r.group}/{r.kind}/{r.namespace}/{r.name}" if r else (self.origin.file or "") + (
            f"\x1f{self.target}" if self.target else "")
        key = "\x1f".join([self.rule, self.environment or "", rid, self.container or "", self.field or ""])
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        r = self.resource
        return {
            "rule": self.rule,
            "severity": self.severity,
            "environment": self.environment,
            "target": self.target,
            "resource": {"kind": r.kind, "namespace": r.namespace or None, "name": r.name} if r else None,
            "container": self.container,
            "field": self.field,
            "file": self.origin.file,
            "line": self.origin.line,
            "end_line": self.origin.end_line or self.origin.line,
            "message": self.message,
            "remediation": self.remediation,
            "suggestion": self.suggestion.text if self.suggestion else None,
            "new": self.new,
            "suppressed": self.suppressed,
            "fingerprint": self.fingerprint,
        }
