"""Failures said in one sentence (issue §4): kustomize's own error sentence at the line that caused
it, a crash or a kill in words, inputs refused by our own pre-scan before kustomize runs, and
kustomizations that include each other named as a cycle on every target involved."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest_paths import REPO
from trees import write

from bot.model import Target
from bot.render import build
from bot.render.build import DiskCache, Renderer, yaml_nodes
from bot.render.kustomize import Kustomize, clean_error, find_kustomize, run_build
from bot.repo.discover import RepoModel
from bot.repo.tree import RepoTree

CONFIGMAP = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  key: value\n"
LAUGHS = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{c}: &{c} [{','.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefg", "bcdefgh", strict=True))
FLUX = """\
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: apps
  namespace: flux-system
spec:
  interval: 10m
  path: ./{path}
  prune: true
  wait: true
  sourceRef:
    kind: GitRepository
    name: flux-system
"""



def laughs_bomb(name: str = "bomb") -> str:
    """A ConfigMap holding a billion-laughs document: 9^8 nodes from 300 bytes."""
    return CONFIGMAP.format(name=name) + "foo:\n" + "".join("  " + ln for ln in LAUGHS.splitlines(True))


def alias_bomb(name: str, items: int, aliases: int) -> str:
    """A ConfigMap whose list of `items` scalars is aliased `aliases` times: items x aliases nodes."""
    return (f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\nfoo:\n  a: &a [{','.join('0' * items)}]\n"
            f"  b: [{','.join(['*a'] * aliases)}]\n")


def render(root: Path, target: str, kz: Kustomize | None = None, flux: bool = False):
    model = RepoModel(RepoTree(root))
    [t] = [t for t in model.targets if t.path == target] if flux else [Target(target, None, None)]
    return Renderer(model, kustomize=kz, cache=DiskCache(None)).render(t)


def marker_kustomize(marker: Path) -> Kustomize:
    """A stand-in binary that only records that it ran."""
    return Kustomize(("/bin/sh", "-c", f"touch {marker}; exit 1", "sh"), "test")


def fake_kustomize(stderr: str, code: int | str) -> Kustomize:
    """A stand-in binary printing `stderr` and exiting with `code` (or killing itself: `code` = "KILL")."""
    end = f"kill -{code} $$" if isinstance(code, str) else f"exit {code}"
    script = f"/bin/cat >&2 <<'EOF'\n{stderr}\nEOF\n{end}"
    return Kustomize(("/bin/sh", "-c", script, "sh"), "test")


# ---- kustomize's own sentence ----------------------------------------------------------------------


def test_an_invalid_literal_is_kustomizes_sentence_at_the_literal(tmp_path):
    write(tmp_path, {"app/kustomization.yaml": """\
        resources:
        - cm.yaml
        configMapGenerator:
        - name: settings
          literals:
          - mode=fast
          - x
        """, "app/cm.yaml": CONFIGMAP.format(name="cm")})
    err = render(tmp_path, "app").error
    assert err.message == "loading KV pairs: literal sources [mode=fast x]: invalid literal source x, expected key=value"
    assert (err.file, err.line) == ("app/kustomization.yaml", 7)


def test_a_missing_file_is_kustomizes_sentence_with_the_scratch_path_removed(tmp_path):
    """Our graph refuses a missing entry before kustomize runs; kustomize's own words for it, when
    it meets one, are the sentence inside klog's err="..." without the folder attempt."""
    write(tmp_path, {"app/kustomization.yaml": "resources:\n- cm.yaml\n- gone.yaml\n",
                     "app/cm.yaml": CONFIGMAP.format(name="cm")})
    res = run_build(find_kustomize(), tmp_path, "app")
    assert res.returncode != 0
    assert clean_error(res.stderr, tmp_path, res.returncode) == (
        "accumulating resources from 'gone.yaml': evalsymlink failure on 'app/gone.yaml' : lstat app/gone.yaml: "
        "no such file or directory")


def test_an_id_conflict_in_a_base_is_at_the_base_entry(tmp_path):
    write(tmp_path, {
        "overlays/production/kustomization.yaml": "namePrefix: prod-\nresources:\n- ../../base\n",
        "base/kustomization.yaml": "resources:\n- a.yaml\n- b.yaml\n",
        "base/a.yaml": CONFIGMAP.format(name="same"),
        "base/b.yaml": CONFIGMAP.format(name="same"),
    })
    err = render(tmp_path, "overlays/production").error
    assert err.message == ("accumulating resources from '../../base': merging resources from 'b.yaml': may not add "
                           "resource with an already registered id: ConfigMap.v1.[noGrp]/same.[noNs]")
    assert (err.file, err.line) == ("base/kustomization.yaml", 3)


@pytest.mark.parametrize("text, line, sentence", [
    ("resources:\n- cm.yaml\nfoo: bar\n", 3, 'invalid Kustomization: json: unknown field "foo"'),
    ("resources:\n- cm.yaml\nnamePrefix: [x]\n", 3,
     "invalid Kustomization: json: cannot unmarshal array into Go struct field Kustomization.namePrefix of type string"),
    ("resources:\n- cm.yaml\npatches:\n- path: patch.yaml\n", 3,
     'no resource matches strategic merge patch "ConfigMap.v1.[noGrp]/other.[noNs]": no matches for Id '
     'ConfigMap.v1.[noGrp]/other.[noNs]; failed to find unique target for patch ConfigMap.v1.[noGrp]/other.[noNs]'),
])
def test_a_field_kustomize_refuses_is_at_that_field(tmp_path, text, line, sentence):
    write(tmp_path, {"app/kustomization.yaml": text, "app/cm.yaml": CONFIGMAP.format(name="cm"),
                     "app/patch.yaml": CONFIGMAP.format(name="other")})
    err = render(tmp_path, "app").error
    assert (err.message, err.file, err.line) == (sentence, "app/kustomization.yaml", line)


def test_a_component_listed_as_a_resource_is_at_its_entry(tmp_path):
    write(tmp_path, {
        "app/kustomization.yaml": "resources:\n- cm.yaml\n- ../comp\n",
        "app/cm.yaml": CONFIGMAP.format(name="cm"),
        "comp/kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\nresources:\n- x.yaml\n",
        "comp/x.yaml": CONFIGMAP.format(name="x"),
    })
    err = render(tmp_path, "app").error
    assert err.message == "accumulating resources from '../comp': expected kind != 'Component' for path 'comp'"
    assert (err.file, err.line) == ("app/kustomization.yaml", 3)


def test_a_folder_without_kustomization_is_at_its_entry(tmp_path):
    write(tmp_path, {"app/kustomization.yaml": "resources:\n- cm.yaml\n- sub\n", "app/cm.yaml": CONFIGMAP.format(name="cm"),
                     "app/sub/x.yaml": CONFIGMAP.format(name="x")})
    err = render(tmp_path, "app").error
    assert (err.file, err.line) == ("app/kustomization.yaml", 3) and "'sub'" in err.message


def test_a_flux_component_that_is_no_kustomization_is_at_its_line(tmp_path):
    write(tmp_path, {
        "clusters/production/apps.yaml": FLUX.format(path="apps") + "  components:\n  - ../comp\n  - ../nothing\n",
        "apps/kustomization.yaml": "resources:\n- cm.yaml\n", "apps/cm.yaml": CONFIGMAP.format(name="cm"),
        "comp/kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\n",
        "nothing/readme.yaml": "a: 1\n",
    })
    err = render(tmp_path, "apps", flux=True).error
    assert (err.file, err.line) == ("clusters/production/apps.yaml", 16) and "../nothing" in err.message


def test_a_remote_flux_component_and_a_broken_kustomization_are_at_their_lines(tmp_path):
    write(tmp_path, {
        "clusters/production/apps.yaml": FLUX.format(path="apps") + "  components:\n  - https://example.com/c\n",
        "apps/kustomization.yaml": "resources:\n- cm.yaml\n", "apps/cm.yaml": CONFIGMAP.format(name="cm"),
    })
    err = render(tmp_path, "apps", flux=True).error
    assert (err.file, err.line) == ("clusters/production/apps.yaml", 15) and "https://example.com/c" in err.message
    write(tmp_path, {"clusters/production/apps.yaml": FLUX.format(path="apps") + "  targetNamespace: x\n",
                     "apps/kustomization.yaml": "- a list\n"})
    err = render(tmp_path, "apps", flux=True).error
    assert (err.file, err.line) == ("apps/kustomization.yaml", 1), err


@pytest.mark.parametrize("stderr, code, sentence", [
    ("panic: runtime error: invalid memory address or nil pointer dereference\n[signal SIGSEGV: segmentation "
     "violation code=0x1 addr=0x0 pc=0x15cab6c]\n\ngoroutine 1 [running]:\nsigs.k8s.io/kustomize/api/krusty."
     "(*Kustomizer).Run(0x0)\n\tsigs.k8s.io/kustomize/api@v0.18.0/krusty/kustomizer.go:94 +0x2c", 2,
     "kustomize crashed: runtime error: invalid memory address or nil pointer dereference"),
    ("runtime: goroutine stack exceeds 1000000000-byte limit\nfatal error: stack overflow\n\ngoroutine 1 "
     "[running]:\nk8s.io/klog/v2.(*flushDaemon).run.func1()\n\tk8s.io/klog/v2@v2.130.1/klog.go:1137 +0x167", 2,
     "kustomize crashed: stack overflow"),
    ("", "KILL", "kustomize was killed (SIGKILL), most likely for running out of memory (limit 2 GiB)"),
    ("Error: accumulating resources: accumulation err='accumulating resources from 'gone.yaml': evalsymlink failure "
     "on 'x' : lstat x: no such file or directory': must build at directory: not a valid directory: evalsymlink "
     "failure on 'x' : lstat x: no such file or directory", 1,
     "accumulating resources from 'gone.yaml': evalsymlink failure on 'x' : lstat x: no such file or directory"),
    ('E1201 17:09:32.699923   25153 run.go:72] "command failed" err="invalid Kustomization: json: unknown field '
     '\\"foo\\"\\tand\\u00e9"', 1, 'invalid Kustomization: json: unknown field "foo"\tandé'),
])
def test_crashes_kills_and_standalone_errors_in_words(tmp_path, stderr, code, sentence):
    res = run_build(fake_kustomize(stderr, code), tmp_path, "app")
    assert clean_error(res.stderr, tmp_path, res.returncode) == sentence


def test_a_timeout_says_the_limit(tmp_path):
    res = run_build(Kustomize(("/bin/sh", "-c", "exec /bin/sleep 30", "sh"), "test"), tmp_path, "app", timeout=1)
    assert clean_error(res.stderr, tmp_path, res.returncode) == (
        "kustomize build timed out after 1s, the per-target limit (INFRA_REVIEW_BUILD_TIMEOUT), and was stopped")


@pytest.mark.slow
def test_a_bomb_that_reaches_kustomize_is_out_of_memory_in_words(tmp_path):
    """Past the pre-scan (run directly), real kustomize dies at its 2 GiB cap with a stack trace; the
    sentence is that, not the trace's last line."""
    write(tmp_path, {"app/kustomization.yaml": "resources:\n- bomb.yaml\n", "app/bomb.yaml": laughs_bomb()})
    res = run_build(find_kustomize(), tmp_path, "app")
    assert res.returncode != 0 and "goroutine" in res.stderr
    assert clean_error(res.stderr, tmp_path, res.returncode) == "kustomize ran out of memory (limit 2 GiB)"


# ---- the pre-scan ------------------------------------------------------------------------------------


def test_an_alias_bomb_is_refused_before_kustomize_runs(tmp_path):
    marker = tmp_path / "ran"
    root = write(tmp_path / "repo", {"app/kustomization.yaml": "resources:\n- cm.yaml\n- bomb.yaml\n",
                                     "app/cm.yaml": CONFIGMAP.format(name="cm"), "app/bomb.yaml": laughs_bomb()})
    err = render(root, "app", marker_kustomize(marker)).error
    assert not marker.exists(), "kustomize ran"
    assert err.message == ("`app/bomb.yaml` is refused before building: it expands to more than 250,000 YAML nodes "
                           "(aliases expanded), more than one build may hold")
    assert (err.file, err.line) == ("app/bomb.yaml", 13)  # `f:`, where the expansion passes the bound


def test_an_over_deep_document_is_refused_before_kustomize_runs(tmp_path):
    marker = tmp_path / "ran"
    deep = CONFIGMAP.format(name="deep") + "foo: " + "[" * 200 + "]" * 200 + "\n"
    root = write(tmp_path / "repo", {"app/kustomization.yaml": "resources:\n- deep.yaml\n", "app/deep.yaml": deep})
    err = render(root, "app", marker_kustomize(marker)).error
    assert not marker.exists()
    assert (err.message, err.file, err.line) == (
        "`app/deep.yaml` is refused before building: it nests deeper than 128 levels", "app/deep.yaml", 7)


def test_many_files_each_under_the_bound_are_refused_together(tmp_path):
    """Each file alone holds fewer nodes than a build may; together they hold more."""
    marker = tmp_path / "ran"
    files = {f"app/b{i}.yaml": alias_bomb(f"b{i}", 300, 300) for i in range(4)}
    files["app/kustomization.yaml"] = "resources:\n" + "".join(f"- b{i}.yaml\n" for i in range(4))
    err = render(write(tmp_path / "repo", files), "app", marker_kustomize(marker)).error
    assert not marker.exists()
    each, total = yaml_nodes(files["app/b3.yaml"]), sum(yaml_nodes(text) for text in files.values())
    assert each < build.MAX_BUILD_NODES < total
    assert err.message == (f"`app` is refused before building: its YAML inputs hold {total:,} nodes (aliases expanded, "
                           f"a file counted each time the build reads it), over the 250,000 one build may hold; the "
                           f"largest is `app/b3.yaml` ({each:,})")
    assert (err.file, err.line) == ("app/kustomization.yaml", 5)


def test_a_base_built_twice_counts_twice(tmp_path, monkeypatch):
    monkeypatch.setattr(build, "MAX_BUILD_NODES", 150)
    root = write(tmp_path, {
        "base/kustomization.yaml": "resources:\n- cm.yaml\n", "base/cm.yaml": alias_bomb("cm", 10, 10),
        "one/kustomization.yaml": "namePrefix: one-\nresources:\n- ../base\n",
        "two/kustomization.yaml": "namePrefix: two-\nresources:\n- ../base\n",
        "app/kustomization.yaml": "resources:\n- ../one\n",
    })
    assert render(root, "app").ok
    (root / "app/kustomization.yaml").write_text("resources:\n- ../one\n- ../two\n")
    err = render(root, "app").error
    assert err is not None and "refused before building" in err.message


def test_what_kustomize_accepts_and_our_composer_does_not_still_builds(tmp_path):
    """A redefined anchor is YAML 1.2 (and go-yaml); PyYAML's composer refuses it. Seen in
    billimek/k8s-gitops: the pre-scan counts events, so it builds as it always did."""
    cm = CONFIGMAP.format(name="cm") + "  a: &port '80'\n  b: *port\n  c: &port '81'\n  d: *port\n"
    root = write(tmp_path, {"app/kustomization.yaml": "resources:\n- cm.yaml\n", "app/cm.yaml": cm})
    out = render(root, "app")
    assert out.ok, out.error
    assert out.objects[0].obj["data"] == {"key": "value", "a": "80", "b": "80", "c": "81", "d": "81"}


def test_generator_files_are_data_not_scanned(tmp_path):
    root = write(tmp_path, {"app/kustomization.yaml": "configMapGenerator:\n- name: raw\n  files:\n  - laughs.yaml\n",
                            "app/laughs.yaml": LAUGHS})
    out = render(root, "app")
    assert out.ok, out.error
    assert out.objects[0].obj["data"]["laughs.yaml"] == LAUGHS


def test_the_count_is_kustomizes_keys_and_aliases_included():
    assert yaml_nodes("a: [1, 2]\nb: {c: d}\n") == 9  # root, 2 keys, list + 2, map + key + value
    assert yaml_nodes("a: &x [1, 2, 3]\nb: [*x, *x]\n") == 1 + 2 + 4 + 1 + 8
    assert yaml_nodes("---\na: &x [1]\n---\nb: *x\n") == 4 + 3  # anchors are per document


def peak_rss_mib(*args: str, cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    """Peak RSS of `python -m bot ...` and everything it runs (what `time -v` reports), in a fresh process."""
    probe = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
             "sys.stdout.write(p.stdout); sys.stderr.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(cwd), "INFRA_REVIEW_CACHE": str(cwd / "cache")}
    res = subprocess.run([sys.executable, "-c", probe, sys.executable, "-m", "bot", *args], cwd=cwd,
                         capture_output=True, text=True, env=env, timeout=600)
    return int(res.stderr.strip().splitlines()[-1]) / 1024, res


@pytest.mark.slow
@pytest.mark.parametrize("case", ["laughs", "many-under-the-file-bound", "deep", "just-under-the-build-bound"])
def test_the_whole_check_stays_under_512_mib_on_bomb_trees(tmp_path, case):
    prod = "repo/overlays/production"
    if case == "laughs":
        files = {f"{prod}/bomb.yaml": laughs_bomb(), f"{prod}/kustomization.yaml": "resources:\n- bomb.yaml\n"}
    elif case == "deep":
        files = {f"{prod}/deep.yaml": CONFIGMAP.format(name="d") + "foo: " + "[" * 9000 + "]" * 9000 + "\n",
                 f"{prod}/kustomization.yaml": "resources:\n- deep.yaml\n"}
    elif case == "many-under-the-file-bound":  # each just under our parser's 500,000 nodes
        files = {f"{prod}/b{i}.yaml": alias_bomb(f"b{i}", 1000, 495) for i in range(8)}
        files[f"{prod}/kustomization.yaml"] = "resources:\n" + "".join(f"- b{i}.yaml\n" for i in range(8))
    else:  # the worst that still reaches kustomize
        files = {f"{prod}/b.yaml": alias_bomb("b", 500, 497), f"{prod}/kustomization.yaml": "resources:\n- b.yaml\n"}
    write(tmp_path, files)
    peak, res = peak_rss_mib("check", "repo", "--format", "json", cwd=tmp_path)
    [target] = json.loads(res.stdout)["targets"]
    assert target["status"] == ("ok" if case == "just-under-the-build-bound" else "error")
    assert peak < 512, f"{peak:.0f} MiB"


# ---- cycles ------------------------------------------------------------------------------------------


def test_overlays_including_each_other_are_each_a_build_error_naming_the_cycle(tmp_path):
    root = write(tmp_path, {
        "overlays/production/a/kustomization.yaml": "resources:\n- ../../../base\n- ../b\n",
        "overlays/production/b/kustomization.yaml": "resources:\n- ../a\n",
        "base/kustomization.yaml": "resources:\n- cm.yaml\n", "base/cm.yaml": CONFIGMAP.format(name="cm"),
    })
    model = RepoModel(RepoTree(root))
    assert [t.path for t in model.targets] == ["overlays/production/a", "overlays/production/b"]
    renderer = Renderer(model, cache=DiskCache(None))
    a, b = (renderer.render(t).error for t in model.targets)
    assert a.message == ("cycle: overlays/production/a → overlays/production/b → overlays/production/a "
                         "(a kustomization cannot include itself)")
    assert (a.file, a.line) == ("overlays/production/b/kustomization.yaml", 2)
    assert b.message == ("cycle: overlays/production/b → overlays/production/a → overlays/production/b "
                         "(a kustomization cannot include itself)")
    assert (b.file, b.line) == ("overlays/production/a/kustomization.yaml", 3)


def test_an_overlay_including_a_cycle_is_the_one_target_and_names_it(tmp_path):
    root = write(tmp_path, {
        "overlays/production/kustomization.yaml": "resources:\n- ../../parts/a\n",
        "parts/a/kustomization.yaml": "resources:\n- ../b\n",
        "parts/b/kustomization.yaml": "resources:\n- ../a\n",
    })
    model = RepoModel(RepoTree(root))
    assert [t.path for t in model.targets] == ["overlays/production"]
    err = Renderer(model, cache=DiskCache(None)).render(model.targets[0]).error
    assert err.message.startswith("cycle: parts/a → parts/b → parts/a")
    assert (err.file, err.line) == ("parts/b/kustomization.yaml", 2)


def test_a_flux_path_in_a_cycle_is_a_build_error_naming_it(tmp_path):
    root = write(tmp_path, {
        "clusters/production/apps.yaml": FLUX.format(path="apps/production"),
        "apps/production/kustomization.yaml": "resources:\n- cm.yaml\n- ../shared\n",
        "apps/production/cm.yaml": CONFIGMAP.format(name="cm"),
        "apps/shared/kustomization.yaml": "resources:\n- ../production\n",
    })
    res = subprocess.run([sys.executable, "-m", "bot", "check", str(root), "--format", "json"], capture_output=True,
                         text=True, cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO),
                                                       "HOME": str(tmp_path), "INFRA_REVIEW_CACHE": str(tmp_path / "c")})
    doc = json.loads(res.stdout)
    assert [(t["path"], t["status"]) for t in doc["targets"]] == [("apps/production", "error")]
    [err] = [f for f in doc["findings"] if f["rule"] == "build-error"]
    assert "cycle: apps/production → apps/shared → apps/production" in err["message"]
    assert (err["file"], err["line"]) == ("apps/shared/kustomization.yaml", 2)
    assert res.returncode == 1


def test_a_kustomization_including_itself_is_a_cycle(tmp_path):
    root = write(tmp_path, {"overlays/production/kustomization.yaml": "resources:\n- cm.yaml\n- .\n",
                            "overlays/production/cm.yaml": CONFIGMAP.format(name="cm")})
    model = RepoModel(RepoTree(root))
    err = Renderer(model, cache=DiskCache(None)).render(model.targets[0]).error
    assert err.message.startswith("cycle: overlays/production → overlays/production")
    assert (err.file, err.line) == ("overlays/production/kustomization.yaml", 3)
