"""Benchmark: batched dense matching — gim_dkm / gim_roma pairs/s with batch 1 against B pairs per forward pass, and
float32 (TF32 on CUDA) against bfloat16, with the effect of bf16 on the outputs.

The prepared GPU check of the scale work: run it once on a GPU machine (one process, a few minutes at GIM's
settings). Every variant shares the same random weights (one state dict, loaded into each instance), and matches
the same ``--pairs`` pairs: the motorcycle pair bundled with scikit-image and crops/flips of it, so no two pairs
are identical. Per matcher and variant it prints pairs/s (median of ``--reps`` runs over all pairs, after a warm-up
run), peak memory (CUDA ``max_memory_allocated`` or the process's peak RSS) and, for each variant against the
fp32 batch-1 one, the median distance between their keypoints of the same sampled matches and the share within
1 px (the samplers are seeded, so identical outputs give 0.000 / 100 %; under bf16 the certainty changes slightly,
so some samples land elsewhere — the share says how many).

Variants: ``fp32 b1`` (the baseline), ``fp32 bB``, ``tf32 b1``/``tf32 bB`` (CUDA only: TF32 matmuls/convolutions),
``bf16 b1``/``bf16 bB`` (autocast). B is ``--batch`` (default 8 on CUDA; 2 on the CPU, where batching is not
expected to pay: the networks already use every core for one pair). GIM's original code runs one pair at a time; its
pairs/s on the same GPU come from ``benchmarks/dkm.py --device cuda`` / ``benchmarks/roma.py --device cuda`` (the
side-by-side runs with GIM's code), so the ratio ours-batched / original is read from the two outputs of one
session on one GPU.

    .venv/bin/python benchmarks/dense_batched.py --device cuda                  # GIM's settings, 16 pairs, B = 8
    .venv/bin/python benchmarks/dense_batched.py --size 240x320 --pairs 4       # a small CPU run (no refinement)
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gim_plugins.machine import cpu_name


def pairs(count: int) -> list[tuple[Any, Any]]:
    """``count`` different image pairs from the motorcycle pair: crops of growing margin, every other one mirrored."""
    import numpy as np
    from PIL import Image

    from gim_plugins.datasets.motorcycle import paths

    left, right = (np.asarray(Image.open(paths()[side]).convert("RGB")) for side in ("left", "right"))
    out = []
    for index in range(count):
        margin = 8 * (index // 2)
        crop = [im[margin: im.shape[0] - margin, margin: im.shape[1] - margin] for im in (left, right)]
        if index % 2:
            crop = [np.ascontiguousarray(im[:, ::-1]) for im in crop]
        out.append((crop[0], crop[1]))
    return out


def build(name: str, conf: dict[str, Any], device: str, state: dict | None) -> Any:
    import torch

    from gim_plugins.registry import get_matcher_class

    torch.manual_seed(0)  # gim_roma keeps its frozen DINOv2 outside the state dict: the seed makes it the same too
    matcher = get_matcher_class(name)(conf, pretrained=False, device=device).eval()
    if state is not None:
        matcher.load_state_dict(state)
    return matcher


def peak_memory(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return f"{torch.cuda.max_memory_allocated() / 2**20:.0f} MiB (CUDA)"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB (RSS, process)"


def run_variant(matcher: Any, images: list[tuple[Any, Any]], batch: int, reps: int) -> tuple[float, list[Any]]:
    """Pairs per second (median over ``reps`` runs after a warm-up) and the last run's results."""
    matcher.match_batch(images, batch_size=batch)  # warm-up (cuDNN autotuning, allocator)
    seconds, results = [], []
    for _ in range(reps):
        _sync(matcher.device)
        start = time.perf_counter()
        results = matcher.match_batch(images, batch_size=batch)
        _sync(matcher.device)
        seconds.append(time.perf_counter() - start)
    return len(images) / statistics.median(seconds), results


def _sync(device: Any) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def distance(results: list[Any], baseline: list[Any]) -> str:
    """Median keypoint distance (px) between two variants' matches, pair by pair, and the share within 1 px."""
    import numpy as np

    gaps = []
    for ours, base in zip(results, baseline):
        n = min(len(ours), len(base))
        if n:
            k = np.concatenate([ours.keypoints0[:n].numpy(), ours.keypoints1[:n].numpy()], axis=1)
            b = np.concatenate([base.keypoints0[:n].numpy(), base.keypoints1[:n].numpy()], axis=1)
            gaps.append(np.linalg.norm((k - b).reshape(-1, 2), axis=1))
    if not gaps:
        return "—"
    gap = np.concatenate(gaps)
    return f"{np.median(gap):.3f} / {100 * np.mean(gap <= 1.0):.1f} %"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--matchers", nargs="+", default=["gim_dkm", "gim_roma"], choices=["gim_dkm", "gim_roma"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", default=None, help="HxW canvas without refinement pass (default: GIM's settings)")
    parser.add_argument("--pairs", type=int, default=None, help="pairs per run (default: 16 on CUDA, 4 on the CPU)")
    parser.add_argument("--batch", type=int, default=None, help="B (default: 8 on CUDA, 2 on the CPU)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    count = args.pairs or (16 if cuda else 4)
    batch = args.batch or (8 if cuda else 2)
    gpu = torch.cuda.get_device_name(torch.device(args.device)) if cuda else "no GPU"
    print(f"# dense batched — {cpu_name()}, {gpu}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"{count} pairs, B = {batch}, median of {args.reps} runs after a warm-up")
    images = pairs(count)
    variants = [("fp32", 1), ("fp32", batch), *([("tf32", 1), ("tf32", batch)] if cuda else []), ("bf16", 1),
                ("bf16", batch)]
    for name in args.matchers:
        preset = f"{name}-demo"
        if args.size:
            height, width = (int(v) for v in args.size.split("x"))
            conf = {"h": height, "w": width, "upsample": False, "pad_to_aspect": False}
        else:
            import importlib

            conf = dict(importlib.import_module(f"gim_plugins.models.{name}").PRESETS[preset])
        conf["seed"] = 0
        torch.manual_seed(0)
        state = build(name, {**conf, "precision": "fp32"}, "cpu", None).state_dict()
        print(f"\n{name} ({'canvas ' + args.size if args.size else preset}):")
        print(f"{'variant':>10} {'pairs/s':>8} {'× fp32 b1':>9} {'matches':>8} {'Δ px median / ≤1px':>18}  peak memory")
        baseline: tuple[float, list[Any]] | None = None
        for precision, size in variants:
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision == "tf32"
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            matcher = build(name, {**conf, "precision": "bf16" if precision == "bf16" else "fp32"}, args.device,
                            state)
            rate, results = run_variant(matcher, images, size, args.reps)
            if baseline is None:
                baseline = (rate, results)
            matches = statistics.median(len(r) for r in results)
            print(f"{precision + ' b' + str(size):>10} {rate:8.3f} {rate / baseline[0]:9.2f} {matches:8.0f} "
                  f"{distance(results, baseline[1]):>18}  {peak_memory(args.device)}")
            del matcher
            if cuda:
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
