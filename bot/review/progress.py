"""What a run reports while it works: targets rendered out of how many, and the time each stage took.

The pipeline only calls these hooks; what is shown, and where (a status line on a terminal's stderr,
timings with `--verbose`), is the caller's choice. The default observes nothing.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

OnTarget = Callable[[str, int, int], None]  # (target path, rendered so far, total)


@dataclass
class Progress:
    on_target: OnTarget | None = None
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds, in the order first seen
    renders: Counter[tuple[str, bool]] = field(default_factory=Counter)  # (renderer, from the cache) -> how many
    _done: int = 0
    _total: int = 0

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a stage; a stage entered twice (the head and the base side) adds up."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start

    def expect(self, targets: int) -> None:
        """More targets to render (each side of a comparison adds its own)."""
        self._total += targets

    def counted(self, renderer: str, cached: bool) -> None:
        self.renders[(renderer, cached)] += 1

    def rendered(self, target: str, cached: bool = False) -> None:
        self._done += 1
        self.counted("kustomize", cached)
        if self.on_target is not None:
            self.on_target(target, self._done, self._total)


def format_timings(timings: dict[str, float], total: float) -> list[str]:
    """`render  1.92 s` lines, the stages in the order they ran, then the whole run's time."""
    width = max([len("total")] + [len(name) for name in timings])
    lines = [f"{name:<{width}}  {seconds:6.2f} s" for name, seconds in timings.items()]
    return lines + [f"{'total':<{width}}  {total:6.2f} s"]
