"""Command line: `python -m bot <command>` (also installed as `infra-review`)."""

from __future__ import annotations

import argparse
import atexit
import os
import sys
from pathlib import Path
from typing import NoReturn

from bot import __version__
from bot.process import collect_less


def _build(args: argparse.Namespace) -> int:
    from bot.cli.build import run

    return run(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="infra-review", description=__doc__)
    parser.add_argument("--version", action="version", version=f"infra-review {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="render a kustomization directory exactly as `kustomize build` does")
    b.add_argument("dir", type=Path)
    b.add_argument("--root", type=Path, help="repository root (default: enclosing git work tree, else cwd)")
    b.add_argument("--flux", action="store_true", help="apply the Flux Kustomization(s) pointing at DIR")
    b.add_argument("--origins", action="store_true", help="show the source file:line of every value")
    b.add_argument("--config", type=Path, help="config file (default: .github/infra-review.yml in the repository)")
    b.add_argument("--offline", action="store_true", help="fetch nothing: a remote resource is left out (and said)")
    b.set_defaults(func=_build)

    from bot.cli import check, demo, diff, review, rules, serve, worker

    check.add_parser(sub)
    diff.add_parser(sub)
    rules.add_parsers(sub)
    review.add_parser(sub)
    serve.add_parser(sub)
    worker.add_parser(sub)
    demo.add_parser(sub)

    args = parser.parse_args(argv)
    if argv is None and args.command in ONE_SHOT:
        collect_less()
    try:
        code = args.func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    if argv is None and args.command in ONE_SHOT:
        _leave(code)
    return code


# Commands that end once their output is written; run as a program (not main(argv) in a test), they
# collect garbage less often (bot.process) and leave without Python freeing their objects one by one.
ONE_SHOT = frozenset({"build", "check", "diff", "review"})


def _leave(code: int) -> NoReturn:
    """Exit as mypy's hard_exit does: a check holds about a million objects, and freeing them at
    interpreter teardown took a tenth of a warm check. What must happen at exit (atexit handlers and
    finalizers: our temporary folders, logging) runs first."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):  # a reader that went away; a stream already closed
            pass
    atexit._run_exitfuncs()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
