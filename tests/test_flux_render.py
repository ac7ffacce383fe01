"""Render what Flux renders (issue 9, §1): files outside the kustomization's folder for Flux targets,
and remote resources fetched through the policed fetcher, checked, and located at their `resources:`
line; not fetched, a notice that they were not checked, never an error claiming Flux would fail.
No internet: remote content is served by a local server the test's configuration allows."""

from __future__ import annotations

from pathlib import Path

import pytest
from loopback import Server
from test_fetch import tarball
from trees import flux_kustomization, write

from bot.__main__ import main
from bot.config import parse_config
from bot.fetch import Fetcher, FetchSettings, remote
from bot.model import Target
from bot.render.build import DiskCache, Renderer
from bot.repo.discover import RepoModel
from bot.repo.tree import RepoTree
from bot.review.pipeline import run_check

FLUX = flux_kustomization("./clusters/production/apps")
DEPLOY = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
      - name: {name}
        image: {image}
"""


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def flux_repo(root: Path, kustomization: str, config: str = "", **files: str) -> Path:
    """A repository whose one Flux Kustomization (production) builds clusters/production/apps."""
    write(root, {"clusters/production/flux.yaml": FLUX, "clusters/production/apps/kustomization.yaml": kustomization,
                 **({".github/infra-review.yml": config} if config else {}), **files})
    return root


def flux_target(root: Path) -> tuple[RepoModel, Target]:
    model = RepoModel(RepoTree(root))
    [target] = [t for t in model.targets if t.flux is not None]
    return model, target


def findings(root: Path, rule: str | None = None, **kw):
    config = parse_config((root / ".github/infra-review.yml").read_text()) if (root / ".github/infra-review.yml").exists() \
        else parse_config("")
    report = run_check(root, None, config, **kw)
    return [f for f in report.findings if rule is None or f.rule == rule], report


def allow(server: Server) -> str:
    return f"fetch: {{allow: ['{server.url}/']}}\n"


# --- files outside the kustomization's folder ----------------------------------------------------------

SIBLING = {
    "apps/base/kustomization.yaml": "resources:\n- deploy.yaml\n",
    "apps/base/deploy.yaml": DEPLOY.format(name="web", image="nginx:latest"),
    "apps/patch.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n",
}
SIBLING_KUSTOMIZATION = "resources:\n- ../../../apps/base\npatches:\n- path: ../../../apps/patch.yaml\n"


def test_a_flux_overlay_reads_a_patch_from_a_sibling_folder(tmp_path):
    root = flux_repo(tmp_path, SIBLING_KUSTOMIZATION, **SIBLING)
    model, target = flux_target(root)
    cache = DiskCache(tmp_path / "cache")  # one cache: the two modes have their own keys
    out = Renderer(model, cache=cache, fetch=FetchSettings()).render(target)
    assert out.ok, out.error
    [dep] = out.objects
    assert dep.origin("spec.replicas").file == "apps/patch.yaml"
    assert dep.origin("spec.template.spec.containers[web].image").file == "apps/base/deploy.yaml"
    plain = Renderer(model, cache=cache, fetch=FetchSettings()).render(Target(target.path, None, None))
    assert not plain.ok and "is not in or below" in plain.error.message  # plain `kustomize build` semantics
    assert not plain.cached and Renderer(model, cache=cache, fetch=FetchSettings()).render(target).cached


def test_a_cluster_root_reading_sibling_files_is_checked_not_a_build_error(tmp_path):
    root = flux_repo(tmp_path, SIBLING_KUSTOMIZATION, **SIBLING)
    found, report = findings(root)
    rules = {f.rule for f in found}
    assert "build-error" not in rules and {"latest-tag", "single-replica"} <= rules
    single = next(f for f in found if f.rule == "single-replica")
    assert (single.origin.file, single.origin.line) == ("apps/patch.yaml", 6)


def test_build_keeps_plain_kustomize_semantics_without_flux(tmp_path, capsys):
    root = flux_repo(tmp_path, SIBLING_KUSTOMIZATION, **SIBLING)
    overlay = str(root / "clusters/production/apps")
    assert main(["build", overlay, "--root", str(root), "--flux"]) == 0
    assert "name: web" in capsys.readouterr().out
    assert main(["build", overlay, "--root", str(root)]) == 1
    assert "is not in or below" in capsys.readouterr().err


# --- remote resources ------------------------------------------------------------------------------

def test_a_remote_yaml_resource_is_fetched_checked_and_located_at_its_resources_line(tmp_path, server):
    server.routes["/manifests/web.yaml"] = (200, {}, DEPLOY.format(name="web", image="nginx:latest").encode())
    root = flux_repo(tmp_path, f"resources:\n- local.yaml\n- {server.url}/manifests/web.yaml\n",
                     config=allow(server), **{"clusters/production/apps/local.yaml": "apiVersion: v1\nkind: "
                                             "ConfigMap\nmetadata:\n  name: local\n"})
    found, report = findings(root)
    [tag] = [f for f in found if f.rule == "latest-tag"]
    assert (tag.origin.file, tag.origin.line) == ("clusters/production/apps/kustomization.yaml", 3)
    assert tag.origin.via == "remote" and "nginx:latest" in tag.message
    probes = next(f for f in found if f.rule == "missing-probes")  # an absent field: the same line
    assert (probes.origin.file, probes.origin.line) == ("clusters/production/apps/kustomization.yaml", 3)
    assert ("clusters/production/apps/kustomization.yaml", 3, 3) in tag.places
    assert not [f for f in found if f.rule in ("build-error", "remote-unchecked")]
    assert [p for p, _ in server.requests] == ["/manifests/web.yaml"]
    assert [t.resources for t in report.targets] == [2]


def test_an_overlay_over_a_remote_base_is_located_at_its_own_lines(tmp_path, server):
    server.routes["/web.yaml"] = (200, {}, DEPLOY.format(name="web", image="nginx:latest").encode())
    root = flux_repo(tmp_path, f"resources:\n- {server.url}/web.yaml\nimages:\n- name: nginx\n  newTag: latest\n"
                               f"replicas:\n- name: web\n  count: 1\n", config=allow(server))
    found, _ = findings(root)
    tag = next(f for f in found if f.rule == "latest-tag")
    replicas = next(f for f in found if f.rule == "single-replica")
    assert (tag.origin.file, tag.origin.line) == ("clusters/production/apps/kustomization.yaml", 5)
    assert (replicas.origin.file, replicas.origin.line) == ("clusters/production/apps/kustomization.yaml", 8)


def test_a_repository_reference_is_fetched_as_an_archive_of_its_ref(tmp_path, server, monkeypatch):
    monkeypatch.setattr(remote, "CODELOAD", server.url + "/codeload")
    archive = tarball("repo-v1.2.0", {
        "deploy/base/kustomization.yaml": "resources:\n- deployment.yaml\n",
        "deploy/base/deployment.yaml": DEPLOY.format(name="api", image="ghcr.io/org/api:latest"),
        "deploy/overlay/kustomization.yaml": "resources:\n- ../base\nnamePrefix: prod-\n",
        "unrelated/huge.yaml": "not: read\n",
    })
    server.routes["/codeload/org/repo/tar.gz/v1.2.0"] = (200, {"Content-Type": "application/x-gzip"}, archive)
    root = flux_repo(tmp_path, "resources:\n- github.com/org/repo//deploy/overlay?ref=v1.2.0\n", config=allow(server))
    model, target = flux_target(root)
    settings = FetchSettings.from_config(parse_config(allow(server)))
    out = Renderer(model, cache=DiskCache(None), fetch=settings).render(target)
    assert out.ok, out.error
    [dep] = out.objects
    assert dep.name == "prod-api" and not out.unfetched
    origin = dep.origin("spec.template.spec.containers[api].image")
    assert (origin.file, origin.line, origin.detail) == (
        "clusters/production/apps/kustomization.yaml", 2, "github.com/org/repo//deploy/overlay?ref=v1.2.0")
    found, _ = findings(root, "latest-tag")
    assert [(f.origin.file, f.origin.line) for f in found] == [("clusters/production/apps/kustomization.yaml", 2)]
    assert {p for p, _ in server.requests} == {"/codeload/org/repo/tar.gz/v1.2.0"}


def test_remote_entries_of_fetched_content_are_followed_to_a_depth(tmp_path, server, monkeypatch):
    monkeypatch.setattr(remote, "CODELOAD", server.url + "/codeload")
    server.routes["/leaf.yaml"] = (200, {}, DEPLOY.format(name="leaf", image="leaf:1.0").encode())
    server.routes["/codeload/org/outer/tar.gz/v1"] = (200, {}, tarball("outer-v1", {
        "kustomization.yaml": f"resources:\n- {server.url}/leaf.yaml\n- github.com/org/inner?ref=v1\n"}))
    server.routes["/codeload/org/inner/tar.gz/v1"] = (200, {}, tarball("inner-v1", {
        "kustomization.yaml": "resources:\n- github.com/org/outer?ref=v1\n"}))  # a cycle, cut by the depth
    root = flux_repo(tmp_path, "resources:\n- github.com/org/outer?ref=v1\n", config=allow(server))
    model, target = flux_target(root)
    settings = FetchSettings.from_config(parse_config(allow(server)))
    out = Renderer(model, cache=DiskCache(None), fetch=settings).render(target)
    assert out.ok, out.error
    assert [o.name for o in out.objects] == ["leaf"]
    # outer (1) → inner (2) → outer (3) → leaf, inner (4): cut, at the repository's entry
    assert {(u.kind, u.via, u.file, u.line) for u in out.unfetched} == {
        ("depth", f"{server.url}/leaf.yaml", "clusters/production/apps/kustomization.yaml", 2),
        ("depth", "github.com/org/inner?ref=v1", "clusters/production/apps/kustomization.yaml", 2)}


@pytest.mark.parametrize("entry, kind, said", [
    ("https://127.0.0.1/x.yaml", "refused", "loopback"),
    ("http://example.com/x.yaml", "refused", "only https"),
    ("https://user:token@example.com/x.yaml", "refused", "credentials"),
    ("https://git.example.com/org/repo//deploy?ref=v1", "unsupported", "git.example.com is not a host"),
])
def test_a_remote_resource_the_policy_refuses_is_a_notice_and_no_request(tmp_path, server, entry, kind, said):
    root = flux_repo(tmp_path, f"resources:\n- local.yaml\n- {entry}\n",
                     **{"clusters/production/apps/local.yaml": DEPLOY.format(name="web", image="nginx:1.27")})
    found, report = findings(root)
    [notice] = [f for f in found if f.rule == "remote-unchecked"]
    assert notice.severity == "notice" and said in notice.message and "not checked" in notice.message
    assert (notice.origin.file, notice.origin.line) == ("clusters/production/apps/kustomization.yaml", 3)
    assert not [f for f in found if f.rule == "build-error"] and report.targets[0].resources == 1
    assert server.requests == []


def test_offline_is_a_notice_per_remote_resource_and_makes_no_request(tmp_path, server, capsys):
    server.routes["/web.yaml"] = (200, {}, DEPLOY.format(name="web", image="nginx:latest").encode())
    root = flux_repo(tmp_path, f"resources:\n- {server.url}/web.yaml\n- local.yaml\n", config=allow(server),
                     **{"clusters/production/apps/local.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n"
                                                               "  name: local\n"})
    main(["check", str(root), "--root", str(root), "--offline", "--format", "json"])
    out = capsys.readouterr().out
    assert '"rule": "remote-unchecked"' in out and "fetching is off" in out and "build-error" not in out
    assert server.requests == []
    (root / ".github/infra-review.yml").write_text(f"fetch: {{enabled: false, allow: ['{server.url}/']}}\n")
    found, _ = findings(root, "remote-unchecked")
    assert len(found) == 1 and server.requests == []


def test_an_overlay_that_cannot_build_without_its_remote_base_is_unchecked_not_broken(tmp_path):
    root = flux_repo(tmp_path, "resources:\n- https://10.0.0.1/base.yaml\npatches:\n- patch: |-\n"
                               "    apiVersion: apps/v1\n    kind: Deployment\n    metadata:\n      name: web\n"
                               "    spec:\n      replicas: 3\n")
    found, report = findings(root)
    [notice] = [f for f in found if f.rule == "remote-unchecked"]
    assert "cannot be built" in notice.message and "not a build error" in notice.message
    assert not [f for f in found if f.rule == "build-error"]


def test_no_remote_bases_makes_a_remote_resource_a_build_error(tmp_path, server):
    server.routes["/web.yaml"] = (200, {}, DEPLOY.format(name="web", image="nginx:1.27").encode())
    root = flux_repo(tmp_path, f"resources:\n- {server.url}/web.yaml\n",
                     config=allow(server) + "flux: {no_remote_bases: true}\n")
    found, _ = findings(root)
    [err] = [f for f in found if f.rule == "build-error"]
    assert "--no-remote-bases" in err.message and err.origin.line == 2
    assert not [f for f in found if f.rule == "remote-unchecked"] and server.requests == []


def test_the_second_check_makes_no_request(tmp_path, server, monkeypatch):
    monkeypatch.setattr(remote, "CODELOAD", server.url + "/codeload")
    monkeypatch.setenv("INFRA_REVIEW_CACHE", str(tmp_path / "cache"))
    server.routes["/web.yaml"] = (200, {}, DEPLOY.format(name="web", image="nginx:latest").encode())
    server.routes["/codeload/org/repo/tar.gz/v1"] = (200, {}, tarball("repo-v1", {
        "kustomization.yaml": "resources:\n- d.yaml\n", "d.yaml": DEPLOY.format(name="api", image="api:latest")}))
    root = flux_repo(tmp_path / "repo", f"resources:\n- {server.url}/web.yaml\n- github.com/org/repo?ref=v1\n",
                     config=allow(server))
    first, _ = findings(root, "latest-tag")
    assert len(first) == 2 and len(server.requests) == 2
    second, _ = findings(root, "latest-tag")
    assert [f.fingerprint for f in second] == [f.fingerprint for f in first] and len(server.requests) == 2
    for entry in (tmp_path / "cache").glob("??/*.json"):  # the renders go; the downloads stay
        entry.unlink()
    third, _ = findings(root, "latest-tag")
    assert len(third) == 2 and len(server.requests) == 2


def test_a_renderer_given_no_fetch_settings_refuses_remote_entries_as_before(tmp_path):
    root = flux_repo(tmp_path, "resources:\n- https://example.com/x.yaml\n")
    model, target = flux_target(root)
    err = Renderer(model, cache=DiskCache(None)).render(target).error
    assert err is not None and "is not fetched" in err.message and err.line == 2


def test_a_remote_patch_file_is_fetched_and_a_failed_one_left_out(tmp_path, server):
    server.routes["/patch.yaml"] = (200, {}, b"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n"
                                            b"spec:\n  replicas: 4\n")
    root = flux_repo(tmp_path, f"resources:\n- deploy.yaml\npatches:\n- path: {server.url}/patch.yaml\n"
                               f"- path: {server.url}/gone.yaml\n", config=allow(server),
                     **{"clusters/production/apps/deploy.yaml": DEPLOY.format(name="web", image="nginx:1.27")})
    model, target = flux_target(root)
    fetcher = Fetcher(FetchSettings.from_config(parse_config(allow(server))))
    out = Renderer(model, cache=DiskCache(None), fetcher=fetcher).render(target)
    assert out.ok, out.error
    assert out.objects[0].obj["spec"]["replicas"] == 4
    [gone] = out.unfetched
    assert gone.kind == "failed" and "404" in gone.reason and gone.line == 5


def test_an_error_in_fetched_content_is_at_the_entry_and_names_the_url(tmp_path, server):
    server.routes["/broken.yaml"] = (200, {}, b"apiVersion: v1\nkind: ConfigMap\nmetadata: [unclosed\n")
    root = flux_repo(tmp_path, f"resources:\n- local.yaml\n- {server.url}/broken.yaml\n", config=allow(server),
                     **{"clusters/production/apps/local.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n"
                                                               "  name: local\n"})
    model, target = flux_target(root)
    settings = FetchSettings.from_config(parse_config(allow(server)))
    err = Renderer(model, cache=DiskCache(None), fetch=settings).render(target).error
    assert err is not None and (err.file, err.line) == ("clusters/production/apps/kustomization.yaml", 3)
    assert f"{server.url}/broken.yaml" in err.message and ".infra-review-remote" not in err.message


def test_build_offline_leaves_a_remote_resource_out_and_says_so(tmp_path, server, capsys):
    server.routes["/web.yaml"] = (200, {}, DEPLOY.format(name="web", image="nginx:1.27").encode())
    root = flux_repo(tmp_path, f"resources:\n- local.yaml\n- {server.url}/web.yaml\n", config=allow(server),
                     **{"clusters/production/apps/local.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n"
                                                               "  name: local\n"})
    overlay = str(root / "clusters/production/apps")
    assert main(["build", overlay, "--root", str(root), "--flux", "--offline"]) == 0
    out, err = capsys.readouterr()
    assert "name: local" in out and "name: web" not in out
    assert "kustomization.yaml:3: remote" in err and "fetching is off" in err and server.requests == []
    assert main(["build", overlay, "--root", str(root)]) == 0
    assert "name: web" in capsys.readouterr().out and len(server.requests) == 1


def test_objects_a_fetched_kustomization_generates_are_located_at_the_entry(tmp_path, server, monkeypatch):
    monkeypatch.setattr(remote, "CODELOAD", server.url + "/codeload")
    server.routes["/codeload/org/cfg/tar.gz/v1"] = (200, {}, tarball("cfg-v1", {
        "kustomization.yaml": "configMapGenerator:\n- name: settings\n  literals:\n  - LOG_LEVEL=debug\n"}))
    root = flux_repo(tmp_path, "resources:\n- github.com/org/cfg?ref=v1\n", config=allow(server))
    model, target = flux_target(root)
    out = Renderer(model, cache=DiskCache(None), fetch=FetchSettings.from_config(parse_config(allow(server)))) \
        .render(target)
    [cm] = out.objects
    origin = cm.origin("data.LOG_LEVEL")
    assert (origin.file, origin.line, origin.via) == ("clusters/production/apps/kustomization.yaml", 2, "remote")
