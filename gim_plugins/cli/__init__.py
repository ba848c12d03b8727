"""The ``gim`` command (also ``python -m gim_plugins``).

Core subcommands: ``list``, ``match``, ``demo``, ``weights``. Integration subpackages add theirs through the
entry-point group ``gim_plugins.cli`` (value: a ``register(subparsers)`` callable), so the core never imports them.
Logging is configured here and only here.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Sequence
from importlib.metadata import entry_points

__all__ = ["main"]

CLI_GROUP = "gim_plugins.cli"


class CLIError(Exception):
    """A user-facing error: printed as ``gim: error: …`` without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    from gim_plugins import __version__
    from gim_plugins.cli import list_cmd, match_cmd, weights_cmd

    parser = argparse.ArgumentParser(prog="gim", description="GIM image matchers: match, manage weights, and more.")
    parser.add_argument("--version", action="version", version=f"gim-plugins {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    parser.add_argument("--traceback", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (list_cmd, match_cmd, weights_cmd):
        module.register(sub)
    for ep in entry_points(group=CLI_GROUP):
        try:
            ep.load()(sub)
        except Exception as exc:  # a broken plugin must not take the whole CLI down
            warnings.warn(f"gim subcommand plugin {ep.name!r} ({ep.value}) failed to load: {exc}", RuntimeWarning,
                          stacklevel=1)
    return parser


def _expected_errors() -> tuple[type[BaseException], ...]:
    from gim_plugins.registry import MatcherLoadError
    from gim_plugins.weights import HashMismatchError, UnsafeCheckpointError

    return (CLIError, FileNotFoundError, ValueError, KeyError, MatcherLoadError, HashMismatchError,
            UnsafeCheckpointError, RuntimeError, OSError)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``gim`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("gim: interrupted", file=sys.stderr)
        return 130
    except _expected_errors() as exc:
        if args.traceback:
            raise
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"gim: error: {message}", file=sys.stderr)
        return 1
