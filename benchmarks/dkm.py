"""gim_dkm against GIM's original DKMv3: wall time, CPU time, peak memory and output agreement, same weights.

Every measurement runs in its own subprocess (peak RSS is per process), on the motorcycle pair bundled with
scikit-image, with the same random weights for every implementation:

* ``original`` — GIM's code from the ``imcui`` wheel (skipped with a note when it is not importable; see
  ``parity/README.md`` for the venv), run as ``demo.py`` runs it: pad, ``model.match``,
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
from pathlib import Path
from typing import Any

from _side_by_side import dense_agreement, measure_worker, motorcycle, pad_dense_sample, parse_arguments, side_by_side

CONFIGS: dict[str, dict[str, Any]] = {
    "defaults": {"h": 672, "w": 896, "pad_to_aspect": True, "upsample": True, "upsample_res": (1152, 1536)},
    "480x640": {"h": 480, "w": 640, "pad_to_aspect": False, "upsample": False},
    "240x320": {"h": 240, "w": 320, "pad_to_aspect": False, "upsample": False},
}


# ------------------------------------------------------------------------------------------------------- worker


def worker(args: argparse.Namespace) -> None:
    """One implementation, one configuration; prints one JSON line and saves the outputs to ``args.out``."""
    import torch

    from gim_plugins.models.gim_dkm import GIMDKM

    torch.set_num_threads(args.threads)
    conf = {**CONFIGS[args.config], "num_samples": args.num_samples, "seed": args.seed}
    state = torch.load(args.weights, map_location="cpu", weights_only=True)
    images = motorcycle(args.device)
    if args.impl == "original":
        from parity.original_dkm import build_original, looped_inverse

        model = build_original(conf["h"], conf["w"], conf["upsample"])
        model.load_state_dict(state, strict=True)
        model.to(args.device)

        def dense(a: Any, b: Any) -> tuple[Any, Any]:
            with looped_inverse():
                return model.match(a, b)

        def sample(warp: Any, certainty: Any) -> tuple[Any, Any]:
            torch.manual_seed(args.seed)
            return model.sample(warp, certainty, args.num_samples)
    else:
        precision = "bf16" if args.impl == "ours-bf16" else "fp32"
        matcher = GIMDKM({**conf, "precision": precision}, weights=state, device=args.device)

        def dense(a: Any, b: Any) -> tuple[Any, Any]:
            with torch.inference_mode():
                return matcher.dense(a, b)

        def sample(warp: Any, certainty: Any) -> tuple[Any, Any]:
            with torch.inference_mode():
                return matcher.sample(warp, certainty)
    del state

    def save(outputs: tuple[Any, ...]) -> dict[str, Any]:
        warp, certainty, matches, k0, k1 = outputs
        return {"warp": warp.float().cpu(), "certainty": certainty.float().cpu(), "matches": matches.cpu(),
                "keypoints0": (k0 - 0.5).cpu(), "keypoints1": (k1 - 0.5).cpu()}

    measure_worker(args, lambda: pad_dense_sample(images, conf["h"], conf["w"], conf["pad_to_aspect"], dense, sample),
                   save)


# ------------------------------------------------------------------------------------------------------- parent


def _make_weights(directory: Path, seed: int) -> list[str]:
    import torch

    from gim_plugins.models._arch.dkm import DKMv3
    from parity.original_dkm import randomize_batchnorm

    torch.manual_seed(seed)
    net = DKMv3()
    randomize_batchnorm(net, torch.Generator().manual_seed(seed))
    path = directory / "weights.pt"
    torch.save(net.state_dict(), path)
    return ["--weights", str(path)]


def _compare(config: str, runs: dict[str, dict[str, Any]], outs: dict[str, Path]) -> list[str]:
    import torch

    from gim_plugins.datasets.motorcycle import disparity_agreement, load_disparity

    lines = []
    loaded = {impl: torch.load(outs[impl], weights_only=True) for impl in runs}
    if "original" in runs and "ours-fp32" in runs:
        a, b = loaded["original"], loaded["ours-fp32"]
        warp_diff, cert_diff, same_rows = dense_agreement(a, b)
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
    args = parse_arguments(__doc__.splitlines()[0], argv, quick_help="240×320 only (a few minutes)",
                           impls="original,ours-fp32,ours-bf16", weight_flags=["--weights"])
    if args.worker:
        args.impl = args.worker
        worker(args)
        return 0
    from parity.original_dkm import SETUP_HINT, gim_root

    return side_by_side(Path(__file__).resolve(), args, CONFIGS, ["defaults", "480x640"], ["240x320"],
                        SETUP_HINT if gim_root() is None else None, _make_weights, _compare)


if __name__ == "__main__":
    raise SystemExit(main())
