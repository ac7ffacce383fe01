"""Figures for issue 10: per corpus repository, the HelmReleases that the rendered targets hold and what
became of them (rendered, chart unavailable and why, Flux would fail, suspended), the findings per rule
that chart output added, and the time Helm adds to a whole-repository check. Offline by default (the
corpus holds YAML only; charts from chart repositories and registries are `chart-unavailable`);
`--online` fetches them through the policed fetcher. A benchmark that prints; not a test.

Usage: python -m bench.helm_corpus [--online] [--repo NAME ...]
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from dataclasses import replace
from pathlib import Path

from bench.corpus import CORPUS
from bot.config import Config
from bot.deadline import Deadline
from bot.render.build import DiskCache
from bot.review.pipeline import check_repository, make_model


def measure(root: Path, online: bool) -> dict:
    config = replace(Config.default(), fetch_enabled=online)
    model = make_model(root, config)
    cache = DiskCache(None)
    started = time.perf_counter()
    side = check_repository(model, config, cache=cache, deadline=Deadline())
    total = time.perf_counter() - started
    statuses = collections.Counter(r.status for r in side.releases)
    reasons = collections.Counter(r.reason.split(":", 1)[0] for r in side.releases if r.status == "unavailable")
    chart_ids = {(r.target.environment, ro.id) for r in side.releases for ro in r.objects}
    added = collections.Counter(f.rule for f in side.findings
                                if (f.environment, f.resource) in chart_ids and not f.suppressed)
    added.update(f.rule for f in side.findings if f.rule in ("chart-error", "chart-unavailable", "chart-lint"))
    return {"found": len(side.releases), "statuses": statuses, "reasons": reasons, "added": added,
            "objects": sum(len(r.objects) for r in side.releases),
            "helm_seconds": sum(r.seconds for r in side.releases), "total": total}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--online", action="store_true", help="fetch charts from chart repositories and registries")
    parser.add_argument("--repo", action="append", help="only these corpus repositories")
    args = parser.parse_args(argv)
    if not CORPUS.is_dir():
        print(f"no corpus at {CORPUS}", file=sys.stderr)
        return 2
    repos = sorted(p for p in CORPUS.iterdir() if p.is_dir() and (not args.repo or p.name in args.repo))
    print("| repository | HelmReleases | rendered | unavailable (why) | error | suspended | objects | Helm s | check s |"
          " findings added by chart output |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for root in repos:
        m = measure(root, args.online)
        s = m["statuses"]
        why = ", ".join(f"{n} {k}" for k, n in m["reasons"].most_common()) or "-"
        added = ", ".join(f"{k} {n}" for k, n in sorted(m["added"].items())) or "-"
        print(f"| {root.name} | {m['found']} | {s['rendered']} | {s['unavailable']} ({why}) | {s['error']} | "
              f"{s['suspended']} | {m['objects']} | {m['helm_seconds']:.2f} | {m['total']:.1f} | {added} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
