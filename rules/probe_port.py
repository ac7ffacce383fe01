"""probe-port: a probe that names its port must name one its container declares."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bot.model import Finding
from bot.objects import EnvContext
from rules.base import Rule, all_envs, containers, example, example_deployment, finding, workloads

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


def port_reference(value: Any) -> Any:
    """A probe's or a Service's port as a number or a name: a string of digits is read as the number
    (the kubelet parses a probe's so before looking a name up); anything else is returned as is."""
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return value


def check(ctx: EnvContext, rule: Rule) -> Iterator[Finding]:
    for pod in workloads(ctx.objects):
        for c in containers(pod):
            names = declared_ports(c.data)[1]
            for probe in PROBES:
                body = c.data.get(probe)
                if not isinstance(body, dict):
                    continue
                for handler in HANDLERS:
                    spec = body.get(handler)
                    if not isinstance(spec, dict) or "port" not in spec:
                        continue
                    port = port_reference(spec["port"])
                    # A number is probed whether or not the container declares it; a name must resolve.
                    if not isinstance(port, str) or port in names:
                        continue
                    declared = ", ".join(sorted(names)) or "none"
                    yield finding(
                        rule,
                        ctx,
                        pod.obj,
                        f"{c.path}.{probe}.{handler}.port",
                        f"The {probe} of container {c.name!r} in {pod.obj.id} checks the port named {port!r}, "
                        f"which the container does not declare (declared port names: {declared}). The kubelet "
                        f"cannot resolve the name, so the probe fails for ever: restarts (liveness) or no "
                        f"traffic (readiness).",
                        remediation="Use a port name the container declares (`ports[].name`), the port number the "
                        "application listens on, or declare the named port on the container.",
                        container=c.name,
                    )


RULE = Rule(
    id="probe-port",
    title="Probe on a named port the container does not declare",
    rationale="A probe's port given by name resolves only through the container's `ports[].name`; a name the "
    "container does not declare (a typo, a renamed port) makes the probe fail as soon as it is deployed: "
    "restart loops or pods that never get traffic, in every environment. A port given as a number is probed "
    "whether or not the container declares it, so it is not judged.",
    remediation="Make the probe's named `port` a declared container port name, or use the port number.",
    severity=all_envs("error"),
    check=check,
    edge_cases=(
        "liveness, readiness and startup probes with `httpGet`, `tcpSocket` or `grpc` handlers; `exec` has no port.",
        "A numeric port (or a string of digits, which the kubelet reads as a number) is never flagged: "
        "Kubernetes probes that port of the pod whether or not the container lists it in `ports` (an "
        "earlier version of this rule required numbers to be declared too, and so reported probes that work).",
        "A named port must equal a `ports[].name` of the same container; a container that declares no ports "
        "fails every named probe.",
    ),
    example=example(
        {"deployment.yaml": example_deployment("""\
            ports:
              - name: http
                containerPort: 8080
            readinessProbe:
              httpGet: {path: /ready, port: web}  #-
              httpGet: {path: /ready, port: http}  #+
            """)},
        note="The probe names the port the container declares, `http`.",
    ),
)
