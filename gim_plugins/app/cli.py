"""``gim app``: serve the matcher page on this machine (registered through the ``gim_plugins.cli`` entry points).

Gradio is an optional dependency: without it the command stops with one line saying how to install it. The page
listens on 127.0.0.1 unless ``--host`` says otherwise, and ``--share`` (a public link through Gradio's servers) is
never on by default.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from gim_plugins.app.core import DEFAULT_MAX_MODELS, DEFAULT_MAX_PIXELS
from gim_plugins.errors import UserError

__all__ = ["register"]

INSTALL_HINT = "pip install 'gim-plugins[app]'"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def register(sub: Any) -> None:
    """Add ``gim app`` to the ``gim`` command's subparsers."""
    parser = sub.add_parser("app", help="the interactive matcher page in your browser (needs gim-plugins[app])",
                            description="Serve the matcher page: two images, a matcher and its options, the match "
                                        "and warp pictures, counts, stage times and downloads.")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: your network)")
    parser.add_argument("--port", type=int, default=7860, help="port to listen on (default 7860)")
    parser.add_argument("--matcher", default=None,
                        help="matcher selected when the page opens (default: the best one whose weights are installed)")
    parser.add_argument("--max-models", type=int, default=DEFAULT_MAX_MODELS,
                        help=f"loaded matchers kept between requests (default {DEFAULT_MAX_MODELS})")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help=f"refuse images with more pixels than this (default {DEFAULT_MAX_PIXELS:,})")
    parser.add_argument("--share", action="store_true",
                        help="also publish a temporary public link through Gradio's share servers (off by default)")
    parser.set_defaults(handler=_run)


def _check(args: argparse.Namespace) -> None:
    if not 1 <= args.port <= 65535:
        raise UserError(f"--port must be between 1 and 65535, got {args.port}")
    if args.max_models < 1:
        raise UserError(f"--max-models must be at least 1, got {args.max_models}")
    if args.max_pixels < 1:
        raise UserError(f"--max-pixels must be positive, got {args.max_pixels}")
    if not args.host.strip():
        raise UserError("--host is empty: use 127.0.0.1 (this machine) or 0.0.0.0 (your network)")
    _check_address(args.host, args.port)


def _check_address(host: str, port: int) -> None:
    """Fail now, in one line, if the address cannot be listened on (before the page and its models are built)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise UserError(f"--host {host!r} is not an address of this machine ({exc}): use 127.0.0.1 or 0.0.0.0") \
            from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        try:
            sock.bind(address)
        except OSError as exc:
            raise UserError(f"cannot listen on {host}:{port} ({exc.strerror or exc}): another program may be using "
                            f"it; choose another port with --port N") from None


def _run(args: argparse.Namespace) -> int:
    _check(args)
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise UserError(f"gim app needs Gradio, which is not installed: {INSTALL_HINT}") from None
    if args.matcher is not None:
        from gim_plugins.registry import get_matcher_class

        get_matcher_class(args.matcher)  # an unknown name stops here, with the registered names
    if args.host not in LOOPBACK:
        print(f"gim app: listening on {args.host}: other machines that reach it can use the page", file=sys.stderr)
    from gim_plugins.app.ui import launch

    launch(host=args.host, port=args.port, share=args.share, matcher=args.matcher, max_models=args.max_models,
           max_pixels=args.max_pixels)
    return 0
