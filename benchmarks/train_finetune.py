"""A small, honest fine-tuning experiment: ``gim train``'s video recipe on your labels, scored on ZEB-mini before and
after.

Reads training labels (``--data``: a ``gim video`` output or GIM's ZeroMatch folder, or any ``--data`` that
``gim train`` takes), scores the starting weights on ZEB-mini (written into ``--zeb`` when missing; GIM's protocol,
the ZEB runner's AUC), fine-tunes for ``--steps`` optimizer steps through the real engine (``gim train``'s data
opening, schedule and checkpoints; validation every ``--val-every`` steps), and prints the machine, the loss curve
(means over windows of steps) and AUC@5/10/20 before and after. Whether fine-tuning helped is whatever it prints.

    python benchmarks/train_finetune.py --data zeromatch/ [--preset aliked_lightglue] [--steps 60] [--size 320]
        [--zeb zeb_mini/] [--out runs/finetune] [--set key=value …] [--plot curve.png]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_trainers import machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", required=True)
    parser.add_argument("--preset", default="aliked_lightglue")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--val-every", type=int, default=None, help="default: only before and after")
    parser.add_argument("--size", type=int, default=320, help="square training canvas")
    parser.add_argument("--zeb", type=Path, default=Path("zeb_mini"))
    parser.add_argument("--out", type=Path, default=Path("runs/finetune"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--plot", type=Path, default=None, help="also draw the loss curve and AUC@5 into this PNG")
    args = parser.parse_args()

    import torch

    from gim_plugins.conf import parse_conf
    from gim_plugins.training.cli import open_data
    from gim_plugins.training.engine import World, fit
    from gim_plugins.training.presets import resolve_preset
    from gim_plugins.training.trainers import trainer_class
    from gim_plugins.training.validation import Validator
    from gim_plugins.zeb.mini import write_mini

    print(f"machine: {machine(args.device)}", flush=True)
    base = {"image_size": [args.size, args.size], "data.max_labels": 512, "trainer.max_keypoints": 512,
            "checkpoint_every": 10**9, "validation.max_pairs": None}
    settings = resolve_preset(args.preset, {**base, **parse_conf(args.overrides, option="--set")})
    data = open_data(args.data, settings)
    shown = {k: v for k, v in settings.items() if k in ("image_size", "optimizer", "schedule")}
    print(f"data: {len(data.dataset)} pairs in {len(data.dataset.datasets)} datasets; {json.dumps(shown)}", flush=True)
    write_mini(args.zeb)
    torch.manual_seed(int(settings["seed"]))
    trainer = trainer_class(settings["matcher"])(settings["trainer"])
    if settings.get("init"):
        from gim_plugins.training.checkpoints import load_weights_into

        load_weights_into(trainer, settings["init"])
    validator = Validator(args.zeb, trainer.matcher, {**trainer.matcher_conf(), **settings["validation"]["conf"]},
                          device=args.device, max_pairs=settings["validation"]["max_pairs"])
    before = validator(trainer.validation_weights())
    print(f"before: AUC@5/10/20 {100 * before['auc5']:.2f} {100 * before['auc10']:.2f} {100 * before['auc20']:.2f} "
          f"on {int(before['pairs'])} pairs ({before['seconds']:.0f} s)", flush=True)
    start = time.perf_counter()
    fit(trainer, data, settings, args.out, preset=args.preset, world=World(device=torch.device(args.device)),
        max_steps=args.steps, validator=validator, val_every=args.val_every or args.steps, progress=False)
    seconds = time.perf_counter() - start
    with open(args.out / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    losses = [float(r["loss"]) for r in rows if r["kind"] == "train"]
    vals = [r for r in rows if r["kind"] == "val"]
    window = max(1, len(losses) // 10)
    curve = [sum(losses[i : i + window]) / len(losses[i : i + window]) for i in range(0, len(losses), window)]
    print(f"trained {len(losses)} steps in {seconds:.0f} s (validation included)")
    print(f"loss (mean per {window} steps): " + " ".join(f"{v:.3f}" for v in curve))
    subsets = sorted(k.partition("/")[2] for k in before if k.startswith("auc5/"))
    print(f"ZEB-mini ({int(before['pairs'])} pairs)   AUC@5   AUC@10  AUC@20   "
          + "  ".join(f"{name} AUC@5/10/20" for name in subsets))

    def per_subset(values: dict) -> str:
        return "  ".join(" ".join(f"{100 * float(values[f'auc{t}/{name}']):6.2f}" for t in (5, 10, 20))
                         for name in subsets)

    print(f"before (step 0)     {100 * before['auc5']:6.2f}  {100 * before['auc10']:6.2f}  "
          f"{100 * before['auc20']:6.2f}   {per_subset(before)}")
    for r in vals:
        scalars = dict(item.split("=") for item in r["scalars"].split(";") if item)
        print(f"after step {int(r['step']):<8d} {100 * float(r['auc5']):6.2f}  {100 * float(r['auc10']):6.2f}  "
              f"{100 * float(r['auc20']):6.2f}   {per_subset(scalars)}")
    if args.plot is not None:
        plot(args.plot, losses, window, before, vals, subsets, title=f"{args.preset} fine-tune, {machine(args.device)}")


def plot(path: Path, losses: list[float], window: int, before: dict, vals: list[dict], subsets: list[str],
         title: str) -> None:
    """Loss per step (and its running mean over ``window`` steps) beside AUC@5 per validation (mean and subsets)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    steps = list(range(1, len(losses) + 1))
    left.plot(steps, losses, lw=0.6, alpha=0.4, label="loss per step")
    running = [sum(losses[max(0, i - window + 1): i + 1]) / len(losses[max(0, i - window + 1): i + 1])
               for i in range(len(losses))]
    left.plot(steps, running, lw=1.8, label=f"mean of {window} steps")
    left.set_xlabel("step")
    left.set_ylabel("loss")
    left.legend()
    val_steps = [0] + [int(r["step"]) for r in vals]
    rows = [before] + [{**r, **dict(i.split("=") for i in r["scalars"].split(";") if i)} for r in vals]
    right.plot(val_steps, [100 * float(r["auc5"]) for r in rows], "o-", lw=2, label="ZEB-mini mean")
    for name in subsets:
        right.plot(val_steps, [100 * float(r[f"auc5/{name}"]) for r in rows], "s--", label=name)
    right.set_xlabel("step")
    right.set_ylabel("AUC@5 (%)")
    right.legend()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    print(f"plot: {path}")


if __name__ == "__main__":
    main()
