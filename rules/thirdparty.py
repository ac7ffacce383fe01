"""Manifests that are not the team's own: vendored upstream files, generated files, Flux's own install.

`flux bootstrap` writes `flux-system/gotk-components.yaml` ("DO NOT EDIT"), and teams vendor upstream
manifests (cert-manager, an operator's CRDs and controllers) as they are. Judging those by the team's
workload standards (labels, environment defaults, replicas, probes, resources) reports what the team
cannot and should not change; the security rules still apply to them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from bot.config import Config, glob_matches
from bot.model import ResourceId
from bot.objects import RenderedObject

# Built in, before the repository's own `third_party` globs.
VENDORED = ("**/flux-system/gotk-components.yaml", "vendor/**", "**/vendor/**", "third_party/**",
            "**/third_party/**", "third-party/**", "**/third-party/**")
# A file declares itself generated in a comment among its first lines.
GENERATED = re.compile(r"(?i)\b(?:do not edit|code generated|@generated|generated (?:automatically|by)\b)")
HEAD_LINES = 10


def generated(lines: list[str]) -> bool:
    """Whether a comment among the first lines says the file is generated."""
    return any(line.lstrip().startswith("#") and GENERATED.search(line) for line in lines[:HEAD_LINES])


def third_party_file(rel: str, config: Config, read_lines: Callable[[str], list[str]]) -> bool:
    return (any(glob_matches(g, rel) for g in VENDORED) or config.is_third_party(rel)
            or generated(read_lines(rel)))


def third_party(objects: Iterable[RenderedObject], config: Config,
                read_lines: Callable[[str], list[str]]) -> set[ResourceId]:
    """The objects whose source file is third-party (an object a generator or Flux wrote has the
    kustomization or Flux file as its source, and is the team's)."""
    seen: dict[str, bool] = {}
    out: set[ResourceId] = set()
    for obj in objects:
        rel = obj.origin("").file
        if rel is None:
            continue
        if rel not in seen:
            seen[rel] = third_party_file(rel, config, read_lines)
        if seen[rel]:
            out.add(obj.id)
    return out
