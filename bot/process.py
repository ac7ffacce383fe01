"""What a process that runs one check or review sets for itself."""

from __future__ import annotations

import gc

# Collect the youngest generation after this many allocations (Python's default: 700), and the older
# ones as rarely. A check builds about a million small objects that live until it ends, and hardly
# any form a cycle; at the default thresholds the collector walked them again and again: 0.2-0.3 s
# of a 2 s warm check at N=300 (bench/RESULTS.md), for 1 % more peak memory. mypy does the same.
THRESHOLDS = (100_000, 20, 20)


def collect_less() -> None:
    gc.set_threshold(*THRESHOLDS)
