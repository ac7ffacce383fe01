"""Figures for issue 13: what the rendered diff adds to a review. A generated seed-shaped repository of
N services (3 environments) is the base; the head bumps the image of every service in production and
edits one shared base's generated ConfigMap (a hash-suffix rename in every environment). Both sides are rendered whole, once without the diff and once with it; the
time of each stage and the diff's size are printed. A benchmark that prints; not a test.

Usage: python -m bench.diff_cost [--services N]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bench.generate import generate
from bot.config import Config
from bot.publish.diff import render_markdown, summary_lines
from bot.publish.github import MAX_OUTPUT_CHARS
from bot.render.build import DiskCache
from bot.review.pipeline import run_check
from bot.review.progress import Progress, format_timings


def change(head: Path) -> None:
    for kustomization in sorted(head.glob("overlays/production/*/kustomization.yaml")):
        kustomization.write_text(kustomization.read_text().replace("newTag: 1.0.", "newTag: 2.0."))
    first = sorted(head.glob("base/*/config.env"))[0]
    first.write_text(first.read_text().replace("LOG_LEVEL=info", "LOG_LEVEL=warn"))


def measure(head: Path, base: Path, diff: bool) -> tuple[Progress, float, object]:
    progress = Progress()
    start = time.perf_counter()
    report = run_check(head, base, replace(Config.default(), fetch_enabled=False), cache=DiskCache(None),
                       progress=progress, diff=diff)
    return progress, time.perf_counter() - start, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        generate(args.services, base)
        head = Path(tmp) / "head"
        shutil.copytree(base, head)
        change(head)
        for diff in (False, True):
            progress, total, report = measure(head, base, diff)
            print(f"\n{args.services} services, diff {'on' if diff else 'off'}:")
            print("\n".join("  " + line for line in format_timings(progress.timings, total)))
        changes = report.changes  # type: ignore[attr-defined]
        objects = sum(len(env.objects) for env in changes.environments)
        markdown = render_markdown(changes, MAX_OUTPUT_CHARS // 2)
        print(f"\n{objects} objects change; check-run text {len(markdown):,} characters "
              f"({markdown.count('<details>')} objects shown)")
        print("\n".join(summary_lines(changes)))


if __name__ == "__main__":
    main()
