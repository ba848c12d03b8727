"""GIM-LoFTR speed: ours (fast and exact arithmetic, fp32 and bf16) vs GIM's original, against the FLOP floor.

Every configuration runs in its own process (peak RSS is that process's). It measures the sgemm throughput
(``torch.mm`` 4096², median of 5) before and after timing the matcher on the motorcycle pair resized to the given
size (1 warm-up, median of ``--reps``) and keeps the higher of the two (a conservative floor on a shared machine).
FLOPs are counted with ``torch.utils.flop_counter`` on the same call; the floor is FLOPs / throughput, the ratio is
wall time / floor (goal for ours in fp32: ≤ 1.3). "CPU ratio" is CPU time / (threads × floor): it ignores time spent
descheduled on a shared machine (exact with ``--threads 1``; with more threads it also counts OpenMP spinning).
kornia's linear attention multiplies full (heads·dim)² blocks, so our count is ~2.5 % above the original's; the
summary also gives each ratio against the smallest count of the size. The bf16 variant (backbone under autocast) is
compared with the bf16 gemm throughput (an optimistic floor: the transformers stay fp32) and with our fp32 output on
the same inputs.

Weights are random, conditioned to give informative features (:mod:`parity.images`), identical for ours and the
original. The original needs GIM's code from the ``imcui`` wheel (reference venv: ``parity/README.md``); without it
only our rows are printed.

Usage (uses > 1 GB per process; on shared machines wrap it in the heavy-job lock)::

    flock /path/to/heavy.lock python benchmarks/loftr.py --sizes 480x640 240x320 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("original", "ours-exact", "ours", "ours-bf16")


def sgemm_gflops(dtype_name: str = "float32", n: int = 4096, reps: int = 5) -> float:
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e9


def _build(variant: str, height: int, width: int):  # type: ignore[no-untyped-def]
    """(run(left, right) -> (k0, k1, conf), left, right) with the conditioned random weights."""
    import torch

    from gim_plugins.models.gim_loftr import GIMLoFTR
    from parity.images import condition_random_loftr_backbone, motorcycle_pair

    left, right = motorcycle_pair(height, width)
    calibration = torch.stack(motorcycle_pair(240, 320))
    torch.manual_seed(0)
    if variant == "original":
        from parity.gim_networks import load_networks, missing_reason

        reason = missing_reason()
        if reason is not None:
            raise SystemExit(reason)
        load_networks()  # puts GIM's folder on sys.path: its code imports itself as networks.…
        from networks.loftr.config import get_cfg_defaults
        from networks.loftr.loftr import LoFTR
        from networks.loftr.misc import lower_config

        model = LoFTR(lower_config(get_cfg_defaults())["loftr"])
        condition_random_loftr_backbone(model.backbone, calibration, 0)
        model.eval()

        def run(a, b):  # type: ignore[no-untyped-def]
            data = {"image0": a[None], "image1": b[None], "color0": a[None], "color1": b[None]}
            model(data)
            return data["mkpts0_f"], data["mkpts1_f"], data["mconf"]

        return run, left, right
    conf = {"fast_backbone": variant != "ours-exact",
            "precision": "bfloat16" if variant == "ours-bf16" else "float32"}
    matcher = GIMLoFTR(conf, pretrained=False)
    condition_random_loftr_backbone(matcher.net.backbone, calibration, 0)
    matcher.eval()

    def run_ours(a, b):  # type: ignore[no-untyped-def]
        result = matcher._match(a, b)
        return result.keypoints0, result.keypoints1, result.confidence

    run_ours.matcher = matcher  # type: ignore[attr-defined]
    return run_ours, left, right


def _delta_vs_fp32(matcher, left, right, bf16_out) -> dict:  # type: ignore[no-untyped-def]
    """Our bf16 result against our fp32 result on the same inputs.

    A match is "the same" when its image-0 cell is matched in both runs and the image-1 points are < 8 px apart (same
    coarse partner); differences are reported over those.
    """
    import torch

    fp32 = type(matcher)({"precision": "float32"}, weights={"gim_loftr_50h": matcher.net.state_dict()})
    with torch.inference_mode():
        r = fp32._match(left, right)
    ref = {tuple(k): i for i, k in enumerate(r.keypoints0.round(decimals=2).tolist())}
    got = {tuple(k): i for i, k in enumerate(bf16_out[0].round(decimals=2).tolist())}
    shared = sorted(ref.keys() & got.keys())
    i_ref = torch.tensor([ref[k] for k in shared], dtype=torch.long)
    i_got = torch.tensor([got[k] for k in shared], dtype=torch.long)
    dk = (r.keypoints1[i_ref] - bf16_out[1][i_got]).norm(dim=1)
    same = dk < 8
    dc = (r.confidence[i_ref] - bf16_out[2][i_got]).abs()[same]
    dk = dk[same]
    out = {"fp32_matches": len(ref), "bf16_matches": len(got), "same_matches": int(same.sum())}
    if len(dk):
        out.update(kp1_max_px=round(dk.max().item(), 4), kp1_median_px=round(dk.median().item(), 4),
                   conf_max=round(dc.max().item(), 4), conf_median=round(dc.median().item(), 4))
    return out


def worker(variant: str, height: int, width: int, reps: int, threads: int) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    torch.set_num_threads(threads)
    run, left, right = _build(variant, height, width)
    gemm_dtype = "bfloat16" if variant == "ours-bf16" else "float32"
    gemm_before = sgemm_gflops(gemm_dtype)
    with torch.inference_mode():
        out = run(left, right)  # warm-up
        walls, cpus = [], []
        for _ in range(reps):
            wall, cpu = time.perf_counter(), time.process_time()
            out = run(left, right)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
        with FlopCounterMode(display=False) as counter:
            run(left, right)
    flops = counter.get_total_flops()
    gemm = max(gemm_before, sgemm_gflops(gemm_dtype))
    wall = statistics.median(walls)
    floor = flops / (gemm * 1e9)
    row = {"variant": variant, "size": f"{width}x{height}", "wall_s": wall, "cpu_s": statistics.median(cpus),
           "gflop": flops / 1e9, "gemm_gflops": gemm, "floor_s": floor, "ratio": wall / floor,
           "cpu_ratio": statistics.median(cpus) / (threads * floor),
           "matches": len(out[2]), "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}
    if variant == "ours-bf16":
        with torch.inference_mode():
            row["bf16_delta"] = _delta_vs_fp32(run.matcher, left, right, out)  # type: ignore[attr-defined]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["480x640", "240x320"], help="HxW")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", nargs=3, metavar=("VARIANT", "H", "W"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        variant, h, w = args.worker
        print(json.dumps(worker(variant, int(h), int(w), args.reps, args.threads)))
        return
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(REPO)}
    print(f"# GIM-LoFTR benchmark, {args.threads} threads, median of {args.reps} after 1 warm-up, torch "
          f"{__import__('torch').__version__}")
    print(f"{'size':>8} {'variant':>11} {'wall s':>7} {'CPU s':>7} {'GFLOP':>7} {'gemm GF/s':>9} {'floor s':>7} "
          f"{'ratio':>6} {'CPU ratio':>9} {'matches':>7} {'RSS GB':>6}")
    rows = []
    for size in args.sizes:
        h, w = (int(v) for v in size.split("x"))
        for variant in args.variants:
            proc = subprocess.run([sys.executable, __file__, "--worker", variant, str(h), str(w), "--reps",
                                   str(args.reps), "--threads", str(args.threads)], capture_output=True, text=True,
                                  env=env, check=False)
            if proc.returncode != 0:
                reason = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.stdout.strip()
                print(f"{w}x{h:<4} {variant:>11}  skipped: {reason}")
                continue
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(f"{row['size']:>8} {variant:>11} {row['wall_s']:7.2f} {row['cpu_s']:7.2f} {row['gflop']:7.1f} "
                  f"{row['gemm_gflops']:9.1f} {row['floor_s']:7.2f} {row['ratio']:6.2f} {row['cpu_ratio']:9.2f} "
                  f"{row['matches']:7d} "
                  f"{row['peak_rss_gb']:6.2f}", flush=True)
    for row in rows:
        if "bf16_delta" in row:
            print(f"bf16 vs fp32 ({row['size']}): {json.dumps(row['bf16_delta'])}")
    by_key = {(r["size"], r["variant"]): r for r in rows}
    for size in sorted({r["size"] for r in rows}):
        least = min(r["gflop"] for r in rows if r["size"] == size)
        ratios = ", ".join(f"{r['variant']} {r['wall_s'] / (least / r['gemm_gflops']):.2f}"
                           for r in rows if r["size"] == size)
        print(f"{size}: ratio against the smallest FLOP count ({least:.1f} GFLOP): {ratios}")
        original, ours = by_key.get((size, "original")), by_key.get((size, "ours"))
        if original and ours:
            print(f"{size}: ours/original wall {ours['wall_s'] / original['wall_s']:.2f}, "
                  f"peak RSS {ours['peak_rss_gb']:.2f} vs {original['peak_rss_gb']:.2f} GB")


if __name__ == "__main__":
    main()
