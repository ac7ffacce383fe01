"""What the CLI shows a person at a terminal, and never anywhere else: colour and a progress line."""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from typing import TextIO

COLOR_CHOICES = ("auto", "always", "never")


def use_colour(choice: str, stream: TextIO, environ: Mapping[str, str]) -> bool:
    """`--color`: `always` and `never` are obeyed; `auto` colours a terminal unless `NO_COLOR` is set
    (no-color.org: any non-empty value) or `TERM=dumb`."""
    if choice != "auto":
        return choice == "always"
    if environ.get("NO_COLOR") or environ.get("TERM") == "dumb":
        return False
    return stream.isatty()


def shows_progress(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """A progress line only on an interactive terminal: never in redirected output or a CI log."""
    return stream.isatty() and not environ.get("CI") and environ.get("TERM") != "dumb"


class StatusLine:
    """One line on a terminal, rewritten in place (`rendered 12/78  kubernetes/apps/...`), cleared at
    the end so the report that follows starts on a clean line."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.shown = False

    def target(self, path: str, done: int, total: int) -> None:
        width = shutil.get_terminal_size((100, 24)).columns - 1
        text = f"rendered {done}/{total}  {path}"
        if len(text) > width:
            text = text[: max(0, width - 1)] + "…"
        self.stream.write("\r\x1b[K" + text)
        self.stream.flush()
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.shown = False


class Watch:
    """A command's run as a person sees it: the progress line while it works (on a terminal only) and,
    with `--verbose`, the time each stage took, both on `stream` (stderr), never in the report."""

    def __init__(self, stream: TextIO, environ: Mapping[str, str], verbose: bool) -> None:
        from bot.review.progress import Progress

        self.status = StatusLine(stream)
        self.progress = Progress(on_target=self.status.target if shows_progress(stream, environ) else None)
        self.stream = stream
        self.verbose = verbose
        self.started = time.perf_counter()

    def finish(self) -> None:
        from bot.review.progress import format_timings

        self.status.clear()
        if self.verbose:
            lines = format_timings(self.progress.timings, time.perf_counter() - self.started)
            self.stream.write("\n".join(["time per stage:", *lines]) + "\n")
