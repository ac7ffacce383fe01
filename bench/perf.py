"""The performance figures of issue 15, against their targets, on generated seed-shaped repositories
of N services × 3 environments. A benchmark that prints (and writes bench/RESULTS.md with --write);
`make bench` runs it. Not a test.

Per N:
- floor: the sum of one-by-one `kustomize build` of every target, divided by the cores (measured in
  the same run, so the machine's speed cancels out);
- cold `check`: a whole-repository check with an empty render cache, as a child process (its wall
  time and peak RSS);
- warm `check` after one production patch changed: the same cache, one file edited;
- rules + provenance + output: the `rules` stage of a warm check plus rendering its JSON report.
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
from dataclasses import dataclass, field, replace
from pathlib import Path

from bench.generate import generate
from bot.config import Config
from bot.publish.jsonout import render_json
from bot.render.build import DiskCache
from bot.render.kustomize import find_kustomize
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


def floor(root: Path) -> float:
    """Sum of one-by-one builds of every target's folder ÷ cores."""
    kustomize = find_kustomize()
    model = RepoModel(RepoTree(root))
    total = 0.0
    for target in model.targets:
        start = time.perf_counter()
        subprocess.run([*kustomize.argv, str(root / target.path)], capture_output=True, check=False)
        total += time.perf_counter() - start
    return total / CORES


def one_patch(root: Path, n: int) -> None:
    patch = sorted(root.glob("overlays/production/*/patch-deployment.yaml"))[n % 7]
    patch.write_text(patch.read_text().replace("cpu:", "cpu:", 1) + f"# edit {n}\n")


def measure(services: int, runs: int) -> list[Figure]:
    figures = {key: Figure(spec[0], spec[1], unit=spec[2] if len(spec) > 2 else "s") for key, spec in {
        "floor": (f"floor (one-by-one builds ÷ {CORES} cores), N={services}", "—"),
        "cold": (f"cold `check`, N={services}", "≤ 1.10 × floor"),
        "ratio": (f"cold ÷ floor, N={services}", "≤ 1.10", "×"),
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
            command = [sys.executable, "-m", "bot", "check", str(root), "--offline", "--format", "json"]
            seconds, rss = child(command, check_env(cache))
            figures["cold"].values.append(seconds)
            figures["rss"].values.append(rss)
            figures["ratio"].values.append(seconds / figures["floor"].values[-1])
            one_patch(root, run)
            figures["warm"].values.append(child(command, check_env(cache))[0])
            progress = Progress()
            config = replace(Config.default(), fetch_enabled=False)
            report = run_check(root, None, config, cache=DiskCache(cache), progress=progress)
            start = time.perf_counter()
            render_json(report)
            figures["rules"].values.append(progress.timings.get("rules", 0.0) + time.perf_counter() - start)
        print(f"N={services} run {run + 1}/{runs}: " + ", ".join(
            f"{k} {f.values[-1]:.2f}" for k, f in figures.items()), flush=True)
    return list(figures.values())


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
    parser.add_argument("--services", type=int, nargs="+", default=[100, 300])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--write", action="store_true", help=f"write {RESULTS.name}")
    args = parser.parse_args()
    if shutil.which("git") is None:
        sys.exit("bench.perf needs git on PATH")
    rows: list[Figure] = []
    for n in args.services:
        rows += measure(n, args.runs)
    table = ["| figure | median | min | max | target |", "|---|---|---|---|---|", *(f.row() for f in rows)]
    text = "\n".join([f"Measured {machine()}; {args.runs} runs each.", "", *table])
    print("\n" + text)
    if args.write:
        kept = RESULTS.read_text().partition(NOTES)[2] if RESULTS.exists() else ""
        RESULTS.write_text(f"# Performance figures (`make bench`)\n\n{text}\n\n{NOTES}{kept or chr(10)}")


if __name__ == "__main__":
    main()
