"""What rules see: rendered objects of one environment, each able to say where a value came from.

No I/O here. The renderer builds `RenderedObject`s with a `locate` function (provenance) and the
pipeline groups them per environment into an `EnvContext`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot.model import UNKNOWN, Origin, ResourceId, Target, get_path

Locate = Callable[[str], Origin]


def _unknown(_path: str) -> Origin:
    return UNKNOWN


@dataclass
class RenderedObject:
    """One object as Flux would apply it, with provenance for its fields."""

    obj: dict[str, Any]
    id: ResourceId
    target: Target | None = None
    locate: Locate = field(default=_unknown, repr=False)
    places: Callable[[], list[tuple[str, int, int]]] = field(default=list, repr=False)

    def origin(self, path: str = "") -> Origin:
        """Source file and line that set the value at `path` (field-path notation, see bot.model).

        For an absent field, the line of the nearest enclosing object that defines it
        (`via == "enclosing"`); `path=""` gives the resource's own definition.
        """
        return self.locate(path)

    def value(self, path: str) -> Any:
        """The value at a field path, None where it is absent (or the path is malformed)."""
        try:
            return get_path(self.obj, path)
        except ValueError:
            return None

    @property
    def kind(self) -> str:
        return self.id.kind

    @property
    def name(self) -> str:
        return self.id.name

    @property
    def namespace(self) -> str:
        return self.id.namespace

    @property
    def metadata(self) -> dict[str, Any]:
        meta = self.obj.get("metadata")
        return meta if isinstance(meta, dict) else {}

    @property
    def labels(self) -> dict[str, Any]:
        labels = self.metadata.get("labels")
        return labels if isinstance(labels, dict) else {}

    @property
    def annotations(self) -> dict[str, Any]:
        ann = self.metadata.get("annotations")
        return ann if isinstance(ann, dict) else {}


@dataclass
class EnvContext:
    """Everything a rule needs to judge one environment.

    `objects` are the rendered objects of every target of the environment (deduplicated by
    resource id and target). `policy` is the effective policy (seed defaults merged with the
    repo's config). `repo` is the repository model for repo-level rules (None for plain
    manifests). `read_lines(file)` returns a source file's lines (for suggestions), or [].
    """

    environment: str
    objects: list[RenderedObject]
    policy: dict[str, Any]
    repo: Any = None
    read_lines: Callable[[str], list[str]] = field(default=lambda _f: [], repr=False)
    changed_files: frozenset[str] | None = None  # None: every file counts as changed
    # Objects from vendored or generated files (rules.thirdparty): the team's workload rules skip them.
    third_party: frozenset[ResourceId] = frozenset()
    # Objects HelmReleases install (what their charts render), and those of charts from outside the
    # repository (`helm.vendor_charts` in the config).
    from_charts: frozenset[ResourceId] = frozenset()
    vendor_chart: frozenset[ResourceId] = frozenset()
    # The Kubernetes version objects are validated for (`kubernetes.version` in the config).
    kube_version: str = "1.33.0"
    # HelmReleases whose charts were rendered: what they install is among `objects`.
    rendered_releases: frozenset[ResourceId] = frozenset()
    # The repository's `creators:` (bot.config.Creator): objects that create others, beyond rules.creators.
    creators: tuple[Any, ...] = ()
    # Indexes rules derive from `objects` once per environment (rules.base.indexed), not once per object.
    memo: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
