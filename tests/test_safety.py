"""Untrusted repository content: what we refuse to build, and the sandbox the binary runs in."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from trees import write

from bot.model import Target
from bot.render.build import DiskCache, Renderer
from bot.render.kustomize import _sandbox_env
from bot.repo.discover import RepoModel
from bot.repo.tree import RepoTree
from bot.yamlpos import YamlError, load_docs

DEPLOY = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
spec:
  template:
    spec:
      containers:
      - name: app
        image: app:1.0
"""



def render(root: Path, directory: str = "app"):
    return Renderer(RepoModel(RepoTree(root)), cache=DiskCache(None)).render(Target(directory, None, None))


@pytest.mark.parametrize("ref", [
    "https://github.com/kubernetes-sigs/kustomize//examples/helloWorld?ref=v5.5.0",
    "github.com/example/repo/base",
    "git@github.com:example/repo.git",
    "git::https://example.com/repo.git",
])
def test_remote_resources_are_refused_at_their_line(tmp_path, ref):
    write(tmp_path, {"app/kustomization.yaml": f"resources:\n- deploy.yaml\n- {ref}\n", "app/deploy.yaml": DEPLOY})
    out = render(tmp_path)
    assert not out.ok
    assert out.error.file == "app/kustomization.yaml" and out.error.line == 3
    assert "remote" in out.error.message


def test_absolute_and_escaping_paths_are_refused(tmp_path):
    write(tmp_path, {"app/kustomization.yaml": "resources:\n- /etc/passwd\n"})
    assert "absolute" in render(tmp_path).error.message
    write(tmp_path, {"app/kustomization.yaml": "resources:\n- ../../outside\n"})
    err = render(tmp_path).error
    assert "leaves the repository root" in err.message and err.line == 2


def test_symlink_leaving_the_root_is_refused(tmp_path):
    outside = tmp_path / "outside"
    write(outside, {"secret.yaml": DEPLOY})
    repo = tmp_path / "repo"
    write(repo, {"app/kustomization.yaml": "resources:\n- link/secret.yaml\n"})
    os.symlink(outside, repo / "app" / "link")
    err = render(repo).error
    assert err is not None and "symlink" in err.message


@pytest.mark.parametrize("text, word", [
    ("helmCharts:\n- name: redis\n  repo: https://charts.example.com\n", "Helm"),
    ("transformers:\n- |-\n  apiVersion: example.com/v1\n  kind: Exec\n  metadata:\n    name: x\n", "plugin"),
    ("generators:\n- gen.yaml\n", "KRM function"),
])
def test_helm_and_plugins_are_refused(tmp_path, text, word):
    write(tmp_path, {
        "app/kustomization.yaml": text,
        "app/gen.yaml": "apiVersion: fn.example.com/v1\nkind: Gen\nmetadata:\n  name: g\n  annotations:\n"
                        "    config.kubernetes.io/function: |\n      exec:\n        path: ./run.sh\n",
    })
    out = render(tmp_path)
    assert not out.ok and word in out.error.message


def test_builtin_transformer_configs_are_allowed(tmp_path):
    write(tmp_path, {
        "app/kustomization.yaml": "resources:\n- deploy.yaml\ntransformers:\n- prefix.yaml\n",
        "app/deploy.yaml": DEPLOY,
        "app/prefix.yaml": "apiVersion: builtin\nkind: PrefixSuffixTransformer\nmetadata:\n  name: p\n"
                           "prefix: x-\nfieldSpecs:\n- path: metadata/name\n",
    })
    out = render(tmp_path)
    assert out.ok, out.error
    assert out.objects[0].name == "x-app"


def test_cycles_are_build_errors_not_crashes(tmp_path):
    write(tmp_path, {"a/kustomization.yaml": "resources:\n- ../b\n", "b/kustomization.yaml": "resources:\n- ../a\n"})
    out = render(tmp_path, "a")
    assert not out.ok and "cycle" in out.error.message


def test_missing_file_is_a_build_error_naming_the_line(tmp_path):
    write(tmp_path, {"app/kustomization.yaml": "resources:\n- deploy.yaml\n- gone.yaml\n", "app/deploy.yaml": DEPLOY})
    err = render(tmp_path).error
    assert (err.file, err.line) == ("app/kustomization.yaml", 3) and "gone.yaml" in err.message


def test_invalid_yaml_is_a_build_error(tmp_path):
    write(tmp_path, {"app/kustomization.yaml": "resources: [deploy.yaml\n"})
    out = render(tmp_path)
    assert not out.ok and out.error.file == "app/kustomization.yaml"


def test_scratch_copy_holds_only_the_inputs(tmp_path):
    """A file the graph does not list cannot be read by the build, even inside the repository."""
    write(tmp_path, {"app/kustomization.yaml": "resources:\n- deploy.yaml\n", "app/deploy.yaml": DEPLOY,
                     "other/private.yaml": "secret: 1\n"})
    model = RepoModel(RepoTree(tmp_path))
    inputs = model.inputs(Target("app", None, None))
    assert inputs.files == {"app/kustomization.yaml", "app/deploy.yaml"}


def test_sandbox_environment_has_no_credentials_network_or_git():
    env = _sandbox_env()
    assert env["HOME"] == "/nonexistent"
    assert all(env[v] == "http://127.0.0.1:9" for v in ("HTTP_PROXY", "HTTPS_PROXY", "https_proxy"))
    assert os.listdir(env["PATH"]) == []
    assert not any(k.startswith(("GITHUB", "AWS", "GOOGLE", "SSH_")) for k in env)


def test_yaml_bombs_and_depth_are_bounded():
    laughs = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{c}: &{c} [{','.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefg", "bcdefgh", strict=True))
    with pytest.raises(YamlError, match="alias"):
        load_docs(laughs)
    with pytest.raises(YamlError, match="nesting"):
        load_docs("a: " + "[" * 200 + "]" * 200)


def test_a_build_that_runs_too_long_is_stopped(tmp_path):
    from bot.render.kustomize import find_kustomize, run_build

    write(tmp_path, {"app/kustomization.yaml": "resources:\n- deploy.yaml\n", "app/deploy.yaml": DEPLOY})
    res = run_build(find_kustomize(), tmp_path, "app", timeout=0.001)
    assert res.returncode == 124 and "timed out" in res.stderr
    assert run_build(find_kustomize(), tmp_path, "app").returncode == 0
