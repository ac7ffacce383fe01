"""Figures for the closing note: per corpus repository, targets found and built, the time to discover
and build every target cold (empty cache directory) and warm (the same directory again), and
affected() precision/recall by brute force. A benchmark that prints; not a test.

Usage: python -m bench.corpus [--sample N] [--no-affected] [--synthetic N] [--repo NAME ...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.bruteforce import Summary, check_mutations, sample_files
from bench.generate import generate
from bot.render.build import DiskCache, Renderer
from bot.render.kustomize import find_kustomize
from bot.repo.discover import RepoModel
from bot.repo.tree import RepoTree

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "gitops"
LARGEST = "onedr0p__home-ops"


@dataclass
class Timing:
    files: int
    targets: int
    ok: int
    failed: int
    cold: float
    warm: float
    warm_cached: int


def _discover_and_build(root: Path, cache_dir: Path) -> tuple[float, RepoModel, list]:
    start = time.perf_counter()
    model = RepoModel(RepoTree(root))
    rendered = Renderer(model, cache=DiskCache(cache_dir)).render_all(model.targets)
    return time.perf_counter() - start, model, rendered


def measure(root: Path) -> Timing:
    """Discover + build every target twice with one cache directory: empty, then filled."""
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp:
        cold, model, rendered = _discover_and_build(root, Path(tmp))
        warm, _model, again = _discover_and_build(root, Path(tmp))
    ok = sum(r.ok for r in rendered)
    return Timing(len(model.tree.files), len(model.targets), ok, len(rendered) - ok, cold, warm,
                  sum(r.cached for r in again))


def affected_figures(root: Path, sample: int) -> Summary:
    model = RepoModel(RepoTree(root))
    files = sample_files(model, sample)
    cache = DiskCache(None)
    with tempfile.TemporaryDirectory(prefix="bench-affected-") as tmp:
        summary = check_mutations(root, files, ("delete", "change"), Path(tmp), cache)
        renames = check_mutations(root, [f for f in files if f[1] != "unread"][:5], ("rename",), Path(tmp), cache)
    summary.outcomes += renames.outcomes
    return summary


def _row(name: str, t: Timing, s: Summary | None) -> str:
    text = (f"{name:40} {t.files:6} {t.targets:7} {t.ok:5} {t.failed:6} {t.cold:8.2f}s {t.warm:7.2f}s"
            f" {t.warm_cached:4}/{t.targets:<4}")
    if s is not None:
        truth = sum(len(o.truth) for o in s.outcomes)
        text += f" {len(s.outcomes):5} {truth:6} {s.recall:7.3f} {s.precision:9.3f}"
    return text


HEADER = (f"{'repository':40} {'files':>6} {'targets':>7} {'ok':>5} {'failed':>6} {'cold':>9} {'warm':>8}"
          f" {'cached':>9} {'muts':>5} {'truth':>6} {'recall':>7} {'precision':>9}")


def run(repos: list[str], sample: int, with_affected: bool, synthetic: int | None) -> int:
    print(f"renderer: {find_kustomize()}")
    print(HEADER)
    all_outcomes: list = []
    timings: dict[str, Timing] = {}
    for name in repos:
        root = CORPUS / name
        timing = measure(root)
        summary = affected_figures(root, sample) if with_affected else None
        if summary:
            all_outcomes += summary.outcomes
        timings[name] = timing
        print(_row(name, timing, summary), flush=True)
        if summary:
            for o in summary.outcomes:
                if o.missed:
                    print(f"    MISSED {o.mutation} {o.file}: {sorted(o.missed)}")
    if all_outcomes:
        total = Summary(all_outcomes)
        print(f"affected() over the corpus: {len(all_outcomes)} mutations, recall {total.recall:.3f} "
              f"(original model alone {total.recall_base_only:.3f}), precision {total.precision:.3f}, "
              f"exact {total.exact}/{len(all_outcomes)}")
    if LARGEST in timings:
        t = timings[LARGEST]
        print(f"\n*** {LARGEST}: {t.targets} targets ({t.ok} built, {t.failed} failed): discover + build "
              f"cold {t.cold:.2f}s, warm {t.warm:.2f}s ({t.warm_cached} from cache) ***")
    if synthetic:
        with tempfile.TemporaryDirectory(prefix="bench-synthetic-") as tmp:
            generate(synthetic, Path(tmp))
            t = measure(Path(tmp))
            print(f"\nsynthetic {synthetic} services x 3 environments: {t.files} files, {t.targets} targets "
                  f"({t.ok} built, {t.failed} failed): cold {t.cold:.2f}s, warm {t.warm:.2f}s "
                  f"({t.warm_cached} from cache)")
            if with_affected:
                s = affected_figures(Path(tmp), min(sample, 10))
                print(f"synthetic affected(): {len(s.outcomes)} mutations, recall {s.recall:.3f}, "
                      f"precision {s.precision:.3f}")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.corpus", description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=25, help="files mutated per repository")
    parser.add_argument("--no-affected", action="store_true", help="skip the affected() brute force")
    parser.add_argument("--synthetic", type=int, metavar="N", help="also measure a generated N-service repo")
    parser.add_argument("--repo", action="append", help="only these corpus repositories")
    parser.add_argument("--no-corpus", action="store_true", help="only the synthetic repository")
    args = parser.parse_args(argv)
    repos = [] if args.no_corpus else (args.repo or sorted(p.name for p in CORPUS.iterdir() if p.is_dir()))
    return run(repos, args.sample, not args.no_affected, args.synthetic)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
