"""probe-port: a probe must point at a port its container declares."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bot.model import Finding
from bot.objects import EnvContext
from rules.base import Rule, all_envs, containers, finding, workloads

PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
HANDLERS = ("httpGet", "tcpSocket", "grpc")


def declared_ports(container: dict[str, Any]) -> tuple[set[int], set[str]]:
    numbers, names = set(), set()
    for port in container.get("ports") or []:
        if isinstance(port, dict):
            if isinstance(port.get("containerPort"), int):
                numbers.add(port["containerPort"])
            if port.get("name"):
                names.add(str(port["name"]))
    return numbers, names


def check(ctx: EnvContext, rule: Rule) -> Iterator[Finding]:
    for pod in workloads(ctx.objects):
        for c in containers(pod):
            numbers, names = declared_ports(c.data)
            for probe in PROBES:
                body = c.data.get(probe)
                if not isinstance(body, dict):
                    continue
                for handler in HANDLERS:
                    spec = body.get(handler)
                    if not isinstance(spec, dict) or "port" not in spec:
                        continue
                    port = spec["port"]
                    if isinstance(port, str) and port.isdigit():
                        port = int(port)
                    if port in (numbers if isinstance(port, int) else names):
                        continue
                    declared = ", ".join([str(n) for n in sorted(numbers)] + sorted(names)) or "none"
                    yield finding(
                        rule,
                        ctx,
                        pod.obj,
                        f"{c.path}.{probe}.{handler}.port",
                        f"The {probe} of container {c.name!r} in {pod.obj.id} checks port {port!r}, which "
                        f"the container does not declare (declared: {declared}). A probe on the wrong port "
                        f"fails for ever: restarts (liveness) or no traffic (readiness).",
                        remediation="Point the probe at a declared `ports[].containerPort` or port name, or declare "
                        "the port the application listens on.",
                        container=c.name,
                    )


RULE = Rule(
    id="probe-port",
    title="Probe on a port the container does not declare",
    rationale="A probe aimed at an undeclared port (a typo, a renamed port, a changed listen port) fails "
    "as soon as it is deployed: restart loops or pods that never get traffic, in every environment.",
    remediation="Make the probe's `port` a declared container port number or port name.",
    severity=all_envs("error"),
    check=check,
    edge_cases=(
        "liveness, readiness and startup probes with `httpGet`, `tcpSocket` or `grpc` handlers; `exec` has no port.",
        "A numeric port must equal a `containerPort`; a named port must equal a `ports[].name` (a string of "
        "digits is read as a number).",
        "A container that declares no ports fails every port probe (the spec asks for a declared port).",
    ),
)
