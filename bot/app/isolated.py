"""The blocking part of a review (rendering, rules) in a child process, not a thread of the service.

In a thread it would share the service's interpreter: its Python work would hold the GIL the event
loop needs to acknowledge webhooks (measured: p99 acknowledgement 200 ms under load instead of a few),
and a render that crashes the interpreter or is killed for memory would take the service with it.
A child forked from a forkserver that has the engine imported starts in milliseconds.

Cancelling the awaiting task sends the child SIGTERM, which cancels its Deadline, so the work stops
at its next step the way it does in the CLI (builds in flight are killed by their own deadline
handling); a child that has not exited after the grace period is killed.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import multiprocessing
import os
import pickle
import signal
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, TypeVar

from bot.deadline import Deadline
from bot.process import collect_less

T = TypeVar("T")
PRELOAD = ["bot.review.pipeline", "bot.review.spans", "bot.app.review", "rules"]
STOP_GRACE = 30.0  # seconds a cancelled child gets to reach its next step before it is killed
# Reviews (and the builds they start, which inherit it) yield the CPU to the service's event loop and
# to Redis: a webhook is acknowledged within milliseconds even while every core renders. At 10, a
# loaded two-core machine still delayed the slowest acknowledgements past 50 ms (bench/RESULTS.md).
# INFRA_REVIEW_NICENESS lowers it where reviews share the machine with other work at nice 0 that
# should not starve them (the test suite's parallel workers).
NICENESS = 19


def niceness() -> int:
    """The niceness of review processes: INFRA_REVIEW_NICENESS (0 to 19), else NICENESS."""
    raw = os.environ.get("INFRA_REVIEW_NICENESS")
    if raw is None:
        return NICENESS
    if not raw.strip().isdigit() or not 0 <= int(raw) <= 19:
        raise ValueError(f"INFRA_REVIEW_NICENESS={raw!r}: expected a whole number from 0 to 19")
    return int(raw)
PR_SET_PDEATHSIG = 1

_context: Any = None


class ReviewProcessDied(Exception):
    """The child running the review ended without an answer (killed, out of memory, crashed)."""


class ReviewFailed(Exception):
    """The child's work raised an exception that cannot be sent back as itself."""


def _forkserver() -> Any:
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
    return _context


def _stop_with_the_service() -> None:
    """SIGTERM this process when its parent (the forkserver, which exits with the service) dies, so a
    killed service leaves no review running for nobody (Linux's PR_SET_PDEATHSIG; elsewhere a no-op)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _child(conn: Connection, fn: Callable[..., Any], args: tuple[Any, ...], nice: int) -> None:
    os.nice(nice)
    collect_less()
    deadline = Deadline()
    signal.signal(signal.SIGTERM, lambda *_: deadline.cancel("the review was cancelled"))
    _stop_with_the_service()
    try:
        answer: tuple[str, Any] = ("ok", fn(*args, deadline=deadline))
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent
        answer = ("error", _sendable(exc))
    try:
        try:
            conn.send(answer)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:  # a result that does not pickle
            conn.send(("error", ReviewFailed(f"{type(exc).__name__}: {exc}")))
    except OSError:  # nobody listens any more: the service is gone
        pass
    conn.close()


def _sendable(exc: BaseException) -> BaseException:
    """The exception itself if the parent can rebuild it, else its type and message in words."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - any exception that does not survive the trip
        return ReviewFailed(f"{type(exc).__name__}: {exc}")


def _describe(code: int | None) -> str:
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        hint = ": most likely out of memory" if -code == signal.SIGKILL else ""
        return f"the review's process was killed by {name}{hint}"
    return f"the review's process exited with status {code} without an answer"


async def in_process(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args, deadline=...)` in a child process; `fn` and `args` must pickle (a module-level
    function and plain data). Its exception is raised here; cancellation stops the child."""
    nice = niceness()
    ctx = _forkserver()
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn, args, nice), daemon=True)
    await asyncio.to_thread(proc.start)
    child.close()
    answer = asyncio.ensure_future(asyncio.to_thread(_receive, parent, proc))
    try:
        status, value = await asyncio.shield(answer)
    except asyncio.CancelledError:
        await asyncio.shield(asyncio.to_thread(_stop, proc))
        await asyncio.wait({answer})  # the child is gone: its pipe has answered or closed
        raise
    finally:
        if answer.done():
            parent.close()
    await asyncio.to_thread(proc.join)
    if status == "died":
        raise ReviewProcessDied(_describe(proc.exitcode))
    if status == "error":
        raise value
    return value


def _receive(conn: Connection, proc: Any) -> tuple[str, Any]:
    try:
        status, value = conn.recv()
        return status, value
    except EOFError:
        proc.join()
        return "died", None


def _stop(proc: Any) -> None:
    if proc.is_alive() and proc.pid is not None:
        os.kill(proc.pid, signal.SIGTERM)
        proc.join(STOP_GRACE)
    if proc.is_alive():
        proc.kill()
        proc.join()
