"""Figures for issue 11: per corpus repository, the rendered objects validated against a schema, those of
kinds without one, the invalid-manifest findings by class, and the time validation takes; then the same
for a generated seed-shaped repository of N services (3 environments), to see what validating thousands
of objects adds to a whole-repository check. A benchmark that prints; not a test.

Usage: python -m bench.schema_corpus [--services N] [--repo NAME ...]
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bench.corpus import CORPUS
from bench.generate import generate
from bot.config import Config
from bot.render.build import DiskCache
from bot.review.pipeline import check_repository, make_model
from bot.validate.problems import problems
from bot.validate.schemas import CRD, Catalog, repository_crds


def measure(root: Path) -> dict:
    config = replace(Config.default(), fetch_enabled=False)
    model = make_model(root, config)
    side = check_repository(model, config, cache=DiskCache(None))
    objects = [ro.obj for r in side.rendered if r.ok for ro in r.applied]
    crds = [o for o in objects if o.get("kind") == CRD] + repository_crds(model)
    started = time.perf_counter()
    catalog = Catalog.for_objects(config.kube_version, crds)
    validated, skipped = 0, collections.Counter()
    for obj in objects:
        if problems(catalog, obj) is None:
            skipped[str(obj.get("kind"))] += 1
        else:
            validated += 1
    seconds = time.perf_counter() - started
    classes = collections.Counter(f.message.split(": ")[-1].split(". ")[0].split(" — ")[0][-40:]
                                  for f in side.findings if f.rule == "invalid-manifest")
    return {"objects": len(objects), "validated": validated, "skipped": sum(skipped.values()),
            "skipped_kinds": len(skipped), "seconds": seconds, "classes": classes,
            "findings": sum(1 for f in side.findings if f.rule == "invalid-manifest")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=300, help="services of the generated repository")
    parser.add_argument("--repo", action="append", help="only these corpus repositories")
    args = parser.parse_args(argv)
    print("| repository | objects | validated | without a schema (kinds) | findings | validation s |")
    print("|---|---|---|---|---|---|")
    repos = sorted(p for p in CORPUS.iterdir() if p.is_dir() and (not args.repo or p.name in args.repo)) \
        if CORPUS.is_dir() else []
    for root in repos:
        m = measure(root)
        print(f"| {root.name} | {m['objects']} | {m['validated']} | {m['skipped']} ({m['skipped_kinds']}) | "
              f"{m['findings']} | {m['seconds']:.3f} |")
    with tempfile.TemporaryDirectory(prefix="bench-schema-") as tmp:
        generate(args.services, Path(tmp))
        m = measure(Path(tmp))
        print(f"| generated, {args.services} services | {m['objects']} | {m['validated']} | {m['skipped']} "
              f"({m['skipped_kinds']}) | {m['findings']} | {m['seconds']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
