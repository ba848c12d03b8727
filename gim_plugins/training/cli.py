"""``gim train`` (entry point ``gim_plugins.cli: train``) and ``python -m gim_plugins.training`` (for torchrun).

::

    gim train --preset gim_loftr --data ZEROMATCH_DIR [MEGADEPTH_DIR …] --out RUN [--max-steps N] [--device cuda]
    torchrun --nproc_per_node 8 [--nnodes 5 …] -m gim_plugins.training --preset gim_loftr --data … --out RUN

``--data`` takes folders, each recognised by what it holds (or named as ``KIND:PATH``): ``walk`` (a ``gim video``
output or GIM's ZeroMatch folder: ``propagate/``), ``megadepth`` (D2-Net scene info: ``scene_info/*.npz``, or
GIM's ``output/*.npz``), ``zeb`` (ZEB-format pairs), ``colmap`` (``colmap:MODEL_DIR,IMAGE_DIR``). Validation runs on
``--val DIR`` (a ZEB-format folder; default ZEB-mini, written once into ``RUN/zeb_mini``; ``--val none`` disables
it). Running the same command again resumes ``RUN``. A thin layer over :func:`gim_plugins.training.engine.fit`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gim_plugins.errors import UserError

__all__ = ["build_parser", "main", "open_data", "register", "run"]

DATA_KINDS = ("walk", "megadepth", "zeb", "colmap")


class TrainUsageError(ValueError, UserError):
    """A bad ``gim train`` option or data folder."""


def register(subparsers: Any) -> None:
    """Add ``train`` to the ``gim`` command (entry-point group ``gim_plugins.cli``)."""
    parser = subparsers.add_parser("train", help="train a GIM matcher (GIM's recipes; CPU to multi-node torchrun)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_arguments(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gim_plugins.training", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    _add_arguments(parser)
    return parser


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    from gim_plugins.training.presets import PRESETS

    parser.add_argument("--preset", choices=sorted(PRESETS), help="training recipe (one per matcher)")
    parser.add_argument("--data", nargs="+", default=[], metavar="DIR", help="training data folders (KIND:PATH to "
                        f"name the kind; kinds: {', '.join(DATA_KINDS)})")
    parser.add_argument("--out", type=Path, help="run folder (RUN/last.ckpt, RUN/best.ckpt, metrics.csv, "
                        "tensorboard/); an existing run is resumed")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after N optimizer steps in all")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (under torchrun: cuda = cuda:LOCAL_RANK)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a preset setting (dotted: optimizer.lr=2e-4, trainer.temp_bug_fix=false, "
                             "data.batch_size=2); repeatable")
    parser.add_argument("--init", default=None, metavar="CKPT",
                        help="start from these weights: a gim train checkpoint, GIM's checkpoint, a weight name "
                             "(gim_loftr_50h, …) — only for a new run")
    parser.add_argument("--val", default=None, metavar="DIR", help="ZEB-format validation folder (default: ZEB-mini "
                        "in RUN/zeb_mini; 'none': no validation)")
    parser.add_argument("--val-every", type=int, default=None, metavar="N", help="validate every N optimizer steps")
    parser.add_argument("--list", action="store_true", help="print the presets and exit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run)


def _print_presets() -> int:
    import json

    from gim_plugins.training.presets import PRESETS, resolve_preset

    for name in PRESETS:
        print(f"{name}: {json.dumps(resolve_preset(name), sort_keys=True)}")
    return 0


def _detect(path: Path) -> str:
    from gim_plugins.zeb.dataset import find_subsets

    if (path / "propagate").is_dir():
        return "walk"
    if (path / "scene_info").is_dir() or any((path / "output").glob("*.npz")):  # D2-Net's folder, or GIM's
        return "megadepth"
    if path.is_dir() and find_subsets(path):
        return "zeb"
    raise TrainUsageError(f"--data {path}: not a ZeroMatch/gim video folder (propagate/), a MegaDepth folder "
                          "(scene_info/ or output/*.npz), nor a ZEB folder; name the kind as KIND:PATH "
                          "(colmap:MODEL,IMAGES)")


def open_data(specs: Sequence[str], settings: Mapping[str, Any], rank: int = 0, world_size: int = 1) -> Any:
    """The :class:`~gim_plugins.training.engine.TrainData` of ``--data`` for this rank.

    Raises:
        TrainUsageError: no data, an unknown kind or a folder that is none of them.
    """
    if not specs:
        raise TrainUsageError("--data: give at least one training data folder")
    sources = []
    for spec in specs:  # every folder is checked before anything heavy is imported
        kind, _, rest = spec.partition(":") if spec.split(":", 1)[0] in DATA_KINDS else ("", "", spec)
        if kind == "colmap" and not rest.partition(",")[2]:
            raise TrainUsageError(f"--data {spec}: write colmap:MODEL_DIR,IMAGE_DIR")
        for folder in rest.split(",") if kind == "colmap" else [rest]:
            if not Path(folder).is_dir():
                raise TrainUsageError(f"--data {spec}: {folder} is not a folder")
        sources.append((kind or _detect(Path(rest)), rest))

    from gim_plugins.training import data as D
    from gim_plugins.training.engine import TrainData

    width_height = list(settings["image_size"])
    conf = {"augment": {"image_size": width_height}, "max_labels": int(settings["data"]["max_labels"]),
            "seed": int(settings["seed"])}
    datasets: list[Any] = []
    for kind, rest in sources:
        try:
            if kind == "colmap":
                model, _, images = rest.partition(",")
                datasets.append(D.ColmapDataset(model, images, conf))
            else:
                opener = {"walk": D.walk_datasets, "megadepth": D.megadepth_datasets, "zeb": D.zeb_datasets}[kind]
                datasets.extend(opener(Path(rest), conf=conf))
        except (FileNotFoundError, ValueError) as exc:  # an empty or malformed folder: one line naming it
            raise TrainUsageError(f"--data {kind}:{rest}: {exc}") from exc
    if not datasets:
        raise TrainUsageError(f"--data {' '.join(specs)}: no training pairs found")
    maxlen = dict(settings["data"]["maxlen"]) or None
    if maxlen:
        present = {d.kind for d in datasets}
        maxlen = {k: v for k, v in maxlen.items() if k in present} or None
    mixed = D.MixedDataset(datasets)
    sampler = D.BalanceSampler(mixed.datasets, maxlen, seed=int(settings["seed"]), rank=rank,
                               world_size=world_size)
    return TrainData(mixed, sampler, D.collate, D.finish, int(settings["data"]["num_workers"]))


def _validator(args: argparse.Namespace, settings: Mapping[str, Any], trainer: Any, device: str) -> Any:
    from gim_plugins.training.validation import Validator

    if args.val == "none":
        return None
    val = args.out / "zeb_mini" if args.val is None else Path(args.val)
    if args.val is None:
        from gim_plugins.zeb.mini import write_mini

        write_mini(val)
    return Validator(val, trainer.matcher, {**trainer.matcher_conf(), **settings["validation"]["conf"]},
                     device=device, max_pairs=settings["validation"]["max_pairs"])


def run(args: argparse.Namespace) -> int:
    """``gim train`` / ``python -m gim_plugins.training``."""
    if args.list:
        return _print_presets()
    if args.preset is None or args.out is None:
        raise TrainUsageError("--preset and --out are required (--list shows the presets)")
    from gim_plugins.conf import parse_conf
    from gim_plugins.training.engine import fit, init_world
    from gim_plugins.training.presets import resolve_preset
    from gim_plugins.training.trainers import trainer_class

    try:
        settings = resolve_preset(args.preset, parse_conf(args.overrides, option="--set"))
    except KeyError as exc:
        raise TrainUsageError(str(exc.args[0])) from None
    world = init_world(args.device)
    try:
        import torch

        data = open_data(args.data, settings, world.rank, world.size)
        torch.manual_seed(int(settings["seed"]))
        trainer = trainer_class(settings["matcher"])(settings["trainer"])
        validator = _validator(args, settings, trainer, str(world.device)) if world.rank == 0 else None
        init = args.init or settings.get("init")
        last = fit(trainer, data, settings, args.out, preset=args.preset, world=world, max_steps=args.max_steps,
                   validator=validator, val_every=args.val_every, init=init, progress=not args.no_progress)
    finally:
        world.close()
    if world.rank == 0:
        best = args.out / "best.ckpt"
        print(f"wrote {last}" + (f" and {best}" if best.is_file() else ""))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m gim_plugins.training``; returns the exit status."""
    from gim_plugins.errors import run_cli

    parser = build_parser()
    args = parser.parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    return run_cli(lambda: args.handler(args), prog="train", debug=args.debug,
                   interrupted="interrupted (RUN/last.ckpt is intact; run the same command to resume)")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
