"""direct-apply: changes that bypass Flux (repo scope)."""

from __future__ import annotations

import posixpath
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from bot.model import Finding, Suggestion, Target, as_dict
from bot.repo.environments import DEFAULT_ALIASES, env_from_path
from bot.yamlpos import YamlError
from rules.base import Rule, example, per_env
from rules.repo_checks import RepoScope, repo_finding, where

SCRIPT_SUFFIXES = (".sh", ".bash", ".mk")
SCRIPT_NAMES = frozenset({"Makefile", "makefile", "GNUmakefile", "Justfile", "justfile", "Taskfile.yml",
                          "Taskfile.yaml", "Jenkinsfile", ".gitlab-ci.yml", "azure-pipelines.yml"})
CI_PATHS = re.compile(r"^(?:\.github/workflows/[^/]+\.ya?ml|\.circleci/config\.ya?ml|\.gitlab/ci/.+\.ya?ml|"
                      r"\.forgejo/workflows/[^/]+\.ya?ml|\.gitea/workflows/[^/]+\.ya?ml)$")
MUTATING = {
    "kubectl": frozenset({"apply", "create", "replace", "patch", "edit", "delete", "scale", "set"}),
    "helm": frozenset({"install", "upgrade"}),
}
# Global flags that take their value as the next word (`kubectl --context prod apply`).
VALUE_FLAGS = frozenset({"-n", "--namespace", "--context", "--kube-context", "--kubeconfig", "--cluster", "--user",
                         "-s", "--server", "--token", "--as", "--kube-apiserver", "--kube-token", "--kube-as-user",
                         "--registry-config", "--repository-config"})
TOOL = re.compile(r"(?<![\w.$-])(?:(kubectl|helm)|\$\{?\(?(KUBECTL|HELM)\)?\}?)(?=\s)")
SEPARATORS = re.compile(r"\|\|?|&&|;|\)|`|\$\(")
PRODUCTION = re.compile(r"(?i)(?<![a-z0-9])(?<!non-)(?<!non_)(?:prod|production|prd)(?![a-z])")
# `key: value` lines of a script or workflow; possessive, so a long line costs linear time.
SETTING = re.compile(r"(?m)^[ \t]*+(?:-[ \t]*+)?([\w-]++)[ \t]*+[:=][ \t]*+[\"']?([\w./-]*+)")
TARGET_KEY = re.compile(r"(?i)environment|context|cluster")
THROWAWAY_CLUSTER = re.compile(
    r"\b(?:kind\s+create\s+cluster|k3d\s+cluster\s+create|minikube\s+start|ctlptl\s+create\s+cluster)\b"
    r"|uses:\s*['\"]?(?:helm/kind-action|helm/chart-testing-action|AbsaOSS/k3d-action|medyagh/setup-minikube|"
    r"engineerd/setup-kind|nolar/setup-k3d-k3s|container-tools/kind-action)@", re.IGNORECASE)
PRODUCTION_WORD = re.compile(r"(?i)(?<![a-z0-9])(?:prod|production|prd)(?![a-z])")


def targets_production(text: str) -> bool:
    """A setting whose key names an environment, context or cluster, and whose value names production."""
    return any(TARGET_KEY.search(m.group(1)) and PRODUCTION_WORD.search(m.group(2)) for m in SETTING.finditer(text))


def is_script_or_ci(rel: str) -> bool:
    name = posixpath.basename(rel)
    return name in SCRIPT_NAMES or name.endswith(SCRIPT_SUFFIXES) or bool(CI_PATHS.match(rel))


@dataclass(frozen=True)
class Command:
    line: int
    tool: str
    verb: str
    text: str  # the invocation, whitespace collapsed, up to the next shell separator


def _uncomment(text: str) -> str:
    stripped = text.lstrip()
    if stripped.startswith(("#", "//")):
        return ""
    return re.split(r"\s#", text, maxsplit=1)[0]


def logical_lines(lines: list[str]) -> Iterator[tuple[int, str]]:
    """(first line number, text) with `\\`-continued lines joined and comments dropped."""
    start, buf = 0, list[str]()
    for i, raw in enumerate(lines, 1):
        text = _uncomment(raw)
        if not buf:
            start = i
        if text.rstrip().endswith("\\"):
            buf.append(text.rstrip()[:-1])
            continue
        buf.append(text)
        yield start, " ".join(buf)
        buf = []
    if buf:
        yield start, " ".join(buf)


def mutating_commands(lines: list[str]) -> Iterator[Command]:
    """Invocations of kubectl/helm in shell-ish text that change the cluster (dry runs excluded)."""
    for number, text in logical_lines(lines):
        for m in TOOL.finditer(text):
            tool = (m.group(1) or m.group(2)).lower()
            rest = text[m.end():]
            sep = SEPARATORS.search(rest)
            words = (rest[: sep.start()] if sep else rest).split()
            verb, skip = None, False
            for word in words:
                if skip:
                    skip = False
                    continue
                if word.startswith("-"):
                    skip = word in VALUE_FLAGS
                    continue
                verb = word.strip("\"'")
                break
            if verb not in MUTATING[tool]:
                continue
            if any(w == "--dry-run" or (w.startswith("--dry-run=") and w != "--dry-run=none") for w in words):
                continue
            invocation = " ".join([tool, *words])
            yield Command(number, tool, verb, invocation[:200])


def _named_environment(text: str, scope: RepoScope) -> str | None:
    if PRODUCTION.search(text):
        return "production"
    for word in re.split(r"[^\w-]+", text):
        env = env_from_path(word.lower(), {**DEFAULT_ALIASES, **scope.config.aliases})
        if env:
            return env
    return None


def jobs(scope: RepoScope, rel: str, lines: list[str]) -> list[tuple[int, int]]:
    """The line spans of a CI file's jobs (GitHub, Forgejo and Gitea `jobs:`; GitLab's top-level
    keys), or the whole file for a script."""
    whole = [(1, len(lines))]
    if not rel.endswith((".yml", ".yaml")) or posixpath.basename(rel).startswith("Taskfile"):
        return whole
    try:
        docs = scope.model.tree.docs(rel)
    except YamlError:
        return whole
    data = as_dict(docs[0].data) if len(docs) == 1 else {}
    base: tuple[str, ...] = ("jobs",) if isinstance(data.get("jobs"), dict) else ()
    block = as_dict(data.get("jobs")) if base else data
    spans = [docs[0].spans.get((*base, key)) for key, job in block.items() if isinstance(job, dict)]
    return [s for s in spans if s] or whole


def throwaway(lines: list[str]) -> bool:
    """Whether these lines create the cluster they then apply to (kind, k3d, minikube, and the
    actions that wrap them): that cluster lives for the job, it is not one Flux manages."""
    return any(THROWAWAY_CLUSTER.search(line) for line in lines)


def script_findings(scope: RepoScope, rule: Rule) -> Iterator[Finding]:
    for rel in scope.model.tree.files:
        if not is_script_or_ci(rel) or not scope.is_changed(rel) or scope.config.is_ignored(rel):
            continue
        lines = scope.model.tree.lines(rel)
        file_env = "production" if (PRODUCTION.search(rel) or targets_production("\n".join(lines))) \
            else None
        scratch = [(a, b) for a, b in jobs(scope, rel, lines) if throwaway(lines[a - 1:b])]
        seen: Counter[str] = Counter()
        for cmd in mutating_commands(lines):
            if any(a <= cmd.line <= b for a, b in scratch):
                continue
            seen[cmd.text] += 1
            named = _named_environment(cmd.text, scope) or scope.environment(rel, fallback=False)
            production = named == "production" or file_env == "production"
            environment = "production" if production else (named or scope.environment(rel))
            severity = scope.severity(rule, environment, "error" if production else "warning")
            if severity is None:
                continue
            # Production is claimed only where the line, the file or its path names it.
            reason = ("it targets production" if production else
                      f"it runs {where(named)}" if named else "it changes whichever cluster the "
                      "runner's kubeconfig points at")
            yield repo_finding(
                rule,
                severity=severity,
                environment=environment,
                message=(f"`{rel}` line {cmd.line} runs `{cmd.tool} {cmd.verb}` against a cluster ({reason}): "
                         f"a change applied this way bypasses review and Flux, drifts from git, and is "
                         f"reverted or fought over on the next reconcile."),
                file=rel,
                line=cmd.line,
                field=cmd.text if seen[cmd.text] == 1 else f"{cmd.text} [{seen[cmd.text]}]",
                remediation=("Commit the manifest change and let Flux reconcile it (`flux reconcile kustomization "
                             "<name>` to speed it up); for checks in CI use `kubectl kustomize`, `kubectl diff` or "
                             "`--dry-run=server`."),
            )


# --- (a) overlays nobody applies ----------------------------------------------------------


def _reached_dirs(scope: RepoScope) -> set[str]:
    dirs: set[str] = set()
    for target in scope.model.targets:
        if target.flux is not None:
            dirs |= scope.model.inputs(target).dirs
    return dirs


def include_suggestion(scope: RepoScope, overlay: str, reached: set[str]) -> tuple[str, Suggestion] | None:
    """Listing the overlay in the nearest enclosing kustomization that Flux does apply."""
    parent = posixpath.dirname(overlay)
    while parent and parent != ".":
        if parent in reached:
            kfile = scope.model.tree.kustomization_file(parent)
            if kfile is None:
                return None
            try:
                (doc,) = scope.model.tree.docs(kfile)
            except (YamlError, ValueError):
                return None
            items = doc.data.get("resources") if isinstance(doc.data, dict) else None
            if not isinstance(items, list) or not items:
                return None
            span = doc.span(("resources", len(items) - 1))
            lines = scope.model.tree.lines(kfile)
            if not span or span[0] != span[1] or not 0 < span[0] <= len(lines):
                return None
            last = lines[span[0] - 1]
            m = re.match(r"^(\s*-\s+)", last)
            if not m:
                return None
            entry = posixpath.relpath(overlay, parent)
            return kfile, Suggestion(kfile, span[0], span[0], f"{last}\n{m.group(1)}{entry}")
        parent = posixpath.dirname(parent)
    return None


def overlay_findings(scope: RepoScope, rule: Rule) -> Iterator[Finding]:
    unreached: list[Target] = scope.model.unreached_overlays()
    if not unreached:
        return
    has_flux = bool(scope.model.flux_kustomizations())
    if not has_flux:
        # An app repository with overlays and no Flux objects at all (podinfo's deploy/) is applied
        # by Flux from a fleet repository we cannot see; flagging every overlay would be noise.
        return
    reached = _reached_dirs(scope)
    for target in unreached:
        kfile = scope.model.tree.kustomization_file(target.path)
        if kfile is None or scope.config.is_ignored(kfile):
            continue
        environment = scope.environment(target.path)
        severity = scope.severity(rule, environment)
        if severity is None:
            continue
        include = include_suggestion(scope, target.path, reached)
        how = (f"list it in `{include[0]}` (which Flux applies)" if include else
               "add a Flux Kustomization under `clusters/<env>/` whose `spec.path` is this overlay, or list it in an "
               "overlay that one applies")
        context = ("No Flux Kustomization in this repository reaches it" if has_flux else
                   "This repository defines no Flux Kustomization at all, so nothing in it says who applies it")
        yield repo_finding(
            rule,
            severity=severity,
            environment=environment,
            message=(f"Overlay `{target.path}` ({where(environment)}) is not applied by Flux. {context}, so it "
                     f"could only reach the cluster through a manual `kubectl apply -k`: unreviewed, and "
                     f"never reconciled or corrected by Flux. To deploy it through GitOps, {how}."),
            file=kfile,
            line=1,
            target=target.path,
            field="overlay",
            suggestion=include[1] if include else None,
            remediation=("List the overlay in a kustomization that a Flux Kustomization applies, or add a Flux "
                         "Kustomization under `clusters/<env>/` with `spec.path` pointing at it; delete it if it "
                         "is no longer deployed."),
        )


def check_repo(scope: RepoScope, rule: Rule) -> Iterator[Finding]:
    yield from overlay_findings(scope, rule)
    yield from script_findings(scope, rule)


RULE = Rule(
    id="direct-apply",
    title="Change applied outside GitOps",
    rationale=(
        "Flux reconciles the cluster to git; anything applied by hand drifts, is undone on the next "
        "reconcile or, worse, is never reviewed. Error in production and staging, warning in development."
    ),
    remediation="Reach the overlay from a Flux `Kustomization` under `clusters/<env>/`, and replace "
    "`kubectl apply`/`helm upgrade` in scripts and CI with a commit that Flux reconciles.",
    severity=per_env("error", "error", "warning"),
    scope="repo",
    check_repo=check_repo,
    edge_cases=(
        "(a) an overlay under `overlays/<env>/` that no Flux Kustomization reaches; a repository that defines "
        "no Flux Kustomization at all (an app repository whose overlays a fleet repository applies, like "
        "podinfo's `deploy/`) is not judged.",
        "(b) a changed script, Makefile or CI workflow line running `kubectl apply/create/replace/patch/edit/"
        "delete/scale/set` or `helm install/upgrade` against the cluster: error where it names production, "
        "warning otherwise.",
        "(b) `--dry-run` (client or server), `kubectl kustomize`/`diff`/`get`/`wait`, `helm template`/`lint` and "
        "commented-out lines are not flagged; `--dry-run=none` is a real apply.",
        "(b) production is named by the line (`--context prod-eu`, `overlays/production`), the file's path, "
        "or a setting in the file such as a workflow's `environment: production`.",
        "(b) a CI job or script that creates its own throwaway cluster (`kind create cluster`, `k3d cluster "
        "create`, `minikube start`, `helm/kind-action`, `helm/chart-testing-action`, …) applies to that cluster, "
        "not to one Flux manages: its commands are not findings (judged per job in a CI workflow).",
    ),
    example=example(
        {".github/workflows/deploy.yaml": """\
            on: push
            jobs:
              deploy:
                runs-on: ubuntu-latest
                steps:
                  - uses: actions/checkout@v4
                  - run: kubectl apply -k overlays/production  #-
                  - run: kubectl diff -k overlays/production  #+
            """,
         "overlays/production/kustomization.yaml": """\
            configMapGenerator:
              - name: web
                literals: [LOG_LEVEL=info]
            """},
        note="CI only shows what the commit changes (`kubectl diff`); Flux applies it.",
    ),
)
