"""The performance figures of issue 15, against their targets, on generated seed-shaped repositories
of N services × 3 environments. A benchmark that prints (and writes bench/RESULTS.md with --write);
`make bench` runs it. Not a test.

Per N:
- floor: the sum of one-by-one `kubectl kustomize` builds of every target, as the binary runs by
  default, divided by the cores (measured in the same run, so the machine's speed cancels out);
- floor with the check's Go settings: the same, each build run with the collector settings the
  check gives its builds (bot.render.kustomize.BUILD_GC), so the cold check's own overhead shows;
- bare builds in parallel: the builds with those settings, as many at a time as there are cores,
  and nothing else (the cold check is compared with it too);
- cold `check`: a whole-repository check with an empty render cache, as a child process (its wall
  time and peak RSS);
- warm `check` after one production patch changed: the same cache, one file edited;
- rules + provenance + output: the `rules` stage of a warm check that judges every environment (no
  verdict reused) plus rendering its JSON report;
- Helm: 100 HelmReleases of one local chart, the `render (helm)` stage cold and from the cache.
Each figure is the median of `--runs` runs, with min and max.

Usage: python -m bench.perf [--services 100 300] [--runs 3] [--write]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from bench.generate import generate
from bot.config import Config
from bot.diskcache import BoundedFolder
from bot.process import collect_less
from bot.publish.jsonout import render_json
from bot.render.build import DiskCache
from bot.render.kustomize import BUILD_GC, find_kustomize
from bot.repo.discover import RepoModel
from bot.repo.tree import RepoTree
from bot.review.pipeline import run_check
from bot.review.progress import Progress

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
NOTES = "<!-- written by hand below: kept when the table is rewritten -->\n"
CORES = os.cpu_count() or 1


@dataclass
class Figure:
    name: str
    target: str
    values: list[float] = field(default_factory=list)
    unit: str = "s"

    def row(self) -> str:
        if not self.values:
            return f"| {self.name} | — | — | — | {self.target} |"
        fmt = (lambda v: f"{v:.3g}") if self.unit != "MiB" else (lambda v: f"{v:.0f}")
        med = statistics.median(self.values)
        return (f"| {self.name} | {fmt(med)} {self.unit} | {fmt(min(self.values))} | {fmt(max(self.values))} "
                f"| {self.target} |")


def child(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of a child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - start, usage.ru_maxrss / 1024


def check_env(cache: Path) -> dict[str, str]:
    return {**os.environ, "INFRA_REVIEW_CACHE": str(cache), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}


def floor(root: Path, env: dict[str, str] | None = None) -> float:
    """Sum of one-by-one builds of every target's folder ÷ cores; `env` over this environment."""
    kustomize = find_kustomize()
    model = RepoModel(RepoTree(root))
    total = 0.0
    for target in model.targets:
        start = time.perf_counter()
        subprocess.run([*kustomize.argv, str(root / target.path)], capture_output=True, check=False,
                       env={**os.environ, **(env or {})})
        total += time.perf_counter() - start
    return total / CORES


def parallel(root: Path) -> float:
    """Wall seconds of the builds, with the check's Go settings, run `CORES` at a time and nothing
    else: what a check would take if it did nothing but build."""
    kustomize = find_kustomize()
    targets = RepoModel(RepoTree(root)).targets
    env = {**os.environ, **BUILD_GC}
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=CORES) as pool:
        list(pool.map(lambda t: subprocess.run([*kustomize.argv, str(root / t.path)], capture_output=True,
                                               check=False, env=env), targets))
    return time.perf_counter() - start


def one_patch(root: Path, n: int) -> None:
    patch = sorted(root.glob("overlays/production/*/patch-deployment.yaml"))[n % 7]
    patch.write_text(patch.read_text() + f"# edit {n}\n")


def measure(services: int, runs: int) -> list[Figure]:
    figures = {key: Figure(spec[0], spec[1], unit=spec[2] if len(spec) > 2 else "s") for key, spec in {
        "floor": (f"floor (one-by-one builds ÷ {CORES} cores), N={services}", "—"),
        "floor_gc": (f"floor with the check's Go settings, N={services}", "—"),
        "cold": (f"cold `check`, N={services}", "≤ 1.10 × floor"),
        "parallel": (f"bare builds {CORES} at a time ÷ floor, N={services}", "—", "×"),
        "ratio": (f"cold ÷ floor, N={services}", "≤ 1.10", "×"),
        "ratio_gc": (f"cold ÷ floor with the check's Go settings, N={services}", "—", "×"),
        "over": (f"cold ÷ bare builds {CORES} at a time, N={services}", "—", "×"),
        "warm": (f"warm `check` after one patch, N={services}", "< 1 s" if services <= 100 else "< 2 s"),
        "rules": (f"rules + provenance + output, N={services}", "< 1.5 s (N=300)"),
        "rss": (f"peak RSS of a cold `check`, N={services}", "< 256 MiB", "MiB"),
    }.items()}
    for run in range(runs):
        with tempfile.TemporaryDirectory(prefix="infra-review-perf-") as tmp:
            root = Path(tmp) / "repo"
            generate(services, root)
            subprocess.run(["git", "init", "-q", str(root)], check=True)
            cache = Path(tmp) / "cache"
            figures["floor"].values.append(floor(root))
            figures["floor_gc"].values.append(floor(root, BUILD_GC))
            bare = parallel(root)
            figures["parallel"].values.append(bare / figures["floor"].values[-1])
            command = [sys.executable, "-m", "bot", "check", str(root), "--offline", "--format", "json"]
            seconds, rss = child(command, check_env(cache))
            figures["cold"].values.append(seconds)
            figures["rss"].values.append(rss)
            figures["ratio"].values.append(seconds / figures["floor"].values[-1])
            figures["ratio_gc"].values.append(seconds / figures["floor_gc"].values[-1])
            figures["over"].values.append(seconds / bare)
            one_patch(root, run)
            figures["warm"].values.append(child(command, check_env(cache))[0])
            progress = Progress()
            config = replace(Config.default(), fetch_enabled=False)
            every = DiskCache(cache)
            every.verdicts = BoundedFolder(None, ".json", 0, 0)  # every environment judged, none reused
            report = run_check(root, None, config, cache=every, progress=progress)
            start = time.perf_counter()
            render_json(report)
            figures["rules"].values.append(progress.timings.get("rules", 0.0) + time.perf_counter() - start)
        print(f"N={services} run {run + 1}/{runs}: " + ", ".join(
            f"{k} {f.values[-1]:.2f}" for k, f in figures.items()), flush=True)
    return list(figures.values())


RELEASES = 100


def helm_repository(root: Path, releases: int = RELEASES) -> None:
    """One local chart (a Deployment, a Service, a ConfigMap) and `releases` HelmReleases of it in one
    production overlay, sourced from this repository as Flux's bootstrap GitRepository."""
    files = {
        "charts/app/Chart.yaml": "apiVersion: v2\nname: app\nversion: 1.0.0\n",
        "charts/app/values.yaml": "replicas: 3\nimage: ghcr.io/example/app:1.0.0\n",
        "charts/app/templates/all.yaml": (
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: '{{ .Release.Name }}'}\nspec:\n"
            "  replicas: {{ .Values.replicas }}\n  selector: {matchLabels: {app: '{{ .Release.Name }}'}}\n"
            "  template:\n    metadata: {labels: {app: '{{ .Release.Name }}'}}\n    spec:\n      containers:\n"
            "      - {name: app, image: '{{ .Values.image }}'}\n---\napiVersion: v1\nkind: Service\n"
            "metadata: {name: '{{ .Release.Name }}'}\nspec: {selector: {app: '{{ .Release.Name }}'}, ports: [{port: 80}]}\n"
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: '{{ .Release.Name }}'}\n"
            "data: {release: '{{ .Release.Name }}'}\n"),
        "overlays/production/kustomization.yaml": "resources:\n" + "".join(
            f"- release-{i:03d}.yaml\n" for i in range(releases)),
    }
    for i in range(releases):
        files[f"overlays/production/release-{i:03d}.yaml"] = (
            f"apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata: {{name: app-{i:03d}, namespace: apps}}\n"
            "spec:\n  interval: 10m\n  chart:\n    spec:\n      chart: ./charts/app\n      sourceRef: "
            "{kind: GitRepository, name: flux-system, namespace: flux-system}\n"
            f"  values: {{replicas: {3 + i % 2}}}\n")
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def measure_helm(runs: int) -> list[Figure]:
    """The `render (helm)` stage for RELEASES releases of one chart: cold, and again from the cache."""
    cold = Figure(f"Helm: {RELEASES} releases of one chart, cold", "< 3 s")
    warm = Figure("Helm: one release from the cache", "< 50 ms", unit="ms")
    config = replace(Config.default(), fetch_enabled=False)
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="infra-review-helm-") as tmp:
            root = Path(tmp) / "repo"
            helm_repository(root)
            for figure, scale in ((cold, 1.0), (warm, 1000.0 / RELEASES)):
                progress = Progress()
                cache = DiskCache(Path(tmp) / "cache")
                cache.verdicts = BoundedFolder(None, ".json", 0, 0)  # rendered again, not reused as a verdict
                report = run_check(root, None, config, cache=cache, progress=progress)
                figure.values.append(progress.timings.get("render (helm)", 0.0) * scale)
            assert not [f for f in report.findings if f.rule in ("chart-error", "chart-unavailable")], "all rendered"
        print(f"Helm: cold {cold.values[-1]:.2f} s, from the cache {warm.values[-1]:.1f} ms per release", flush=True)
    return [cold, warm]


def machine() -> str:
    kustomize = find_kustomize()
    mem = "?"
    try:
        mem = f"{int(Path('/proc/meminfo').read_text().split()[1]) / 2**20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return (f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {CORES} cores, {mem} memory, Python "
            f"{platform.python_version()}, Kustomize {kustomize.version}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, nargs="*", default=[100, 300])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--write", action="store_true", help=f"write {RESULTS.name}")
    parser.add_argument("--no-helm", dest="helm", action="store_false", help="leave the Helm figures out")
    args = parser.parse_args()
    if shutil.which("git") is None:
        sys.exit("bench.perf needs git on PATH")
    collect_less()  # the in-process figures run what `check` runs, so with its collector settings
    rows: list[Figure] = []
    for n in args.services:
        rows += measure(n, args.runs)
    if args.helm:
        rows += measure_helm(args.runs)
    table = ["| figure | median | min | max | target |", "|---|---|---|---|---|", *(f.row() for f in rows)]
    text = "\n".join([f"Measured {machine()}; {args.runs} runs each.", "", *table])
    print("\n" + text)
    if args.write:
        kept = RESULTS.read_text().partition(NOTES)[2] if RESULTS.exists() else ""
        RESULTS.write_text(f"# Performance figures (`make bench`)\n\n{text}\n\n{NOTES}{kept or chr(10)}")


if __name__ == "__main__":
    main()
