"""``gim view``: the command line of :mod:`gim_plugins.view` (registered through the ``gim_plugins.cli`` entry-point
group; registering imports nothing heavy)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the ``view`` subcommand to ``gim``'s subparsers."""
    parser = sub.add_parser("view", help="an HTML page and a PNG of a reconstruction (cameras, sparse, dense)",
                            description="Write OUT/view.html (opens in any browser from the file: no server, no "
                                        "network) and OUT/view.png from the output folder of gim reconstruct.")
    parser.add_argument("out", type=Path, help="output folder of gim reconstruct (sparse/0, dense/fused.ply)")
    parser.add_argument("--page", type=Path, default=None, help="where to write the page (default: OUT/view.html)")
    parser.add_argument("--max-points", type=int, default=200_000,
                        help="dense points shown, a random subset (default: %(default)s)")
    parser.add_argument("--no-png", action="store_true", help="skip the PNG picture")
    parser.add_argument("--title", default=None, help="page title (default: the folder's name)")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from gim_plugins.view import main

    page = main({"max_points": args.max_points, "png": not args.no_png, "title": args.title},
                {"out": args.out, "page": args.page})
    print(f"page: {page}")
    if not args.no_png:
        print(f"picture: {page.with_suffix('.png')}")
    return 0
