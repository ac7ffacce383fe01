"""missing-resources: every container and init container sets cpu/memory requests and limits."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from bot.model import Finding, Origin, Suggestion
from bot.objects import EnvContext
from rules.base import (
    Container,
    Rule,
    all_envs,
    containers,
    env_policy,
    example,
    example_deployment,
    finding,
    only_this_environment,
    source_line,
    workloads,
)

KEYS = ("requests.cpu", "requests.memory", "limits.cpu", "limits.memory")


def missing_keys(container: dict[str, Any]) -> list[str]:
    """Which of the four keys are absent; a non-mapping `resources`/`requests`/`limits` counts as absent.

    A request left out where its limit is set is not missing: Kubernetes sets the request to the limit
    (requests default to limits). A `requests:` that is there but not a mapping (a list) still counts: the
    API server rejects it, so nothing is implied."""
    resources = container.get("resources")
    resources = resources if isinstance(resources, dict) else {}

    def has(key: str) -> bool:
        part, res = key.split(".")
        block = resources.get(part)
        value = block.get(res) if isinstance(block, dict) else None
        return value is not None and value != ""

    requests = resources.get("requests")
    malformed = requests is not None and not isinstance(requests, dict)
    out = []
    for key in KEYS:
        part, res = key.split(".")
        if has(key) or (part == "requests" and not malformed and has(f"limits.{res}")):
            continue
        out.append(key)
    return out


def consequences(missing: list[str]) -> str:
    """What the missing keys mean, in Kubernetes' terms."""
    out = []
    bare = [res for res in ("cpu", "memory") if f"requests.{res}" in missing and f"limits.{res}" in missing]
    if bare:
        what = " and ".join(bare)
        out.append(f"with neither a request nor a limit for {what}, the scheduler reserves no {what} for it (it can "
                    f"be placed on a node that has none to spare) and nothing caps what it uses")
    uncapped = [res for res in ("cpu", "memory") if f"limits.{res}" in missing and res not in bare]
    if uncapped:
        what = " and ".join(uncapped)
        out.append(f"with a request but no limit for {what}, one pod can take all the {what} its node has spare "
                   f"and starve its neighbours")
    malformed = [res for res in ("cpu", "memory") if f"requests.{res}" in missing and res not in bare]
    if malformed:
        out.append("`resources.requests` is not a mapping, so the API server rejects the object")
    return "; ".join(out)


def _yaml_scalar(value: Any) -> str:
    text = str(value)
    return f'"{text}"' if re.fullmatch(r"[0-9.eE+-]+", text) else text


def resources_block(indent: str, row: dict[str, Any]) -> list[str]:
    lines = [f"{indent}resources:"]
    for part in ("requests", "limits"):
        values = row.get(part) or {}
        lines.append(f"{indent}  {part}:")
        lines += [
            f"{indent}    {res}: {_yaml_scalar(values[res])}" for res in ("cpu", "memory") if res in values
        ]
    return lines


def suggest(ctx: EnvContext, c: Container) -> Suggestion | None:
    """Add the environment's default `resources:` under the container's first line, when the
    container has no `resources` key in its source (or `resources: {}` on one line)."""
    row = env_policy(ctx)
    if not row.get("requests") or not row.get("limits"):
        return None
    obj = c.obj
    res_origin = obj.origin(f"{c.path}.resources")
    if res_origin.via in ("enclosing", "chart-default") and res_origin.detail.startswith("values:"):
        return _in_release_values(ctx, res_origin, row)
    if not only_this_environment(ctx, res_origin.file if res_origin.via != "enclosing" else obj.origin(c.path).file):
        return None  # the sizing is this environment's: never in a base other environments read
    present = res_origin.span() if res_origin.via in ("manifest", "patch") else None
    if present is not None and present[2] > present[1]:
        return _complete_block(ctx, c, present, row)
    if present is not None:
        file, line, _ = present
        m = re.match(r"^(\s*+)resources:\s*+(\{\s*\}|null|~)?\s*$", source_line(ctx, file, line) or "")
        if not m or c.data.get("resources"):
            return None
        return Suggestion(file, line, line, "\n".join(resources_block(m.group(1), row)))
    container = obj.origin(c.path)
    where = container.span()
    if res_origin.via != "enclosing" or container.via not in ("manifest", "patch") or where is None:
        return None
    file, line, _ = where
    text = source_line(ctx, file, line)
    m = re.match(r"^(\s*)(-\s+)?([A-Za-z_][\w.-]*|\"[^\"]*\"|'[^']*')\s*:(.*)$", text or "")
    if text is None or not m or re.search(r"[{\[|>]", m.group(4).split("#")[0]):
        return None
    indent = m.group(1) + (" " * len(m.group(2)) if m.group(2) else "")
    return Suggestion(file, line, line, "\n".join([text, *resources_block(indent, row)]))


def _in_release_values(ctx: EnvContext, where: Origin, row: dict[str, Any]) -> Suggestion | None:
    """The environment's `resources:` under the HelmRelease values key the chart reads them from
    (bot.render.chart_origin: `detail` names the keys to add below the located line)."""
    keys = [k for k in where.detail.removeprefix("values:").split(".") if k]
    span = where.span()
    if not keys or keys[-1] != "resources" or span is None or not only_this_environment(ctx, span[0]):
        return None
    file, line, _ = span
    text = source_line(ctx, file, line)
    m = re.match(r"^(\s*)(-\s+)?[\w.\-\"']+\s*:\s*(?:#.*)?$", text or "")
    if text is None or not m:
        return None
    indent = m.group(1) + (" " * len(m.group(2)) if m.group(2) else "") + "  "
    lines = [text]
    for key in keys[:-1]:
        lines.append(f"{indent}{key}:")
        indent += "  "
    return Suggestion(file, line, line, "\n".join([*lines, *resources_block(indent, row)]))


def _complete_block(ctx: EnvContext, c: Container, block: tuple[str, int, int],
                    row: dict[str, Any]) -> Suggestion | None:
    """A `resources:` block (file, first and last line) that lacks a whole `requests:` or `limits:`
    part (a removed `limits:` block): append the missing parts with the environment's defaults after
    its last line."""
    missing = missing_keys(c.data)
    parts = [p for p in ("requests", "limits") if f"{p}.cpu" in missing and f"{p}.memory" in missing]
    if not parts or len(missing) != 2 * len(parts):
        return None
    file, first, end = block
    head = source_line(ctx, file, first)
    last = source_line(ctx, file, end)
    m = re.match(r"^(\s*)(-\s+)?resources:\s*(#.*)?$", head or "")
    if not m or last is None:
        return None
    indent = m.group(1) + (" " * len(m.group(2)) if m.group(2) else "")
    keep = []
    for part in parts:
        keep.append(f"{indent}  {part}:")
        keep += [f"{indent}    {res}: {_yaml_scalar(row[part][res])}" for res in ("cpu", "memory") if res in row[part]]
    return Suggestion(file, end, end, "\n".join([last, *keep]))


def check(ctx: EnvContext, rule: Rule) -> Iterator[Finding]:
    for pod in workloads(ctx.objects):
        for c in containers(pod):
            missing = missing_keys(c.data)
            if not missing:
                continue
            what = "Init container" if c.init else "Container"
            yield finding(
                rule,
                ctx,
                pod.obj,
                f"{c.path}.resources",
                f"{what} {c.name!r} of {pod.obj.id} does not set {', '.join(missing)}: {consequences(missing)} "
                f"({ctx.environment}).",
                container=c.name,
                suggestion=suggest(ctx, c),
                locate_path=f"{c.path}.resources.{missing[0]}",
            )


RULE = Rule(
    id="missing-resources",
    title="Container without cpu/memory requests and limits",
    rationale=(
        "Requests drive scheduling and limits contain a misbehaving process; a container without them "
        "can be evicted first under pressure or take its neighbours down. It is an error in every "
        "environment because shared development and staging clusters suffer the same noisy neighbours."
    ),
    remediation=(
        "Set `resources.requests.cpu`, `resources.requests.memory`, `resources.limits.cpu` and "
        "`resources.limits.memory` on the container (the environment's defaults are in docs/rules.md; "
        "the suggestion inserts them)."
    ),
    severity=all_envs("error"),
    check=check,
    own_workloads=True,
    edge_cases=(
        "One finding per container and per init container, naming the missing keys, located where the first "
        "missing key belongs: where it was removed, else at its deepest existing ancestor (a `resources:` "
        "block only an overlay has), else at the container in the document that introduces it.",
        "A limit without its request is complete: Kubernetes sets the missing request to the limit, so limits "
        "only (`limits: {cpu, memory}`) is not reported, and a request is reported missing only where its limit "
        "is too. `resources: {}` and requests only (no limits) count as missing; the message says what each "
        "gap does (no reservation and no cap, or no cap).",
        "A `requests:`/`limits:` that is not a mapping (e.g. a list) counts as missing.",
        "Jobs and CronJobs are not exempt.",
        "The suggestion inserts the environment's default block where the container has no `resources` "
        "key in its source (or `resources: {}` on one line), and appends a whole missing `requests:` or "
        "`limits:` part (a removed `limits:` block) after the block's last line; other partial blocks get "
        "no suggestion.",
    ),
    example=example(
        {"deployment.yaml": example_deployment("""\
            resources:  #+
              requests: {cpu: 250m, memory: 512Mi}  #+
              limits: {cpu: 500m, memory: 1Gi}  #+
            """)},
        note="The container sets cpu and memory requests and limits (production's defaults).",
    ),
)
