"""``python -m gim_plugins.zeb …`` and ``gim zeb …`` (entry point ``gim_plugins.cli: zeb``).

Subcommands: ``run`` (evaluate a matcher), ``merge`` (write dumps after independent ``--shard`` jobs), ``report``
(AUC tables and plots), ``check`` (identifier parity across methods), ``mini`` (write ZEB-mini). A thin layer over
:func:`gim_plugins.zeb.runner.run`, :mod:`gim_plugins.zeb.report` and :func:`gim_plugins.zeb.mini.write_mini`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["build_parser", "main", "register"]


def register(subparsers: Any) -> None:
    """Add ``zeb`` to the ``gim`` command (entry-point group ``gim_plugins.cli``)."""
    parser = subparsers.add_parser("zeb", help="ZEB zero-shot benchmark: run, merge, report, check, mini",
                                   description=__doc__)
    _add_subcommands(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gim_plugins.zeb", description=__doc__)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    parser.add_argument("--debug", "--traceback", dest="debug", action="store_true",
                        help="show the full traceback on errors")
    _add_subcommands(parser)
    return parser


def _add_subcommands(parser: argparse.ArgumentParser) -> None:
    from gim_plugins.zeb.protocols import DEFAULT, NAMES
    from gim_plugins.zeb.treatment import RESCALE_RULES

    parser.set_defaults(handler=lambda args: parser.print_help() or 2)
    sub = parser.add_subparsers(dest="zeb_command", metavar="SUBCOMMAND")

    run = sub.add_parser("run", help="evaluate a matcher on ZEB with GIM's protocol (resumable, shardable)")
    run.add_argument("--matcher", default=None, help="registered matcher name or module:Class")
    run.add_argument("--weights", default=None, help="checkpoint file or weight name (default: the registered one)")
    run.add_argument("--preset", default=None,
                     help="matcher preset (default: <matcher>-zeb when the matcher has one; 'none' disables)")
    run.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE", help="matcher option (repeatable)")
    run.add_argument("--data", type=Path, required=True, help="the ZEB folder (with gl3d/, kitti/, …)")
    run.add_argument("--out", type=Path, required=True, help="dump directory (GIM's dump/zeb)")
    run.add_argument("--subsets", nargs="+", default=None, help="subset names (default: all folders present)")
    run.add_argument("--shard", default=None, metavar="I/N", help="evaluate pairs I::N only (0-based), then merge")
    run.add_argument("--max-pairs", type=int, default=None,
                     help="only the first N pairs of each subset (gluefactory: pairs drawn per subset, default 200)")
    run.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 (under torchrun: cuda = cuda:LOCAL_RANK)")
    run.add_argument("--batch-size", type=int, default=None,
                     help="gim_dkm/gim_roma: pairs per forward pass (default: from free GPU memory on CUDA, 1 on CPU)")
    run.add_argument("--version", default=None, help="version token of the dump names (default from the weights)")
    run.add_argument("--rescale", choices=RESCALE_RULES, default=None,
                     help="keypoint mapping back to the original image (default: the matcher's GIM rule)")
    run.add_argument("--protocol", choices=NAMES, default=DEFAULT,
                     help="gim: GIM's ZEB protocol (default); gluefactory: cvg/glue-factory's (≤200 pairs per subset, "
                          "long side 1024 px, RANSAC 1.0 px; dumps get the version suffix +gluefactory; numbers not "
                          "comparable with GIM's)")
    run.add_argument("--overwrite", action="store_true", help="delete stale results of this method and start afresh")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.set_defaults(handler=_run)

    merge = sub.add_parser("merge", help="write the dumps of complete subsets after independent --shard jobs")
    merge.add_argument("dump_dir", type=Path)
    merge.add_argument("--methods", nargs="+", default=None, help="weight or weight@version (default: all)")
    merge.set_defaults(handler=_merge)

    report = sub.add_parser("report", help="AUC@5/10/20 per subset and mean, cost, plots")
    report.add_argument("dump_dir", type=Path)
    report.add_argument("--methods", nargs="+", default=None, help="weight or 'weight version' (default: all)")
    report.add_argument("--format", choices=("md", "csv", "json"), default="md")
    report.add_argument("--output", type=Path, default=None, help="also write the report to this file")
    report.add_argument("--plots", type=Path, default=None, help="write auc_curves.png and error_cdf.png here")
    report.set_defaults(handler=_report)

    check = sub.add_parser("check", help="identifier parity across the methods' dumps of each subset")
    check.add_argument("dump_dir", type=Path)
    check.set_defaults(handler=_check)

    mini = sub.add_parser("mini", help="write ZEB-mini (offline real data, official layout)")
    mini.add_argument("--out", type=Path, required=True, help="folder to create (becomes a ZEB folder)")
    mini.add_argument("--views", type=int, default=12, help="rendered views of the motorcycle scene")
    mini.add_argument("--seed", type=int, default=0)
    mini.add_argument("--overwrite", action="store_true", help="replace an existing ZEB-mini folder")
    mini.set_defaults(handler=_mini)


def _run(args: argparse.Namespace) -> int:
    from gim_plugins.conf import parse_conf
    from gim_plugins.zeb.runner import RunConfig, run
    from gim_plugins.zeb.world import parse_shard

    config = RunConfig(
        matcher=args.matcher, weights=args.weights, preset=args.preset, conf=parse_conf(args.conf),
        version=args.version, subsets=args.subsets, max_pairs=args.max_pairs,
        shard=parse_shard(args.shard) if args.shard else None, device=args.device, rescale=args.rescale,
        progress=not args.no_progress, protocol=args.protocol, batch_size=args.batch_size)
    summary = run(config, args.data, args.out, overwrite=args.overwrite)
    print("\n".join(summary.lines()))
    return 0


def _merge(args: argparse.Namespace) -> int:
    from gim_plugins.zeb.runner import merge

    statuses = merge(args.dump_dir, args.methods)
    for status in statuses:
        line = f"{status.subset}: {status.done}/{status.selected} pairs"
        print(f"{line}; wrote {status.dump}" if status.dump else f"{line}; incomplete, e.g. {status.missing[:3]}")
    return 0 if all(s.dump for s in statuses) else 1


def _report(args: argparse.Namespace) -> int:
    from gim_plugins.atomic import atomic_write_text
    from gim_plugins.zeb.report import collect, format_report, plot

    results = collect(args.dump_dir, args.methods)
    text = format_report(results, args.format)
    sys.stdout.write(text)
    if args.output is not None:
        atomic_write_text(args.output, text)
    if args.plots is not None:
        for path in plot(results, args.plots):
            print(f"wrote {path}", file=sys.stderr)
    return 0


def _check(args: argparse.Namespace) -> int:
    from gim_plugins.zeb.report import check

    results = check(args.dump_dir)
    for result in results:
        print(result.line())
    return 1 if any(r.status == "different" for r in results) else 0


def _mini(args: argparse.Namespace) -> int:
    from gim_plugins.zeb.mini import write_mini

    summary = write_mini(args.out, num_views=args.views, seed=args.seed, overwrite=args.overwrite)
    print("\n".join(summary.lines()))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m gim_plugins.zeb``; returns the exit status."""
    from gim_plugins.errors import run_cli

    parser = build_parser()
    args = parser.parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    return run_cli(lambda: args.handler(args), prog="zeb", debug=args.debug,
                   interrupted="interrupted (finished pairs are kept; rerun the same command to resume)")
