"""Mechanical provenance check shared by the conformance and corpus tests.

A value's origin is acceptable when the cited line (or its span) holds the value, or when the
origin is a kustomization/Flux field or generator that produced it (then the cited file must be
that kustomization or Flux file).
"""

from __future__ import annotations

from bot.cli.build import leaves
from bot.render.build import Rendered

PRODUCERS = {"kustomization", "generator", "json6902", "flux"}


def _line_scalar(line: str) -> str:
    """The scalar written on a `key: value` or `- value` line, unquoted."""
    body = line.split("#", 1)[0].strip().lstrip("- ").strip()
    if ":" in body and not body.startswith(("'", '"')):
        body = body.split(":", 1)[1].strip() if not body.endswith(":") else ""
    return body.strip("'\"")


def _supports(lines: list[str], start: int, end: int, value) -> bool:
    """The span holds the value, or holds a name the value was derived from (prefix, suffix and
    hash transformations and name references keep the original name inside the value)."""
    if value is None:
        return True
    text = "\n".join(lines[start - 1:end])
    sval = str(value).lower() if isinstance(value, bool) else str(value)
    first = sval.splitlines()[0].strip() if sval.strip() else ""
    if not first:
        return True
    if first in text or first in text.replace('"', "").replace("'", ""):
        return True
    written = _line_scalar(lines[start - 1])
    return len(written) >= 2 and written in first


def check(rendered: Rendered, read_lines) -> tuple[int, list[str]]:
    """(scalars checked, problems) for one rendered target."""
    problems: list[str] = []
    count = 0
    for ro in rendered.objects:
        for path, value in leaves(ro.obj):
            if not path:
                continue
            count += 1
            o = ro.origin(path)
            if not o.file or not o.line:
                problems.append(f"{ro.id} {path}: no origin")
                continue
            lines = read_lines(o.file)
            if not lines or o.line > len(lines):
                problems.append(f"{ro.id} {path}: {o} is not a line of the file")
                continue
            if o.via in PRODUCERS:
                continue
            if not _supports(lines, o.line, o.end_line or o.line, value):
                problems.append(f"{ro.id} {path}={str(value)[:40]!r}: {o} [{o.via}] does not hold it")
    return count, problems


def check_all(renders) -> tuple[int, list[str]]:
    """(scalars checked, problems labelled by their render) over `(label, rendered, read_lines)`."""
    total, problems = 0, []
    for label, rendered, read_lines in renders:
        n, p = check(rendered, read_lines)
        total += n
        problems += [f"{label}: {x}" for x in p]
    return total, problems
