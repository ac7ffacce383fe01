"""The Kubernetes Pod Security Standards (baseline, restricted), as k8s.io/pod-security-admission checks them.

Each check is its upstream one (`policy/check_*.go`), by its id, for a Kubernetes version: a pod spec and
the pod's metadata in, violations out, each at the field that breaks the control (or, for a field that
must be set, where setting it fixes it, with `missing` naming it). Restricted is baseline plus its own
checks, some replacing a baseline one (capabilities, seccomp, volumes, procMount). The tests run
upstream's own pass/fail fixtures through these (tests/fixtures/pod-security/).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from bot.model import Segment, as_dict, as_list

Version = tuple[int, int]

BASELINE_CAPABILITIES = frozenset({"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                                   "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"})
SYSCTLS: dict[Version, frozenset[str]] = {
    (1, 0): frozenset({"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
                       "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start"}),
}
SYSCTLS[(1, 27)] = SYSCTLS[(1, 0)] | {"net.ipv4.ip_local_reserved_ports"}
SYSCTLS[(1, 29)] = SYSCTLS[(1, 27)] | {"net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout",
                                       "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"}
SYSCTLS[(1, 32)] = SYSCTLS[(1, 29)] | {"net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"}
SYSCTLS[(1, 37)] = SYSCTLS[(1, 32)] | {"net.ipv4.tcp_slow_start_after_idle", "net.ipv4.tcp_notsent_lowat"}
RESTRICTED_VOLUMES = frozenset({"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "image",
                                "persistentVolumeClaim", "projected", "secret"})
SELINUX_TYPES = {(1, 0): frozenset({"", "container_t", "container_init_t", "container_kvm_t"})}
SELINUX_TYPES[(1, 31)] = SELINUX_TYPES[(1, 0)] | {"container_engine_t"}
SECCOMP_ALLOWED = frozenset({"RuntimeDefault", "Localhost"})
APPARMOR_PREFIX = "container.apparmor.security.beta.kubernetes.io/"
CONTAINER_KINDS = ("containers", "initContainers", "ephemeralContainers")


@dataclass(frozen=True)
class Violation:
    """`path`: field path within the pod template (from the pod spec: `containers[api].securityContext.
    privileged`; `metadata.annotations[...]` for AppArmor annotations). `missing`: the field whose absence
    breaks the control (`runAsNonRoot`), to be added at `path`."""

    check: str
    level: str
    path: tuple[Segment, ...]
    message: str
    missing: str = ""


def _at(version: Version, table: dict[Version, frozenset[str]]) -> frozenset[str]:
    return table[max(v for v in table if v <= version)]


def _containers(spec: dict[str, Any]) -> Iterator[tuple[tuple[Segment, ...], dict[str, Any]]]:
    for key in CONTAINER_KINDS:
        items = spec.get(key)
        if isinstance(items, list):
            for i, c in enumerate(items):
                if isinstance(c, dict):
                    name = c.get("name")
                    yield (key, ("name", name) if isinstance(name, str) and name else i), c


def _sc(d: dict[str, Any]) -> dict[str, Any]:
    sc = d.get("securityContext")
    return sc if isinstance(sc, dict) else {}


def _host_users_off(spec: dict[str, Any], version: Version) -> bool:
    """In a user namespace (`hostUsers: false`), which some controls exempt from 1.35."""
    return version >= (1, 35) and spec.get("hostUsers") is False


# --- baseline ----------------------------------------------------------------------------------------

def host_namespaces(spec: dict[str, Any], meta: dict[str, Any], version: Version) -> Iterator[Violation]:
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key) is True:
            yield Violation("hostnamespaces", "baseline", (key,), f"`{key}: true` shares the host's namespace")


def privileged(spec: dict[str, Any], meta: dict[str, Any], version: Version) -> Iterator[Violation]:
    for path, c in _containers(spec):
        if _sc(c).get("privileged") is True:
            yield Violation("privileged", "baseline", (*path, "securityContext", "privileged"),
                            "a privileged container has every capability of the host")


def capabilities_baseline(spec: dict[str, Any], meta: dict[str, Any], version: Version) -> Iterator[Violation]:
    for path, c in _containers(spec):
        caps = _sc(c).get("capabilities")
        added = caps.get("add") if isinstance(caps, dict) else None
        bad = [a for a in added or [] if a not in BASELINE_CAPABILITIES] if isinstance(added, list) else []
        if bad:
            yield Violation("capabilities_baseline", "baseline", (*path, "securityContext", "capabilities", "add"),
                            f"adds {', '.join(map(str, bad))}, beyond the default capabilities")


def host_path_volumes(spec: dict[str, Any], meta: dict[str, Any], version: Version) -> Iterator[Violation]:
    for i, v in enumerate(spec.get("volumes") or []):
        if isinstance(v, dict) and "hostPath" in v:
            yield Violation("hostpathvolumes", "baseline", ("volumes", _named(v, i), "hostPath"),
                            "a hostPath volume reads or writes the node's filesystem")


def host_ports(spec: dict[str, Any], meta: dict[str, Any], version: Version) -> Iterator[Violation]:
    for path, c in _containers(spec):
        for j, p in enumerate(c.get("ports") or []):
            if isinstance(p, dict) and p.get("hostPort") not in (None, 0):
                yield Violation("hostports", "baseline", (*path, "ports", j, "hostPort"),
                                f"`hostPort: {p.get('hostPort')}` binds a port of the node")


def host_probes(spec: dict[str, Any], meta: dict[str, Any], version: Version) -> Iterator[Violation]:
    if version < (1, 34):
        return
    for path, c in _containers(spec):
        handlers = [(k, c.get(k)) for k in ("livenessProbe", "readinessProbe", "startupProbe")]
        lifecycle = as_dict(c.get("lifecycle"))
        handlers += [(f"lifecycle.{k}", lifecycle.get(k)) for k in ("postStart", "preStop")]
        for where, h in handlers:
            if not isinstance(h, dict):
                continue
            for action in ("httpGet", "tcpSocket"):
                act = h.get(action)
                if isinstance(act, dict) and act.get("host") not in (None, ""):
                    yield Violation("hostprobesandhostlifecycle", "baseline",
                                    (*path, *where.split("."), action, "host"),
                                    f"`{where}.{action}.host` makes the kubelet connect to another host")


def app_armor(spec: dict[str, Any], meta: dict[str, Any], version: Version) -> Iterator[Violation]:
    def bad_profile(p: Any) -> bool:
        return isinstance(p, dict) and p.get("type") not in (None, *SECCOMP_ALLOWED)

    if bad_profile(_sc(spec).get("appArmorProfile")):
        yield Violation("apparmorprofile", "baseline", ("securityContext", "appArmorProfile", "type"),
                        "the AppArmor profile is not RuntimeDefault or Localhost")
    for path, c in _containers(spec):
        if bad_profile(_sc(c).get("appArmorProfile")):
            yield Violation("apparmorprofile", "baseline", (*path, "securityContext", "appArmorProfile", "type"),
                            "the AppArmor profile is not RuntimeDefault or Localhost")
    annotations = meta.get("annotations") if isinstance(meta.get("annotations"), dict) else {}
    for key, value in (annotations or {}).items():
        if str(key).startswith(APPARMOR_PREFIX) and value not in ("", "runtime/default") and not str(
                value).startswith("localhost/"):
            yield Violation("apparmorprofile", "baseline", ("metadata", "annotations", str(key)),
                            f"the AppArmor annotation sets {value!r}")


def selinux(spec: dict[str, Any], meta: dict[str, Any], version: Version) -> Iterator[Violation]:
    allowed = _at(version, SELINUX_TYPES)
    places: list[tuple[tuple[Segment, ...], dict[str, Any]]] = [((), spec)]
    places += list(_containers(spec))
    for path, d in places:
        opts = _sc(d).get("seLinuxOptions")
        if not isinstance(opts, dict):
            continue
        at = (*path, "securityContext", "seLinuxOptions")
        if opts.get("type", "") not in allowed:
            yield Violation("selinuxoptions", "baseline", (*at, "type"), f"SELinux type {opts.get('type')!r} is not allowed")
        for key in ("user", "role"):
            if opts.get(key) not in (None, ""):
                yield Violation("selinuxoptions", "baseline", (*at, key), f"a custom SELinux {key} is set")


def proc_mount(spec: dict[str, Any], meta: dict[str, Any], version: Version) -> Iterator[Violation]:
    if _host_users_off(spec, version):
        return
    yield from _unmasked(spec, "procmount", "baseline")


def _unmasked(spec: dict[str, Any], check: str, level: str) -> Iterator[Violation]:
    for path, c in _containers(spec):
        if _sc(c).get("procMount") not in (None, "Default"):
            yield Violation(check, level, (*path, "securityContext", "procMount"),
                            f"`procMount: {_sc(c).get('procMount')}` unmasks /proc")


def seccomp_baseline(spec: dict[str, Any], meta: dict[str, Any], version: Version) -> Iterator[Violation]:
    for path, d in [((), spec), *_containers(spec)]:
        profile = _sc(d).get("seccompProfile")
        if isinstance(profile, dict) and profile.get("type") == "Unconfined":
            yield Violation("seccompprofile_baseline", "baseline", (*path, "securityContext", "seccompProfile", "type"),
                            "the seccomp profile is Unconfined")


def sysctls(spec: dict[str, Any], meta: dict[str, Any], version: Version) -> Iterator[Violation]:
    allowed = _at(version, SYSCTLS)
    for i, s in enumerate(_sc(spec).get("sysctls") or []):
        if isinstance(s, dict) and s.get("name") not in allowed:
            yield Violation("sysctls", "baseline", ("securityContext", "sysctls", _named(s, i)),
                            f"sysctl {s.get('name')!r} is not in the safe set")


def windows_host_process(spec: dict[str, Any], meta: dict[str, Any], version: Version) -> Iterator[Violation]:
    for path, d in [((), spec), *_containers(spec)]:
        opts = _sc(d).get("windowsOptions")
        if isinstance(opts, dict) and opts.get("hostProcess") is True:
            yield Violation("windowshostprocess", "baseline", (*path, "securityContext", "windowsOptions", "hostProcess"),
                            "a Windows HostProcess container runs on the host")


# --- restricted --------------------------------------------------------------------------------------

def restricted_volumes(spec: dict[str, Any], meta: dict[str, Any], version: Version) -> Iterator[Violation]:
    for i, v in enumerate(spec.get("volumes") or []):
        if not isinstance(v, dict):
            continue
        kinds = [k for k in v if k != "name"]
        bad = [k for k in kinds if k not in RESTRICTED_VOLUMES]
        if bad:
            yield Violation("restrictedvolumes", "restricted", ("volumes", _named(v, i), bad[0]),
                            f"a {bad[0]} volume is not one of the restricted profile's volume types")


def privilege_escalation(spec: dict[str, Any], meta: dict[str, Any], version: Version) -> Iterator[Violation]:
    if _windows(spec) and version >= (1, 25):
        return
    for path, c in _containers(spec):
        if _sc(c).get("allowPrivilegeEscalation") is not False:
            yield Violation("allowprivilegeescalation", "restricted", (*path, "securityContext"),
                            "`allowPrivilegeEscalation` is not false", "allowPrivilegeEscalation")


def run_as_non_root(spec: dict[str, Any], meta: dict[str, Any], version: Version) -> Iterator[Violation]:
    if _host_users_off(spec, version):
        return
    pod = _sc(spec).get("runAsNonRoot")
    if pod is False:
        yield Violation("runasnonroot", "restricted", ("securityContext", "runAsNonRoot"), "`runAsNonRoot: false`")
    for path, c in _containers(spec):
        mine = _sc(c).get("runAsNonRoot")
        if mine is False:
            yield Violation("runasnonroot", "restricted", (*path, "securityContext", "runAsNonRoot"),
                            "`runAsNonRoot: false`")
        elif mine is None and pod is not True:
            yield Violation("runasnonroot", "restricted", (*path, "securityContext"),
                            "`runAsNonRoot: true` is set neither on the pod nor on the container", "runAsNonRoot")


def run_as_user(spec: dict[str, Any], meta: dict[str, Any], version: Version) -> Iterator[Violation]:
    if _host_users_off(spec, version):
        return
    for path, d in [((), spec), *_containers(spec)]:
        if _sc(d).get("runAsUser") == 0:
            yield Violation("runasuser", "restricted", (*path, "securityContext", "runAsUser"), "`runAsUser: 0` is root")


def seccomp_restricted(spec: dict[str, Any], meta: dict[str, Any], version: Version) -> Iterator[Violation]:
    if _windows(spec) and version >= (1, 25):
        return
    pod = _sc(spec).get("seccompProfile")
    pod_type = pod.get("type") if isinstance(pod, dict) else None
    if pod_type is not None and pod_type not in SECCOMP_ALLOWED:
        yield Violation("seccompprofile_restricted", "restricted", ("securityContext", "seccompProfile", "type"),
                        f"the seccomp profile is {pod_type}")
    for path, c in _containers(spec):
        mine = _sc(c).get("seccompProfile")
        kind = mine.get("type") if isinstance(mine, dict) else None
        if kind is not None and kind not in SECCOMP_ALLOWED:
            yield Violation("seccompprofile_restricted", "restricted", (*path, "securityContext", "seccompProfile", "type"),
                            f"the seccomp profile is {kind}")
        elif kind is None and pod_type is None:
            yield Violation("seccompprofile_restricted", "restricted", (*path, "securityContext"),
                            "no seccomp profile (RuntimeDefault or Localhost) is set on the pod or the container",
                            "seccompProfile")


def capabilities_restricted(spec: dict[str, Any], meta: dict[str, Any], version: Version) -> Iterator[Violation]:
    windows = _windows(spec) and version >= (1, 25)
    for path, c in _containers(spec):
        caps = _sc(c).get("capabilities")
        caps = caps if isinstance(caps, dict) else {}
        added = [a for a in caps.get("add") or [] if a != "NET_BIND_SERVICE"] if isinstance(caps.get("add"), list) else []
        if added:
            yield Violation("capabilities_restricted", "restricted", (*path, "securityContext", "capabilities", "add"),
                            f"adds {', '.join(map(str, added))}; only NET_BIND_SERVICE may be added")
        if not windows and "ALL" not in as_list(caps.get("drop")):
            yield Violation("capabilities_restricted", "restricted", (*path, "securityContext"),
                            "capabilities are not dropped (`drop: [ALL]`)", "capabilities")


def proc_mount_restricted(spec: dict[str, Any], meta: dict[str, Any], version: Version) -> Iterator[Violation]:
    yield from _unmasked(spec, "procmount_restricted", "restricted")


def _windows(spec: dict[str, Any]) -> bool:
    os = spec.get("os")
    return isinstance(os, dict) and os.get("name") == "windows"


def _named(item: dict[str, Any], i: int) -> Segment:
    name = item.get("name")
    return ("name", name) if isinstance(name, str) and name else i


Check = Callable[[dict[str, Any], dict[str, Any], Version], Iterator[Violation]]
BASELINE: dict[str, Check] = {
    "hostnamespaces": host_namespaces, "privileged": privileged, "capabilities_baseline": capabilities_baseline,
    "hostpathvolumes": host_path_volumes, "hostports": host_ports, "hostprobesandhostlifecycle": host_probes,
    "apparmorprofile": app_armor, "selinuxoptions": selinux, "procmount": proc_mount,
    "seccompprofile_baseline": seccomp_baseline, "sysctls": sysctls, "windowshostprocess": windows_host_process,
}
RESTRICTED: dict[str, Check] = {
    "restrictedvolumes": restricted_volumes, "allowprivilegeescalation": privilege_escalation,
    "runasnonroot": run_as_non_root, "runasuser": run_as_user, "seccompprofile_restricted": seccomp_restricted,
    "capabilities_restricted": capabilities_restricted, "procmount_restricted": proc_mount_restricted,
}
# A restricted check that replaces a baseline one at that level (upstream's `overrides`), from a version.
OVERRIDES: dict[str, tuple[str, Version]] = {
    "capabilities_restricted": ("capabilities_baseline", (1, 22)),
    "seccompprofile_restricted": ("seccompprofile_baseline", (1, 19)),
    "restrictedvolumes": ("hostpathvolumes", (1, 0)),
    "procmount_restricted": ("procmount", (1, 35)),
}
SINCE: dict[str, Version] = {"allowprivilegeescalation": (1, 8), "capabilities_restricted": (1, 22),
                             "runasuser": (1, 23), "seccompprofile_restricted": (1, 19),
                             "procmount_restricted": (1, 35)}
LEVELS = ("privileged", "baseline", "restricted")


def version_of(text: str) -> Version:
    parts = text.removeprefix("v").split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        return (1, 33)


def violations(spec: dict[str, Any], meta: dict[str, Any], level: str, version: Version) -> list[Violation]:
    """What admission at `level` ("baseline" or "restricted"; "privileged" allows everything) refuses in a
    pod with this spec and metadata, for Kubernetes `version`."""
    if level not in ("baseline", "restricted"):
        return []
    checks = dict(BASELINE)
    if level == "restricted":
        for check, func in RESTRICTED.items():
            if version < SINCE.get(check, (1, 0)):
                continue
            replaced = OVERRIDES.get(check)
            if replaced and version >= replaced[1]:
                checks.pop(replaced[0], None)
            checks[check] = func
    return [v for func in checks.values() for v in func(spec, meta, version)]
