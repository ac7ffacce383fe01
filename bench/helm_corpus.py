"""Figures for issue 10: per corpus repository, the HelmReleases that the rendered targets hold and what
became of them (rendered, chart unavailable and why, Flux would fail, suspended), the findings per rule
that chart output added, and the time Helm adds to a whole-repository check. Offline by default (the
corpus holds YAML only; charts from chart repositories and registries are `chart-unavailable`);
`--online` fetches them through the policed fetcher. With no network, `--serve-corpus-charts` serves the
charts the corpus itself holds (podinfo's) from a loopback chart repository and points every http(s)
HelmRepository of a copy of each repository at it, so the releases of those charts render as they would
online (the others are then "not found"). A benchmark that prints; not a test.

Usage: python -m bench.helm_corpus [--online | --serve-corpus-charts] [--repo NAME ...]
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


class CorpusCharts:
    """Every chart folder of the corpus, packaged and indexed, served on loopback."""

    def __init__(self, workdir: Path):
        import functools
        import http.server
        import threading

        import helm_python
        from helm_python.registry import repo_index_generate

        served = workdir / "served"
        served.mkdir()
        for chart in sorted(CORPUS.glob("*/charts/*/Chart.yaml")):
            helm_python.package(chart.parent, destination=served)
        repo_index_generate(served)

        class Quiet(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(served)))
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def copy(self, root: Path, workdir: Path) -> Path:
        """A copy of the repository whose http(s) HelmRepositories all point here."""
        import re
        import shutil

        dest = workdir / root.name
        shutil.copytree(root, dest, symlinks=True)
        for path in dest.rglob("*.y*ml"):
            text = path.read_text(errors="replace")
            if "kind: HelmRepository" in text and "type: oci" not in text:
                path.write_text(re.sub(r"(?m)^(\s*url:\s*)['\"]?https?://\S+?['\"]?\s*$", rf"\g<1>{self.url}", text))
        return dest


def measure(root: Path, online: bool, allow: tuple[str, ...] = ()) -> dict:
    config = replace(Config.default(), fetch_enabled=online, fetch_allow=allow)
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
    parser.add_argument("--serve-corpus-charts", action="store_true",
                        help="serve the corpus's own charts on loopback in place of every chart repository")
    parser.add_argument("--repo", action="append", help="only these corpus repositories")
    args = parser.parse_args(argv)
    import tempfile

    workdir = Path(tempfile.mkdtemp(prefix="bench-helm-"))
    served = CorpusCharts(workdir) if args.serve_corpus_charts else None
    if not CORPUS.is_dir():
        print(f"no corpus at {CORPUS}", file=sys.stderr)
        return 2
    repos = sorted(p for p in CORPUS.iterdir() if p.is_dir() and (not args.repo or p.name in args.repo))
    print("| repository | HelmReleases | rendered | unavailable (why) | error | suspended | objects | Helm s | check s |"
          " findings added by chart output |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for root in repos:
        if served is not None:
            m = measure(served.copy(root, workdir), True, (served.url,))
        else:
            m = measure(root, args.online)
        s = m["statuses"]
        why = ", ".join(f"{n} {k}" for k, n in m["reasons"].most_common()) or "-"
        added = ", ".join(f"{k} {n}" for k, n in sorted(m["added"].items())) or "-"
        print(f"| {root.name} | {m['found']} | {s['rendered']} | {s['unavailable']} ({why}) | {s['error']} | "
              f"{s['suspended']} | {m['objects']} | {m['helm_seconds']:.2f} | {m['total']:.1f} | {added} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
