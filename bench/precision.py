"""The precision sample of docs/precision.md: findings of `check` on the eight corpus repositories,
drawn reproducibly, for a person to classify (right, right but wrong line, false, debatable).

Every finding of a small rule (at most `--small` findings over the corpus) is taken; of a large rule,
a fixed-seed random sample of `--per-rule` findings in each repository. Prints a markdown table with the finding's id, rule, environment, place and message,
and the counts per rule. Not a test: the classification is read, not computed.

Usage: python -m bench.precision [--seed N] [--per-rule N] [--small N] [--json FILE] [--corpus DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from collections import Counter
from pathlib import Path

from bot.config import Config
from bot.render.build import DiskCache
from bot.review.pipeline import run_check

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "gitops"


def findings_of(repo: Path, cache: DiskCache) -> list[dict]:
    report = run_check(repo, None, Config.default(), cache=cache)
    out = []
    for f in report.findings:
        if f.suppressed:
            continue
        row = f.to_json()
        row["repo"] = repo.name.split("__", 1)[-1]
        row["id"] = hashlib.sha256(f"{repo.name}\x1f{f.fingerprint}".encode()).hexdigest()[:8]
        out.append(row)
    return out


def sample(rows: list[dict], per_rule: int, seed: int, small: int = 20) -> list[dict]:
    """Every finding of a rule with at most `small` findings; else `per_rule` per (repository, rule) pair."""
    rng = random.Random(seed)
    totals = Counter(r["rule"] for r in rows)
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in sorted(rows, key=lambda r: r["id"]):
        groups.setdefault((row["repo"], row["rule"]), []).append(row)
    picked: list[dict] = []
    for key in sorted(groups):
        group = groups[key]
        everything = totals[key[1]] <= small or len(group) <= per_rule
        picked += group if everything else rng.sample(group, per_rule)
    return picked


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--per-rule", type=int, default=6)
    parser.add_argument("--small", type=int, default=20, help="a rule with at most this many findings is taken whole")
    parser.add_argument("--json", type=Path, help="also write every finding, sampled or not, to this file")
    parser.add_argument("--corpus", type=Path, default=CORPUS, help=f"the corpus folder (default {CORPUS})")
    args = parser.parse_args(argv)
    if not args.corpus.is_dir():
        print(f"{args.corpus} not found: the corpus is kept beside the repository (or give --corpus)", file=sys.stderr)
        return 2
    cache = DiskCache(None)
    repos = sorted(p for p in args.corpus.iterdir() if p.is_dir())
    rows = [row for repo in repos for row in findings_of(repo, cache)]
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    picked = sample(rows, args.per_rule, args.seed, args.small)
    totals = Counter(r["rule"] for r in rows)
    print(f"{len(rows)} findings, {len(picked)} sampled (seed {args.seed}: every finding of a rule with at most "
          f"{args.small}; else {args.per_rule} per repository and rule)\n")
    print("| rule | findings | sampled |\n|---|--:|--:|")
    sampled = Counter(r["rule"] for r in picked)
    for rule, n in totals.most_common():
        print(f"| `{rule}` | {n} | {sampled[rule]} |")
    print("\n| id | repo | rule | env | severity | where | message |\n|---|---|---|---|---|---|---|")
    for r in picked:
        where = f"{r['file']}:{r['line']}" if r["line"] else (r["file"] or r["target"] or "")
        message = r["message"].replace("|", "\\|").replace("\n", " ")
        print(f"| {r['id']} | {r['repo']} | `{r['rule']}` | {r['environment']} | {r['severity']} | `{where}` | "
              f"{message[:240]} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
