"""gim_roma against GIM's original RoMa: wall time, CPU time, peak memory and output agreement, same weights.

Every measurement runs in its own subprocess (peak RSS is per process), on the motorcycle pair bundled with
scikit-image, with the same random weights (GIM part and DINOv2) for both implementations:

* ``original`` — GIM's code from the ``imcui`` wheel (skipped with a note when it is not importable; see
  ``parity/README.md``), run as ``demo.py`` runs it: pad to a square, ``model.match``,
  ``torch.manual_seed(seed)``, ``model.sample``;
* ``ours`` — :class:`gim_plugins.models.gim_roma.GIMRoMa`.

Configurations: ``defaults`` (GIM's demo: pad to 1:1, 672² + 1344² refinement pass, 5000 samples) and ``224``
(224², no refinement pass, no padding); ``--quick`` runs ``224`` only.

Usage (the original at GIM defaults needs well over 10 GB: run nothing else heavy beside it)::

    <refvenv>/bin/python benchmarks/roma.py                                            # CPU, both configurations
    <refvenv>/bin/python benchmarks/roma.py --device cuda                              # on a GPU
    .venv/bin/python benchmarks/roma.py --impls ours --device cuda                    # ours only, no refvenv

Timings are noisy on a shared machine; the ratios come from the same run.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from _side_by_side import (
    dense_agreement,
    measure_worker,
    motorcycle,
    pad_dense_sample,
    parse_arguments,
    side_by_side,
)

CONFIGS: dict[str, dict[str, Any]] = {
    "defaults": {"size": 672, "pad_to_aspect": True, "upsample": True},
    "224": {"size": 224, "pad_to_aspect": False, "upsample": False},
}



def worker(args: argparse.Namespace) -> None:
    """One implementation, one configuration; prints one JSON line and saves the outputs to ``args.out``."""
    import torch

    from gim_plugins.models.gim_roma import GIMRoMa

    torch.set_num_threads(args.threads)
    conf = CONFIGS[args.config]
    size = conf["size"]
    state = torch.load(args.weights, map_location="cpu", weights_only=True)
    dinov2 = torch.load(args.dinov2, map_location="cpu", weights_only=True)
    images = motorcycle(args.device)
    if args.impl == "original":
        from parity.original_dkm import looped_inverse
        from parity.original_roma import build_original_roma

        model = build_original_roma(size, conf["upsample"], dinov2)
        model.load_state_dict(state, strict=True)
        model.to(args.device)

        def dense(a: Any, b: Any) -> tuple[Any, Any]:
            with looped_inverse():
                return model.match(a, b)

        def sample(warp: Any, certainty: Any) -> tuple[Any, Any]:
            torch.manual_seed(args.seed)
            return model.sample(warp, certainty, args.num_samples)
    else:
        matcher = GIMRoMa({"h": size, "w": size, "upsample": conf["upsample"], "upsample_res": (2 * size, 2 * size),
                           "pad_to_aspect": conf["pad_to_aspect"], "num_samples": args.num_samples,
                           "seed": args.seed},
                          weights={"gim_roma_100h": state, "dinov2_vitl14": dinov2}, device=args.device)

        def dense(a: Any, b: Any) -> tuple[Any, Any]:
            with torch.inference_mode():
                return matcher.dense(a, b)

        def sample(warp: Any, certainty: Any) -> tuple[Any, Any]:
            with torch.inference_mode():
                return matcher.sample(warp, certainty)
    del state, dinov2

    def save(outputs: tuple[Any, ...]) -> dict[str, Any]:
        warp, certainty, matches = outputs[:3]
        return {"warp": warp.float().cpu(), "certainty": certainty.float().cpu(), "matches": matches.cpu()}

    measure_worker(args, lambda: pad_dense_sample(images, size, size, conf["pad_to_aspect"], dense, sample), save)


def _make_weights(directory: Path, seed: int) -> list[str]:
    import torch

    from gim_plugins.models._arch.roma import RoMa
    from parity.original_dkm import randomize_batchnorm

    torch.manual_seed(seed)
    net = RoMa()
    randomize_batchnorm(net, torch.Generator().manual_seed(seed))
    paths = directory / "gim_roma.pt", directory / "dinov2.pt"
    torch.save(net.state_dict(), paths[0])
    torch.save(net.encoder.dinov2.state_dict(), paths[1])
    return ["--weights", str(paths[0]), "--dinov2", str(paths[1])]


def _compare(config: str, runs: dict[str, dict[str, Any]], outs: dict[str, Path]) -> list[str]:
    import torch

    if not {"original", "ours"} <= set(runs):
        return []
    a, b = (torch.load(outs[impl], weights_only=True) for impl in ("original", "ours"))
    warp_diff, cert_diff, same = dense_agreement(a, b)
    o, n = runs["original"], runs["ours"]
    return [
        f"  ours vs original: max |Δwarp| {warp_diff:.2e}, max |Δcertainty| {cert_diff:.2e}, same sampled matches "
        f"(same seed, each on its own dense output): {100 * float(same):.2f} %",
        f"  RATIOS ours/original: wall {n['wall_s'] / o['wall_s']:.2f}x, CPU {n['cpu_s'] / o['cpu_s']:.2f}x, "
        f"peak RSS {n['peak_rss_gb'] / o['peak_rss_gb']:.2f}x"
        + (f", CUDA peak {n['cuda_peak_gb'] / o['cuda_peak_gb']:.2f}x" if "cuda_peak_gb" in n else ""),
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(__doc__.splitlines()[0], argv, quick_help="224 only", impls="original,ours",
                           weight_flags=["--weights", "--dinov2"])
    if args.worker:
        args.impl = args.worker
        worker(args)
        return 0
    from parity.original_roma import SETUP_HINT, roma_root

    return side_by_side(Path(__file__).resolve(), args, CONFIGS, ["defaults", "224"], ["224"],
                        SETUP_HINT if roma_root() is None else None, _make_weights, _compare)


if __name__ == "__main__":
    raise SystemExit(main())
