"""Hostile pull-request content (issue 15), as generated families of cases: paths out of the tree in
every field that names one, remote URLs of every form with fetching off (or refused by the policy),
plugins and KRM functions. Each case is a whole `check` of a small repository, bounded in time, with a
secret outside the repository that no output may show and no network use in this process; see
tests/hostile.py for what those guards cover and what they do not. Size bombs, hostile charts and a
very large pull request are in tests/test_hostile_content_bombs.py."""

from __future__ import annotations

import os
import socket
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from hostile import (
    CONFIGMAP,
    KFILE,
    SECRET,
    Layout,
    check,
    flux_repo,
    layout_fixture,
    network_guard_fixture,
    overlay,
    watched,
)
from loopback import Server
from test_helm_releases import LOCAL, chart_files, release
from trees import line_of, write

from bot.config import Config

layout = pytest.fixture(name="layout")(layout_fixture)
network_guard = pytest.fixture(name="network_guard", autouse=True)(network_guard_fixture)


# --- family 1: paths out of the tree ---------------------------------------------------------------

@dataclass(frozen=True)
class Escape:
    """One way out of the tree: `make(layout, folder)` prepares it and returns the path to write in a
    field read from repository folder `folder`; `says` is what the finding's message holds."""

    name: str
    make: Callable[[Layout, str], str]
    says: tuple[str, ...]


def _up(folder: str) -> str:
    return "../" * (folder.count("/") + 1 + 1)  # out of the folder, out of the repository


def _link(target: str, leaf: str = "") -> Callable[[Layout, str], str]:
    def make(layout: Layout, folder: str) -> str:
        link = layout.repo / folder / "link"
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(layout.outside / target)
        return f"link{leaf}"
    return make


def _special(kind: str) -> Callable[[Layout, str], str]:
    def make(layout: Layout, folder: str) -> str:
        (layout.fifo if kind == "fifo" else layout.unix_socket)(f"{folder}/special.yaml")
        return "special.yaml"
    return make


ESCAPES = [
    Escape("dotdot", lambda lay, folder: f"{_up(folder)}outside/secret.yaml", ("leaves the repository root",)),
    Escape("absolute", lambda lay, folder: str(lay.outside / "secret.yaml"), ("absolute path",)),
    Escape("etc-passwd", lambda lay, folder: "/etc/passwd", ("absolute path",)),
    Escape("home", lambda lay, folder: "~/secret.yaml", ("does not exist",)),
    Escape("proc-environ", lambda lay, folder: "/proc/self/environ", ("absolute path",)),
    Escape("dev-zero", lambda lay, folder: "/dev/zero", ("absolute path",)),
    Escape("dev-stdin", lambda lay, folder: "/dev/stdin", ("absolute path",)),
    Escape("symlink-file", _link("secret.yaml"), ("symlink outside",)),
    Escape("symlink-folder", _link("", "/secret.yaml"), ("symlink outside",)),
    Escape("fifo", _special("fifo"), ("not a regular file",)),
    Escape("unix-socket", _special("socket"), ("not a regular file",)),
]

# Each kustomization field naming a path: the kustomization with `{p}` where the path goes (the
# entry on its own line, found by `{p}`).
FIELDS = {
    "resources": "resources:\n- {p}\n",
    "components": "resources:\n- cm.yaml\ncomponents:\n- {p}\n",
    "patches.path": "resources:\n- cm.yaml\npatches:\n- path: {p}\n",
    "patchesStrategicMerge": "resources:\n- cm.yaml\npatchesStrategicMerge:\n- {p}\n",
    "patchesJson6902.path": "resources:\n- cm.yaml\npatchesJson6902:\n- target: {{kind: ConfigMap, name: c}}\n"
                            "  path: {p}\n",
    "configMapGenerator.files": "configMapGenerator:\n- name: g\n  files:\n  - {p}\n",
    "configMapGenerator.envs": "configMapGenerator:\n- name: g\n  envs:\n  - {p}\n",
    "secretGenerator.files": "secretGenerator:\n- name: g\n  files:\n  - key={p}\n",
    "configurations": "resources:\n- cm.yaml\nconfigurations:\n- {p}\n",
    "crds": "resources:\n- cm.yaml\ncrds:\n- {p}\n",
    "openapi.path": "resources:\n- cm.yaml\nopenapi:\n  path: {p}\n",
    "replacements.path": "resources:\n- cm.yaml\nreplacements:\n- path: {p}\n",
    "transformers": "resources:\n- cm.yaml\ntransformers:\n- {p}\n",
    "generators": "generators:\n- {p}\n",
}


@pytest.mark.parametrize("escape", ESCAPES, ids=lambda e: e.name)
@pytest.mark.parametrize("field", FIELDS)
def test_a_path_out_of_the_tree_in_a_kustomization_field_is_a_build_error_at_its_line(layout, field, escape):
    folder = "overlays/production"
    path = escape.make(layout, folder)
    root = overlay(layout, FIELDS[field].format(p=path), {"cm.yaml": CONFIGMAP})
    checked = check(root)
    error = checked.at(("build-error",), KFILE, line_of(root, KFILE, path))
    assert any(word in error.message for word in escape.says), error.message


def values_release(values_file: str) -> str:
    """The release of the chart in the repository, with one `valuesFiles` entry."""
    return release(LOCAL.rstrip() + f"\n        valuesFiles:\n        - {values_file}\n")


# Flux reads a `valuesFiles` entry from the source's root, a leading `/` included (`/etc/passwd` is
# `etc/passwd` of the repository): those are missing files, the others refused or unreadable.
VALUES_ESCAPES = [e for e in ESCAPES if e.name in ("dotdot", "absolute", "proc-environ", "dev-zero", "symlink-file",
                                                   "symlink-folder", "fifo", "unix-socket", "home")]


@pytest.mark.parametrize("escape", VALUES_ESCAPES, ids=lambda e: e.name)
def test_a_values_file_out_of_the_tree_is_a_chart_error_at_its_line(layout, escape):
    path = escape.make(layout, "deploy")
    path = path if path.startswith(("/", "~")) else f"./deploy/{path}"
    root = flux_repo(layout, {**chart_files(), "deploy/kustomization.yaml": "resources:\n- release.yaml\n",
                              "deploy/release.yaml": values_release(path)})
    checked = check(root)
    error = checked.at(("chart-error",), "deploy/release.yaml", line_of(root, "deploy/release.yaml", path))
    assert "values file" in error.message, error.message


FLUX_ESCAPES = [
    Escape("dotdot", lambda lay, folder: "../outside", ("resolves to `outside`, which is not a directory",)),
    Escape("absolute", lambda lay, folder: str(lay.outside), ("not a directory of this repository",)),
    Escape("etc", lambda lay, folder: "/etc", ("not a directory of this repository",)),
    Escape("home", lambda lay, folder: "~/deploy", ("not a directory of this repository",)),
    Escape("proc", lambda lay, folder: "/proc/self", ("not a directory of this repository",)),
    Escape("dev", lambda lay, folder: "/dev", ("not a directory of this repository",)),
    Escape("symlink", lambda lay, folder: _link("")(lay, ".") and "./link", ("not a directory of this repository",)),
    Escape("fifo", lambda lay, folder: lay.fifo("special") and "./special", ("not a directory of this repository",)),
    Escape("unix-socket", lambda lay, folder: lay.unix_socket("special") and "./special",
           ("not a directory of this repository",)),
]


@pytest.mark.parametrize("escape", FLUX_ESCAPES, ids=lambda e: e.name)
def test_a_flux_path_out_of_the_tree_is_an_error_at_its_line(layout, escape):
    path = escape.make(layout, ".")
    root = flux_repo(layout, {"deploy/kustomization.yaml": "resources:\n- cm.yaml\n", "deploy/cm.yaml": CONFIGMAP},
                     path=path)
    write(root, {"clusters/production/ok.yaml": (root / "clusters/production/apps.yaml").read_text()
                 .replace("name: apps", "name: ok").replace(f"path: {path}", "path: ./deploy")})
    checked = check(root)
    error = checked.at(("flux-config",), "clusters/production/apps.yaml",
                       line_of(root, "clusters/production/apps.yaml", "path:"))
    assert error.severity == "error" and any(word in error.message for word in escape.says), error.message
    assert not any("another repository" in note for note in checked.report.notes), checked.report.notes


# --- family 2: remote URLs -------------------------------------------------------------------------

REMOTE = [
    "https://example.com/deploy/app.yaml",
    "http://example.com/deploy/app.yaml",
    "git@github.com:org/repo.git//deploy?ref=v1",
    "github.com/org/repo//deploy?ref=v1",
    "https://github.com/org/repo//deploy?ref=v1",
    "git::https://github.com/org/repo//deploy?ref=v1",
    "ssh://git@github.com/org/repo.git//deploy?ref=v1",
    "file:///etc",
    "https://gitlab.com/org/repo.git//deploy?ref=main",
    "https://10.0.0.1/app.yaml",
    "https://[fd00:ec2::254]/app.yaml",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::ffff:169.254.169.254]/latest/meta-data/",
    "https://user:password@example.com/app.yaml",
]


@pytest.mark.parametrize("url", REMOTE)
def test_a_remote_resource_with_fetching_off_is_a_remote_unchecked_notice(layout, url):
    root = overlay(layout, f"resources:\n- cm.yaml\n- {url}\n", {"cm.yaml": CONFIGMAP})
    checked = check(root)
    notice = checked.at(("remote-unchecked",), KFILE, 3)
    assert notice.severity == "notice"
    assert not checked.of("build-error"), [f.message for f in checked.of("build-error")]


def test_an_s3_getter_url_is_a_local_path_to_kustomize_and_does_not_exist(layout):
    """go-getter's `s3::` forced getter is not Kustomize's: v5 reads the entry as a file name."""
    root = overlay(layout, "resources:\n- s3::https://s3.amazonaws.com/bucket/app.yaml\n")
    error = check(root).at(("build-error",), KFILE, 2)
    assert "does not exist" in error.message


@pytest.fixture
def loopback() -> Server:
    server = Server({"/app.yaml": (200, {}, CONFIGMAP.encode())})
    yield server
    server.close()


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/",
    "https://169.254.169.254/latest/meta-data/",
    "https://[fd00:ec2::254]/latest/meta-data/",
    "https://10.0.0.1/app.yaml",
    "https://100.100.100.200/latest/meta-data/",
    "https://[::ffff:127.0.0.1]:{port}/app.yaml",
    "https://127.0.0.1:{port}/app.yaml",
    "http://127.0.0.1:{port}/app.yaml",
    "https://[::1]:{port}/app.yaml",
])
def test_with_fetching_on_the_policy_refuses_private_addresses_without_a_connection(layout, loopback, url):
    url = url.format(port=loopback.url.rsplit(":", 1)[1])
    root = overlay(layout, f"resources:\n- cm.yaml\n- {url}\n", {"cm.yaml": CONFIGMAP})
    checked = check(root, Config.default())
    notice = checked.at(("remote-unchecked",), KFILE, 3)
    assert "refused" in notice.message or "not fetched" in notice.message, notice.message
    assert loopback.connections == 0


def test_an_allowed_loopback_prefix_is_fetched_from_the_test_server(layout, loopback):
    """The other side of the policy: allowed, the URL is fetched, from loopback only."""
    url = f"{loopback.url}/app.yaml"
    root = overlay(layout, f"resources:\n- {url}\n")
    checked = check(root, replace(Config.default(), fetch_allow=(loopback.url + "/",)))
    assert not checked.of("remote-unchecked", "build-error"), checked.report.findings
    assert loopback.paths == ["/app.yaml"]


# --- family 3: plugins and KRM functions -----------------------------------------------------------

def _exec_function(ran: Path, annotation: str = "config.kubernetes.io/function") -> str:
    return (f"apiVersion: fn.example.com/v1\nkind: Touch\nmetadata:\n  name: t\n  annotations:\n"
            f"    {annotation}: |\n      exec:\n        path: /bin/sh\n        args: [-c, '/usr/bin/touch {ran}']\n")


def _container_function(ran: Path) -> str:
    return (f"apiVersion: fn.example.com/v1\nkind: Touch\nmetadata:\n  name: t\n  annotations:\n"
            f"    config.kubernetes.io/function: |\n      container:\n        image: busybox\n"
            f"        mounts: [{{type: bind, src: /, dst: /host}}]\n# {ran}\n")


def _legacy_exec_plugin(ran: Path) -> str:
    return f"apiVersion: someteam.example.com/v1\nkind: Toucher\nmetadata:\n  name: t\nargsOneLiner: {ran}\n"


PLUGINS: dict[str, Callable[[Path], tuple[str, dict[str, str]]]] = {
    "generator-exec-function-file": lambda ran: ("generators:\n- gen.yaml\n", {"gen.yaml": _exec_function(ran)}),
    "transformer-exec-function-file": lambda ran: ("resources:\n- cm.yaml\ntransformers:\n- fn.yaml\n",
                                                   {"fn.yaml": _exec_function(ran)}),
    "validator-exec-function-file": lambda ran: ("resources:\n- cm.yaml\nvalidators:\n- fn.yaml\n",
                                                 {"fn.yaml": _exec_function(ran)}),
    "transformer-legacy-annotation": lambda ran: ("resources:\n- cm.yaml\ntransformers:\n- fn.yaml\n",
                                                  {"fn.yaml": _exec_function(ran, "config.k8s.io/function")}),
    "transformer-container-function": lambda ran: ("resources:\n- cm.yaml\ntransformers:\n- fn.yaml\n",
                                                   {"fn.yaml": _container_function(ran)}),
    "generator-exec-inline": lambda ran: ("generators:\n- |-\n" + textwrap.indent(_exec_function(ran), "  "), {}),
    "transformer-exec-inline-mapping": lambda ran: (
        "resources:\n- cm.yaml\ntransformers:\n- apiVersion: fn.example.com/v1\n  kind: Touch\n  metadata:\n"
        "    name: t\n    annotations:\n      config.kubernetes.io/function: |\n        exec:\n"
        f"          path: /bin/sh\n          args: [-c, '/usr/bin/touch {ran}']\n", {}),
    "generator-legacy-exec-plugin": lambda ran: ("generators:\n- toucher.yaml\n", {"toucher.yaml": _legacy_exec_plugin(ran)}),
    "transformers-from-a-folder": lambda ran: (
        "resources:\n- cm.yaml\ntransformers:\n- fns\n",
        {"fns/kustomization.yaml": "resources:\n- fn.yaml\n", "fns/fn.yaml": _exec_function(ran)}),
    "generators-from-a-folder-of-plugins": lambda ran: (
        "generators:\n- gens\n",
        {"gens/kustomization.yaml": "resources:\n- toucher.yaml\n", "gens/toucher.yaml": _legacy_exec_plugin(ran)}),
    "helmCharts": lambda ran: (
        "helmCharts:\n- name: app\n  version: 1.0.0\n  repo: https://charts.example.com\nhelmGlobals:\n"
        "  chartHome: charts\n", {"charts/app/Chart.yaml": "apiVersion: v2\nname: app\nversion: 1.0.0\n"}),
    "helmChartInflationGenerator": lambda ran: (
        "helmChartInflationGenerator:\n- chartName: app\n  chartRepoUrl: https://charts.example.com\n", {}),
    "helm-generator-config-file": lambda ran: (
        "generators:\n- helm.yaml\n", {"helm.yaml": "apiVersion: builtin\nkind: HelmChartInflationGenerator\n"
                                                    "metadata:\n  name: h\nname: app\nrepo: https://charts.example.com\n"}),
}


@pytest.mark.parametrize("case", PLUGINS)
def test_a_plugin_or_function_is_refused_and_nothing_runs(layout, tmp_path, case):
    ran = tmp_path / "ran"
    kustomization, files = PLUGINS[case](ran)
    root = overlay(layout, kustomization, {"cm.yaml": CONFIGMAP, **files})
    checked = check(root)
    assert not ran.exists(), "a plugin ran"
    [error] = checked.of("build-error")
    assert error.origin is not None and error.origin.file.startswith("overlays/production/"), error
    assert error.origin.line is not None, error
    assert any(w in error.message for w in ("plugin", "KRM function", "Helm", "function")), error.message
    assert not os.path.exists("/host"), "nothing was mounted"


def test_a_flux_path_climbing_out_is_confined_to_the_repository_as_flux_does(layout):
    """kustomize-controller joins `spec.path` to the source securely: `../../deploy` is `deploy`."""
    root = flux_repo(layout, {"deploy/kustomization.yaml": "resources:\n- cm.yaml\n", "deploy/cm.yaml": CONFIGMAP},
                     path="../../deploy")
    checked = check(root)
    assert [t.path for t in checked.report.targets] == ["deploy"]
    assert not checked.of("flux-config", "build-error"), checked.report.findings


def test_the_guards_see_what_they_guard(layout, network_guard):
    """Not vacuous: a connection out and a read of the sentinel are seen (then forgotten here)."""
    with pytest.raises(OSError, match="no network"):
        socket.create_connection(("192.0.2.1", 443), timeout=1)
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("example.com", 443)
    assert [a.split()[0] for a in network_guard] == ["create_connection", "getaddrinfo"]
    network_guard.clear()
    assert SECRET in (layout.outside / "secret.yaml").read_text()
    reads = watched()
    assert reads == [str((layout.outside / "secret.yaml").resolve())]
    reads.clear()
