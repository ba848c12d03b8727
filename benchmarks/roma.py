"""gim_roma against GIM's original RoMa: wall time, CPU time, peak memory and output agreement, same weights.

Every measurement runs in its own subprocess (peak RSS is per process), on the motorcycle pair bundled with
scikit-image, with the same random weights (GIM part and DINOv2) for both implementations:

* ``original`` — GIM's code from the ``imcui`` wheel (skipped with a note when it is not importable; see
  ``tests/parity/original_roma.py``), run as ``demo.py`` runs it: pad to a square, ``model.match``,
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
    "defaults": {"size": 672, "pad_to_aspect": True, "upsample": True},
    "224": {"size": 224, "pad_to_aspect": False, "upsample": False},
}


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
    from gim_plugins.models.gim_roma import GIMRoMa

    torch.set_num_threads(args.threads)
    conf = CONFIGS[args.config]
    size = conf["size"]
    state = torch.load(args.weights, map_location="cpu", weights_only=True)
    dinov2 = torch.load(args.dinov2, map_location="cpu", weights_only=True)
    image0, image1 = _images(args.device)
    if args.impl == "original":
        sys.path.insert(0, str(REPO / "tests" / "parity"))
        from original_dkm import looped_inverse
        from original_roma import build_original_roma

        model = build_original_roma(size, conf["upsample"], dinov2)
        model.load_state_dict(state, strict=True)
        model.to(args.device)
    else:
        matcher = GIMRoMa({"h": size, "w": size, "upsample": conf["upsample"], "upsample_res": (2 * size, 2 * size),
                           "pad_to_aspect": conf["pad_to_aspect"], "num_samples": args.num_samples,
                           "seed": args.seed},
                          weights={"gim_roma_100h": state, "dinov2_vitl14": dinov2}, device=args.device)
    del state, dinov2

    def run_once() -> tuple[Any, ...]:
        pads, padded = [], []
        for image in (image0, image1):
            if conf["pad_to_aspect"]:
                left, right, top, bottom = padding_to_aspect(*image.shape[-2:], size, size)
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
        k0, _, confidence = matches_to_keypoints(matches, confidence, tuple(p.shape[-2:] for p in padded), pads,
                                                  (image0.shape[-2:], image1.shape[-2:]), bounds_filter=True,
                                                  drop_zero_confidence=False)
        return warp, certainty, matches, k0

    for _ in range(args.warmup):
        run_once()
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    _sync(args.device)
    wall, cpu = time.perf_counter(), time.process_time()
    warp, certainty, matches, k0 = run_once()
    _sync(args.device)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    report = {"impl": args.impl, "config": args.config, "wall_s": wall, "cpu_s": cpu,
              "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9,
              "matches": len(k0), "torch": torch.__version__, "threads": torch.get_num_threads()}
    if args.device.startswith("cuda"):
        report["cuda_peak_gb"] = torch.cuda.max_memory_allocated() / 1e9
        report["gpu"] = torch.cuda.get_device_name()
    torch.save({"warp": warp.float().cpu(), "certainty": certainty.float().cpu(), "matches": matches.cpu()},
               args.out)
    print("RESULT " + json.dumps(report), flush=True)


def _make_weights(directory: Path, seed: int) -> tuple[Path, Path]:
    import torch

    sys.path.insert(0, str(REPO / "tests" / "parity"))
    from original_dkm import randomize_batchnorm

    from gim_plugins.models._arch.roma import RoMa

    torch.manual_seed(seed)
    net = RoMa()
    randomize_batchnorm(net, torch.Generator().manual_seed(seed))
    paths = directory / "gim_roma.pt", directory / "dinov2.pt"
    torch.save(net.state_dict(), paths[0])
    torch.save(net.encoder.dinov2.state_dict(), paths[1])
    return paths


def _run_worker(impl: str, config: str, args: argparse.Namespace, weights: tuple[Path, Path],
                out: Path) -> dict[str, Any] | None:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", impl, "--config", config, "--weights",
           str(weights[0]), "--dinov2", str(weights[1]), "--out", str(out), "--device", args.device, "--threads",
           str(args.threads), "--seed", str(args.seed), "--num-samples", str(args.num_samples), "--warmup",
           str(args.warmup)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    print(f"  {impl} @ {config} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}", file=sys.stderr)
    return None


def _compare(runs: dict[str, dict[str, Any]], outs: dict[str, Path]) -> list[str]:
    import torch

    if not {"original", "ours"} <= set(runs):
        return []
    a, b = (torch.load(outs[impl], weights_only=True) for impl in ("original", "ours"))
    warp_diff = (a["warp"] - b["warp"]).abs().max().item()
    cert_diff = (a["certainty"] - b["certainty"]).abs().max().item()
    same = (a["matches"].shape == b["matches"].shape
            and ((a["matches"] - b["matches"]).abs().amax(dim=1) <= 1e-4).float().mean().item())
    o, n = runs["original"], runs["ours"]
    return [
        f"  ours vs original: max |Δwarp| {warp_diff:.2e}, max |Δcertainty| {cert_diff:.2e}, same sampled matches "
        f"(same seed, each on its own dense output): {100 * float(same):.2f} %",
        f"  RATIOS ours/original: wall {n['wall_s'] / o['wall_s']:.2f}x, CPU {n['cpu_s'] / o['cpu_s']:.2f}x, "
        f"peak RSS {n['peak_rss_gb'] / o['peak_rss_gb']:.2f}x"
        + (f", CUDA peak {n['cuda_peak_gb'] / o['cuda_peak_gb']:.2f}x" if "cuda_peak_gb" in n else ""),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="224 only")
    parser.add_argument("--configs", default=None, help=f"comma-separated, from {', '.join(CONFIGS)}")
    parser.add_argument("--impls", default="original,ours")
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
    parser.add_argument("--dinov2", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.warmup is None:
        args.warmup = 1 if args.device.startswith("cuda") else 0
    sys.path.insert(0, str(REPO))
    if args.worker:
        args.impl = args.worker
        worker(args)
        return 0
    configs = args.configs.split(",") if args.configs else (["224"] if args.quick else ["defaults", "224"])
    impls = args.impls.split(",")
    sys.path.insert(0, str(REPO / "tests" / "parity"))
    from original_roma import SETUP_HINT, roma_root

    if "original" in impls and roma_root() is None:
        print(f"note: original not measured: {SETUP_HINT}")
        impls.remove("original")
    everything = []
    with tempfile.TemporaryDirectory(prefix="roma-bench-") as tmp:
        weights = _make_weights(Path(tmp), args.seed)
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
            for line in _compare(runs, outs):
                print(line, flush=True)
    if args.json:
        args.json.write_text(json.dumps(everything, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
