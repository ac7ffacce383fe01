"""Which environment a path belongs to: `clusters/<env>/` or `overlays/<env>/`, normalised by aliases."""

from __future__ import annotations

from collections.abc import Mapping

DEFAULT_ALIASES: Mapping[str, str] = {
    "dev": "development",
    "develop": "development",
    "development": "development",
    "stage": "staging",
    "stg": "staging",
    "staging": "staging",
    "prod": "production",
    "prd": "production",
    "production": "production",
}
ENV_PARENTS = ("clusters", "overlays")


def normalise(name: str, aliases: Mapping[str, str] | None = None) -> str:
    """Canonical environment name (dev → development); unknown names are kept as they are."""
    aliases = DEFAULT_ALIASES if aliases is None else aliases
    return aliases.get(name.lower(), aliases.get(name, name))


def env_from_path(path: str, aliases: Mapping[str, str] | None = None, parents: tuple[str, ...] = ENV_PARENTS) -> str | None:
    """The environment named by the segment after `clusters/` or `overlays/` in a repo-relative path.

    Falls back to any segment that is a known environment name or alias (`apps/production`,
    `tenants/staging`), which is how most Flux repositories lay out per-cluster folders.
    """
    parts = [p for p in path.strip("./").split("/") if p and p != "."]
    for i, part in enumerate(parts[:-1]):
        if part in parents:
            return normalise(parts[i + 1], aliases)
    known = DEFAULT_ALIASES if aliases is None else aliases
    for part in parts:
        if part.lower() in known:
            return normalise(part, aliases)
    return None


def overlay_env(path: str, aliases: Mapping[str, str] | None = None) -> str | None:
    """Environment of a directory under `overlays/<env>/`, else None."""
    parts = path.split("/")
    for i, part in enumerate(parts[:-1]):
        if part == "overlays":
            return normalise(parts[i + 1], aliases)
    return None
