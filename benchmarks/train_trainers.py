"""Training speed and memory of each trainer: optimizer steps per second and peak memory, through the real engine.

Each trainer runs in its own process (so its peak resident memory is its own): ``gim_plugins.training.engine.fit`` on
two synthetic plane pairs (exact labels, the batch format's ``walk`` rows; the test suite's generator), batch 1, no
accumulation, no checkpoint until the end. The first ``--warmup`` steps are dropped; the rest give steps/s (the
engine's own per-step time: loading, forward, backward, clipping, optimizer step). Networks start from PyTorch's
initialisation (no download; ALIKED+LightGlue from the weight cache when present, else skipped): speed and memory do
not depend on the values. Prints the machine, then one row per trainer; ``--precision bf16`` uses bf16 autocast.

    python benchmarks/train_trainers.py [--size 64] [--steps 8] [--warmup 2] [--trainers gim_loftr gim_dkm …]
    python benchmarks/train_trainers.py --gim-sizes --device cuda --precision bf16     # on a GPU, GIM's sizes
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from gim_plugins.machine import cpu_name

REPO = Path(__file__).resolve().parents[1]
TRAINERS = ("gim_lightglue", "aliked_lightglue", "gim_loftr", "gim_dkm", "gim_roma")
CONFS = {"gim_lightglue": {"extractor_weights": None}, "gim_roma": {"dinov2_weights": None}}
DF = {"gim_roma": 14}  # RoMa's DINOv2 patch: sizes are rounded to its multiple


def machine(device: str) -> str:
    import torch

    text = f"{cpu_name()}, torch {torch.__version__}, threads {torch.get_num_threads()}"
    try:
        text += f", load average {os.getloadavg()[0]:.1f}"
    except OSError:
        pass
    if device.startswith("cuda") and torch.cuda.is_available():
        text += f"; GPU {torch.cuda.get_device_name(torch.device(device))}"
    return text


def child(name: str, size: tuple[int, int], steps: int, warmup: int, device: str, precision: str,
          keypoints: int) -> dict:
    """One trainer's measurement (run in a fresh process)."""
    import csv

    import torch

    sys.path.insert(0, str(REPO / "tests" / "training"))
    from _train_synthetic import PlaneDataset, ShardedSampler, collate

    from gim_plugins.training.engine import TrainData, World, fit
    from gim_plugins.training.presets import resolve_preset
    from gim_plugins.training.trainers import trainer_class

    conf = {**CONFS.get(name, {}), **({"max_keypoints": keypoints} if name.endswith("lightglue") else {})}
    settings = resolve_preset(name, {"trainer": conf, "canonical_batch": None,
                                     "checkpoint_every": 10**9, "precision": precision,
                                     "schedule.max_epochs": 10**6, "data.max_labels": 2048})
    torch.manual_seed(0)
    trainer = trainer_class(name)(settings["trainer"])
    params = sum(p.numel() for p in trainer.parameters() if p.requires_grad)
    data = TrainData(PlaneDataset(2, size, ("walk",), max_labels=2048), ShardedSampler(2), collate)
    world = World(device=torch.device(device))
    if world.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(world.device)
    with tempfile.TemporaryDirectory() as run:
        fit(trainer, data, settings, run, preset=name, world=world, max_steps=warmup + steps, progress=False)
        with open(Path(run) / "metrics.csv", newline="") as handle:
            rows = [r for r in csv.DictReader(handle) if r["kind"] == "train"]
    seconds = [float(r["seconds"]) for r in rows][warmup:]
    result = {"trainer": name, "size": list(size), "steps_per_s": len(seconds) / sum(seconds),
              "ms_per_step": 1000 * sum(seconds) / len(seconds), "trainable_m": params / 1e6,
              "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
              "losses": [round(float(r["loss"]), 4) for r in rows]}
    if world.device.type == "cuda":
        result["peak_cuda_mib"] = torch.cuda.max_memory_allocated(world.device) / 2**20
    return result


GIM_SIZES = {"gim_lightglue": (1024, 1024), "aliked_lightglue": (1024, 1024), "gim_loftr": (840, 840),
             "gim_dkm": (672, 896), "gim_roma": (672, 672)}
"""(H, W) of each preset's canvas."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trainers", nargs="+", default=list(TRAINERS), choices=TRAINERS)
    parser.add_argument("--size", type=int, default=64, help="square canvas side (rounded down to the net's unit)")
    parser.add_argument("--gim-sizes", action="store_true", help="each preset's own canvas instead of --size")
    parser.add_argument("--steps", type=int, default=8, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed first steps")
    parser.add_argument("--keypoints", type=int, default=256, help="LightGlue trainers: keypoints per image "
                        "(GIM: 2048)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        size = tuple(json.loads(args.child))
        print(json.dumps(child(args.trainers[0], size, args.steps, args.warmup, args.device, args.precision,
                               args.keypoints)))
        return
    print(f"machine: {machine(args.device)}")
    print(f"device {args.device}, {args.precision}, batch 1, {args.steps} timed steps after {args.warmup}, "
          f"LightGlue keypoints {args.keypoints}")
    print(f"{'trainer':18s} {'H×W':>9s} {'steps/s':>8s} {'ms/step':>9s} {'peak RSS MiB':>13s} "
          f"{'peak CUDA MiB':>14s} {'trainable M':>12s}  loss first → last")
    for name in args.trainers:
        if args.gim_sizes:
            size = GIM_SIZES[name]
        else:
            unit = DF.get(name, 8)
            size = (args.size // unit * unit,) * 2
        command = [sys.executable, __file__, "--child", json.dumps(size), "--trainers", name, "--steps",
                   str(args.steps), "--warmup", str(args.warmup), "--device", args.device, "--precision",
                   args.precision, "--keypoints", str(args.keypoints)]
        command += ["--threads", str(args.threads)] if args.threads else []
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            reason = (done.stderr.strip().splitlines() or ["failed"])[-1]
            print(f"{name:18s} skipped: {reason}")
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        cuda = f"{r['peak_cuda_mib']:.0f}" if "peak_cuda_mib" in r else "—"
        print(f"{name:18s} {f'{size[0]}×{size[1]}':>9s} {r['steps_per_s']:8.3f} {r['ms_per_step']:9.0f} "
              f"{r['peak_rss_mib']:13.0f} {cuda:>14s} {r['trainable_m']:12.2f}  {r['losses'][0]} → {r['losses'][-1]}")


if __name__ == "__main__":
    main()
