"""gim_dkm against GIM's original DKMv3: wall time, CPU time, peak memory and output agreement, same weights.

Every measurement runs in its own subprocess (peak RSS is per process), on the motorcycle pair bundled with
scikit-image, with the same random weights for every implementation:

* ``original`` — GIM's code from the ``imcui`` wheel (skipped with a note when it is not importable; see
  ``tests/parity/original_dkm.py`` for the venv), run as ``demo.py`` runs it: pad, ``model.match``,
  ``torch.manual_seed(seed)``, ``model.sample``;
* ``ours-fp32`` and ``ours-bf16`` — :class:`gim_plugins.models.gim_dkm.GIMDKM` with ``precision`` fp32 / bf16.

Configurations: ``defaults`` (GIM's demo: pad to 4:3, 672×896 + 1152×1536 refinement pass, 5000 samples) and
``480x640`` (480×640, no refinement pass, no padding, 5000 samples); ``--quick`` runs ``240x320`` only.

Usage (the original at GIM defaults needs ≈14 GB: run nothing else heavy beside it)::

    <refvenv>/bin/python benchmarks/dkm.py                                         # CPU, both configurations
    <refvenv>/bin/python benchmarks/dkm.py --quick                                 # 240×320 only
    <refvenv>/bin/python benchmarks/dkm.py --device cuda                           # on a GPU

Reported: seconds (wall, CPU), peak memory (RSS; on CUDA also ``max_memory_allocated``), ratios ours/original, the
max abs difference of the dense warp and certainty, whether the sampled matches are identical under the same seed,
and for bf16 the warp/certainty delta to fp32 (pixels of the output grid) and the GT-disparity agreement of both.
Timings are noisy on a shared machine; the ratios come from the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CONFIGS: dict[str, dict[str, Any]] = {
    "defaults": {"h": 672, "w": 896, "pad_to_aspect": True, "upsample": True, "upsample_res": (1152, 1536)},
    "480x640": {"h": 480, "w": 640, "pad_to_aspect": False, "upsample": False},
    "240x320": {"h": 240, "w": 320, "pad_to_aspect": False, "upsample": False},
}


# ------------------------------------------------------------------------------------------------------- worker


def _images(device: str) -> tuple[Any, Any]:
    from gim_plugins.datasets.motorcycle import paths
    from gim_plugins.io import read_image, to_image_tensor

    files = paths()
    return tuple(to_image_tensor(read_image(files[s]))[None].to(device) for s in ("left", "right"))


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def worker(args: argparse.Namespace) -> None:
    """One implementation, one configuration; prints one JSON line and saves the outputs to ``args.out``."""
    import torch

    from gim_plugins.models.dense_warp import matches_to_keypoints, padding_to_aspect
    from gim_plugins.models.gim_dkm import GIMDKM

    torch.set_num_threads(args.threads)
    conf = {**CONFIGS[args.config], "num_samples": args.num_samples, "seed": args.seed}
    state = torch.load(args.weights, map_location="cpu", weights_only=True)
    image0, image1 = _images(args.device)
    if args.impl == "original":
        sys.path.insert(0, str(REPO / "tests" / "parity"))
        from original_dkm import build_original, looped_inverse

        model = build_original(conf["h"], conf["w"], conf["upsample"])
        model.load_state_dict(state, strict=True)
        model.to(args.device)
    else:
        precision = "bf16" if args.impl == "ours-bf16" else "fp32"
        matcher = GIMDKM({**conf, "precision": precision}, weights=state, device=args.device)
    del state

    def run_once() -> tuple[Any, ...]:
        pads = []
        padded = []
        for image in (image0, image1):
            if conf["pad_to_aspect"]:
                left, right, top, bottom = padding_to_aspect(*image.shape[-2:], conf["h"], conf["w"])
                padded.append(torch.nn.functional.pad(image, (left, right, top, bottom)))
                pads.append((left, top))
            else:
                padded.append(image)
                pads.append((0, 0))
        if args.impl == "original":
            with looped_inverse():
                warp, certainty = model.match(padded[0], padded[1])
            torch.manual_seed(args.seed)
            matches, confidence = model.sample(warp, certainty, args.num_samples)
        else:
            with torch.inference_mode():
                warp, certainty = matcher.dense(padded[0], padded[1])
                matches, confidence = matcher.sample(warp, certainty)
        k0, k1, confidence = matches_to_keypoints(matches, confidence, tuple(p.shape[-2:] for p in padded), pads,
                                                  (image0.shape[-2:], image1.shape[-2:]), bounds_filter=True,
                                                  drop_zero_confidence=False)
        return warp, certainty, matches, k0, k1

    for _ in range(args.warmup):  # GPUs: kernel loading and autotuning belong to the first call, not to the pair
        run_once()
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    _sync(args.device)
    wall, cpu = time.perf_counter(), time.process_time()
    warp, certainty, matches, k0, k1 = run_once()
    _sync(args.device)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    report = {"impl": args.impl, "config": args.config, "wall_s": wall, "cpu_s": cpu,
              "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9,
              "matches": len(k0), "torch": torch.__version__, "threads": torch.get_num_threads()}
    if args.device.startswith("cuda"):
        report["cuda_peak_gb"] = torch.cuda.max_memory_allocated() / 1e9
        report["gpu"] = torch.cuda.get_device_name()
    torch.save({"warp": warp.float().cpu(), "certainty": certainty.float().cpu(), "matches": matches.cpu(),
                "keypoints0": (k0 - 0.5).cpu(), "keypoints1": (k1 - 0.5).cpu()}, args.out)
    print("RESULT " + json.dumps(report), flush=True)


# ------------------------------------------------------------------------------------------------------- parent


def _make_weights(path: Path, seed: int) -> None:
    import torch

    sys.path.insert(0, str(REPO / "tests" / "parity"))
    from original_dkm import randomize_batchnorm

    from gim_plugins.models._arch.dkm import DKMv3

    torch.manual_seed(seed)
    net = DKMv3()
    randomize_batchnorm(net, torch.Generator().manual_seed(seed))
    torch.save(net.state_dict(), path)


def _run_worker(impl: str, config: str, args: argparse.Namespace, weights: Path, out: Path) -> dict[str, Any] | None:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", impl, "--config", config, "--weights",
           str(weights), "--out", str(out), "--device", args.device, "--threads", str(args.threads), "--seed",
           str(args.seed), "--num-samples", str(args.num_samples), "--warmup", str(args.warmup)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    print(f"  {impl} @ {config} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}", file=sys.stderr)
    return None


def _compare(config: str, runs: dict[str, dict[str, Any]], outs: dict[str, Path]) -> list[str]:
    import torch

    from gim_plugins.datasets.motorcycle import disparity_agreement, load_disparity

    lines = []
    loaded = {impl: torch.load(outs[impl], weights_only=True) for impl in runs}
    if "original" in runs and "ours-fp32" in runs:
        a, b = loaded["original"], loaded["ours-fp32"]
        warp_diff = (a["warp"] - b["warp"]).abs().max().item()
        cert_diff = (a["certainty"] - b["certainty"]).abs().max().item()
        same_rows = (a["matches"].shape == b["matches"].shape
                     and ((a["matches"] - b["matches"]).abs().amax(dim=1) <= 1e-4).float().mean().item())
        same = f"{100 * float(same_rows):.2f} % (rows equal within 1e-4)"
        o, n = runs["original"], runs["ours-fp32"]
        lines += [
            f"  fp32 vs original: max |Δwarp| {warp_diff:.2e}, max |Δcertainty| {cert_diff:.2e}, "
            f"same sampled matches (same seed): {same}",
            f"  RATIOS ours/original: wall {n['wall_s'] / o['wall_s']:.2f}x (goal <= 0.5), "
            f"CPU {n['cpu_s'] / o['cpu_s']:.2f}x, peak RSS {n['peak_rss_gb'] / o['peak_rss_gb']:.2f}x (goal <= 0.33)"
            + (f", CUDA peak {n['cuda_peak_gb'] / o['cuda_peak_gb']:.2f}x" if "cuda_peak_gb" in n else ""),
        ]
    if "ours-bf16" in runs and "ours-fp32" in runs:
        a, b = loaded["ours-fp32"], loaded["ours-bf16"]
        h, w2 = a["certainty"].shape
        scale = torch.tensor([w2 / 4, h / 2, w2 / 4, h / 2])  # normalised → pixels of the output grid (per half)
        delta = ((a["warp"] - b["warp"]).abs() * scale).amax(-1)
        sampled = a["certainty"] > 0.05
        d = delta[sampled] if sampled.any() else delta.flatten()
        q = torch.quantile(d[torch.randperm(len(d), generator=torch.Generator().manual_seed(0))[:1_000_000]],
                           torch.tensor([0.5, 0.99]))
        disp = load_disparity()
        share32, _ = disparity_agreement(a["keypoints0"].numpy(), a["keypoints1"].numpy(), disp)
        share16, _ = disparity_agreement(b["keypoints0"].numpy(), b["keypoints1"].numpy(), disp)
        f, g = runs["ours-fp32"], runs["ours-bf16"]
        lines += [
            f"  bf16 vs fp32: speed-up wall {f['wall_s'] / g['wall_s']:.2f}x, CPU {f['cpu_s'] / g['cpu_s']:.2f}x; "
            f"|Δwarp| on certainty>0.05 px: median {q[0]:.3f}, p99 {q[1]:.3f}, max {d.max():.2f}; "
            f"max |Δcertainty| {(a['certainty'] - b['certainty']).abs().max():.3f}",
            f"  GT disparity agreement (3 px; random weights, so near chance): fp32 {100 * share32:.1f} %, "
            f"bf16 {100 * share16:.1f} %",
        ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="240×320 only (a few minutes)")
    parser.add_argument("--configs", default=None, help=f"comma-separated, from {', '.join(CONFIGS)}")
    parser.add_argument("--impls", default="original,ours-fp32,ours-bf16")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed runs before the timed one (default: 1 on CUDA, 0 on CPU)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-samples", type=int, default=5000)
    parser.add_argument("--json", type=Path, default=None, help="also write all measurements here")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--config", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--weights", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.warmup is None:
        args.warmup = 1 if args.device.startswith("cuda") else 0
    sys.path.insert(0, str(REPO))
    if args.worker:
        args.impl = args.worker
        worker(args)
        return 0
    configs = args.configs.split(",") if args.configs else (["240x320"] if args.quick else ["defaults", "480x640"])
    impls = args.impls.split(",")
    sys.path.insert(0, str(REPO / "tests" / "parity"))
    from original_dkm import SETUP_HINT, gim_root

    if "original" in impls and gim_root() is None:
        print(f"note: original not measured: {SETUP_HINT}")
        impls.remove("original")
    everything = []
    with tempfile.TemporaryDirectory(prefix="dkm-bench-") as tmp:
        weights = Path(tmp) / "weights.pt"
        _make_weights(weights, args.seed)
        print(f"device {args.device}, {args.threads} threads, python {sys.executable}")
        for config in configs:
            print(f"\n== {config}: {CONFIGS[config]} ==")
            runs, outs = {}, {}
            for impl in impls:
                outs[impl] = Path(tmp) / f"{impl}-{config}.pt"
                result = _run_worker(impl, config, args, weights, outs[impl])
                if result is None:
                    continue
                runs[impl] = result
                everything.append(result)
                extra = f", CUDA peak {result['cuda_peak_gb']:.2f} GB" if "cuda_peak_gb" in result else ""
                print(f"  {impl:10s} wall {result['wall_s']:7.1f} s  CPU {result['cpu_s']:7.1f} s  peak RSS "
                      f"{result['peak_rss_gb']:5.2f} GB{extra}  matches {result['matches']}", flush=True)
            for line in _compare(config, runs, outs):
                print(line, flush=True)
    if args.json:
        args.json.write_text(json.dumps(everything, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
