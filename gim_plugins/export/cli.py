"""``gim export onnx MATCHER --out DIR [--opset N] [--dynamic] [--size WxH] [--weights W] [--conf K=V]``.

Entry point ``gim_plugins.cli: export``; a thin layer over :func:`gim_plugins.export.onnx_export.main`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add ``export`` (with its ``onnx`` subcommand) to the ``gim`` command."""
    parser = subparsers.add_parser("export", help="export a matcher's networks (ONNX graphs + manifest)")
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)
    sub = parser.add_subparsers(dest="export_format", metavar="FORMAT")
    onnx = sub.add_parser("onnx", help="ONNX graphs + manifest.json for onnxruntime and other runtimes",
                          description="Export MATCHER as ONNX graphs with a manifest.json beside them (docs/onnx.md).")
    onnx.add_argument("matcher", help="gim_lightglue, aliked_lightglue or gim_loftr (gim_dkm, gim_roma: refused, "
                                      "with the operator that stops them)")
    onnx.add_argument("--out", type=Path, required=True, help="export directory")
    onnx.add_argument("--opset", type=int, default=None, help="ONNX opset (default 18; 18–20)")
    onnx.add_argument("--dynamic", action="store_true",
                      help="image height and width as dynamic axes (gim_lightglue); keypoint counts always are")
    onnx.add_argument("--size", default=None, metavar="WxH",
                      help="input size of fixed-size image inputs (default 640x480; gim_loftr: multiples of 8)")
    onnx.add_argument("--weights", default=None, help="checkpoint file (default: the matcher's registered weights)")
    onnx.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE",
                      help="matcher option (repeatable), e.g. --conf filter_threshold=0.2")
    onnx.add_argument("--overwrite", action="store_true", help="replace an existing export in --out")
    onnx.set_defaults(handler=run)


def _size(text: str | None) -> tuple[int, int] | None:
    from gim_plugins.errors import UserError

    if text is None:
        return None
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"--size must be WIDTHxHEIGHT, e.g. 640x480, got {text!r}") from None
    return height, width


def run(args: argparse.Namespace) -> int:
    from gim_plugins.conf import parse_conf
    from gim_plugins.export.onnx_export import main

    conf = {"matcher": args.matcher, "weights": args.weights, "matcher_conf": parse_conf(args.conf),
            "opset": args.opset, "size": _size(args.size), "dynamic": args.dynamic}
    manifest = main(conf, args.out, overwrite=args.overwrite)
    print(f"exported {args.matcher} to {manifest.parent} ({manifest.name} describes the graphs)")
    return 0
