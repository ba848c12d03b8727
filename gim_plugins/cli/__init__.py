"""The ``gim`` command (also ``python -m gim_plugins``).

Core subcommands: ``list``, ``match``, ``demo``, ``weights``. Integration subpackages add theirs through the
entry-point group ``gim_plugins.cli`` (value: a ``register(subparsers)`` callable), so the core never imports them.
Logging is configured here and only here.
"""

from __future__ import annotations

import argparse
import logging
import warnings
from collections.abc import Sequence
from importlib.metadata import entry_points

from gim_plugins.errors import UserError, run_cli

__all__ = ["main"]

CLI_GROUP = "gim_plugins.cli"


CLIError = UserError
"""Former name of :class:`gim_plugins.errors.UserError`, kept for code written against it."""


def build_parser() -> argparse.ArgumentParser:
    from gim_plugins import __version__
    from gim_plugins.cli import list_cmd, match_cmd, weights_cmd

    parser = argparse.ArgumentParser(prog="gim", description="GIM image matchers: match, manage weights, and more.")
    parser.add_argument("--version", action="version", version=f"gim-plugins {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    add_debug_option(parser)
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


def add_debug_option(parser: argparse.ArgumentParser) -> None:
    """``--debug`` (alias ``--traceback``): show the traceback of user errors too."""
    parser.add_argument("--debug", "--traceback", dest="debug", action="store_true",
                        help="show the full traceback on errors")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``gim`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    return run_cli(lambda: args.handler(args), prog="gim", debug=args.debug,
                   interrupted="interrupted (finished work is kept: rerun the same command to resume)")
