"""latest-tag: images must name a fixed version (tag or digest)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

from bot.model import Finding, Suggestion, as_dict, split_image
from bot.objects import EnvContext, RenderedObject
from rules.base import (
    Rule,
    containers,
    example,
    example_deployment,
    finding,
    is_kind,
    key_path,
    per_env,
    workloads,
)

COMMIT = re.compile(r"^[0-9a-f]{7,40}$")


def floating(image: str, forbidden: Sequence[str], pinned: Sequence[str] = ()) -> str | None:
    """Why `image` floats, or None when it is pinned: a digest, a tag that carries a version (a digit:
    `1.25`, `1.25-alpine`, `20241101`, `v2`), a commit SHA, or one of the `pinned` tags. Anything
    else (`alpine`, `stable`, `main`, `edge`, `lts`) moves when its publisher pushes."""
    _name, tag, digest = split_image(image.strip())  # a registry port is not a tag
    if digest:
        return None
    if not tag:
        return "has no tag (so it means `latest`)"
    low = tag.lower()
    if low in {t.lower() for t in forbidden}:
        return f"uses the moving tag {tag!r}"
    if low in {t.lower() for t in pinned} or re.search(r"\d", tag) or COMMIT.match(low):
        return None
    return f"uses the floating tag {tag!r}, which names no version"


def _helm_values(values: Any, path: str) -> Iterator[tuple[str, str]]:
    """(field path, image-tag value) pairs of a HelmRelease's values: `*image*.tag` and
    string values of keys ending in `image`."""
    if isinstance(values, dict):
        for key, value in values.items():
            sub = key_path(path, str(key))
            if str(key).lower().endswith("image"):
                if isinstance(value, dict) and "tag" in value and value["tag"] is not None:
                    yield key_path(sub, "tag"), str(value["tag"])
                elif isinstance(value, str) and ":" in value.rsplit("/", 1)[-1]:
                    yield sub, value.rsplit(":", 1)[1]
            yield from _helm_values(value, sub)
    elif isinstance(values, list):
        for i, item in enumerate(values):
            yield from _helm_values(item, f"{path}[{i}]")


def _helmrelease(ctx: EnvContext, rule: Rule, obj: RenderedObject, forbidden: list[str],
                 pinned: list[str]) -> Iterator[Finding]:
    for path, tag in _helm_values(as_dict(obj.obj.get("spec")).get("values"), "spec.values"):
        why = floating(f"image:{tag.strip()}", forbidden, pinned) if tag.strip() else None
        if why:
            yield finding(
                rule,
                ctx,
                obj,
                path,
                f"{obj.id} sets the image tag {path} to {tag!r}: the image {why}, so the "
                f"release changes without a commit and a rollback returns whatever the tag points at now.",
            )


# An `images:` entry's `newTag:`, or a chart's `tag:` in a HelmRelease's values.
_NEW_TAG = re.compile(r"^(\s*(?:-\s+)?(?:newTag|tag):[ \t]*)(['\"]?)[^'\"#\s]*\2([ \t]*(?:#.*)?)$")


def tag_from_base(f: Finding, now: RenderedObject, was: RenderedObject, lines: list[str]) -> Suggestion | None:
    """The version the image had on the base revision, written where the floating tag is set now (an
    `image:` line, an `images:` entry's `newTag:` or a values `tag:`), when the base pinned the same image."""
    image, before = now.value(f.located or ""), was.value(f.located or "")
    line = f.origin.line or 0
    if not isinstance(image, str) or not isinstance(before, str) or not 0 < line <= len(lines):
        return None
    name, tag, digest = split_image(before)
    if name != split_image(image)[0] or floating(before, ["latest"]) or before == image:
        return None
    text = lines[line - 1]
    if image in text:
        new = text.replace(image, before, 1)
    elif (m := _NEW_TAG.match(text)) and tag and not digest:
        new = f'{m.group(1)}"{tag}"{m.group(3)}'
    else:
        return None
    return Suggestion(f.origin.file or "", line, line, new)


def check(ctx: EnvContext, rule: Rule) -> Iterator[Finding]:
    forbidden = list(rule.params.get("forbidden_tags", ["latest"]))
    pinned = list(rule.params.get("pinned_tags", []))
    for pod in workloads(ctx.objects):
        for c in containers(pod):
            image = c.data.get("image")
            if not isinstance(image, str) or not image.strip():
                continue
            why = floating(image, forbidden, pinned)
            if why:
                yield finding(
                    rule,
                    ctx,
                    pod.obj,
                    f"{c.path}.image",
                    f"{'Init container' if c.init else 'Container'} {c.name!r} of {pod.obj.id}: image "
                    f"{image!r} {why}. What runs in {ctx.environment} can change without a commit, and "
                    f"nodes may run different builds.",
                    container=c.name,
                )
    for obj in ctx.objects:
        # A rendered release is judged by the images its chart prints (above), located at its values.
        if is_kind(obj, "HelmRelease", "helm.toolkit.fluxcd.io") and obj.id not in ctx.rendered_releases:
            yield from _helmrelease(ctx, rule, obj, forbidden, pinned)


RULE = Rule(
    id="latest-tag",
    title="Image without a fixed version",
    rationale=(
        "`latest` (or no tag) is resolved at pull time, so the running version is not what git says, "
        "differs between nodes and cannot be rolled back. Production must be reproducible (error); "
        "staging should be (warning); development often tracks a branch build (notice)."
    ),
    remediation="Pin the image to a version tag (`app:1.4.2`) or a digest (`app@sha256:...`), e.g. with "
    "kustomize `images:` in the overlay.",
    severity=per_env("error", "warning", "notice"),
    params={"forbidden_tags": ["latest"], "pinned_tags": []},
    check=check,
    from_base=tag_from_base,
    edge_cases=(
        "Containers and init containers of every workload, Jobs and CronJobs included.",
        "A registry with a port (`registry:5000/app`) is not a tag: that image has no tag and is flagged; "
        "`registry:5000/app:1.2` passes.",
        "Any digest (`@sha256:...`) passes, even with a tag and even if the digest looks short.",
        "A tag is pinned when it carries a version (a digit: `1.25`, `1.25-alpine`, `20241101`, `v2`) or is a "
        "commit SHA; any other tag (`alpine`, `stable`, `main`, `edge`, `lts`) floats. `pinned_tags` lists tags "
        "a team publishes immutably without a digit; `forbidden_tags` are named as moving tags.",
        "HelmRelease `spec.values`: a `tag` under a key ending in `image` (`image.tag`, `sidecarImage.tag`), "
        "or a string `...image: repo:tag`, judged the same way. A missing tag there is the chart's "
        "appVersion and passes.",
    ),
    example=example(
        {"deployment.yaml": example_deployment(image="""\
            image: ghcr.io/example/web:latest  #-
            image: ghcr.io/example/web:1.4.2  #+
            """)},
        note="The image is pinned to the version it runs.",
    ),
)
