"""The harness ``benchmarks/dkm.py`` and ``benchmarks/roma.py`` share: ours against GIM's original dense matcher.

Each measurement runs in its own subprocess of the calling script (``--worker IMPL --config NAME``), because peak
RSS is per process; the parent makes one set of random weights, runs every implementation on every configuration and
prints what the script's ``compare`` makes of their saved outputs. Only the network-specific parts (building each
implementation, the weights, the comparison) stay in the scripts.
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
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
Pair = tuple[Any, Any]


def parse_arguments(description: str, argv: list[str] | None, *, quick_help: str, impls: str,
                    weight_flags: Sequence[str]) -> argparse.Namespace:
    """The shared command line (``weight_flags``: the hidden path options the workers get their weights by)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--configs", default=None, help="comma-separated configuration names")
    parser.add_argument("--impls", default=impls)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed runs before the timed one (default: 1 on CUDA, 0 on CPU)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-samples", type=int, default=5000)
    parser.add_argument("--json", type=Path, default=None, help="also write all measurements here")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--config", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    for flag in weight_flags:
        parser.add_argument(flag, type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.warmup is None:
        args.warmup = 1 if args.device.startswith("cuda") else 0
    return args


def motorcycle(device: str) -> Pair:
    """The motorcycle pair as ``(1, 3, H, W)`` float tensors in [0, 1] on ``device``."""
    from gim_plugins.datasets.motorcycle import paths
    from gim_plugins.io import read_image, to_image_tensor

    files = paths()
    return tuple(to_image_tensor(read_image(files[s]))[None].to(device) for s in ("left", "right"))


def pad_dense_sample(images: Pair, h: int, w: int, pad_to_aspect: bool, dense: Callable[[Any, Any], Pair],
                     sample: Callable[[Any, Any], Pair]) -> tuple[Any, ...]:
    """GIM's demo path for either implementation: centre-pad to ``w:h``, ``dense`` (``model.match``), ``sample``,
    keypoints in GIM's corner convention with the in-image filter. Returns ``(warp, certainty, matches, k0, k1)``."""
    import torch

    from gim_plugins.models.dense_warp import matches_to_keypoints, padding_to_aspect

    pads, padded = [], []
    for image in images:
        left, right, top, bottom = padding_to_aspect(*image.shape[-2:], h, w) if pad_to_aspect else (0, 0, 0, 0)
        padded.append(torch.nn.functional.pad(image, (left, right, top, bottom)) if pad_to_aspect else image)
        pads.append((left, top))
    warp, certainty = dense(padded[0], padded[1])
    matches, confidence = sample(warp, certainty)
    k0, k1, _ = matches_to_keypoints(matches, confidence, tuple(p.shape[-2:] for p in padded), pads,
                                     tuple(image.shape[-2:] for image in images), bounds_filter=True,
                                     drop_zero_confidence=False)
    return warp, certainty, matches, k0, k1


def measure_worker(args: argparse.Namespace, run_once: Callable[[], tuple[Any, ...]],
                   save: Callable[[tuple[Any, ...]], Mapping[str, Any]]) -> None:
    """Warm up, time one ``run_once()`` (wall, CPU, peak RSS, CUDA peak), save ``save(outputs)`` to ``args.out``
    and print the ``RESULT`` line the parent reads."""
    import torch

    cuda = args.device.startswith("cuda")
    for _ in range(args.warmup):  # GPUs: kernel loading and autotuning belong to the first call, not to the pair
        run_once()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    outputs = run_once()
    if cuda:
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    report = {"impl": args.impl, "config": args.config, "wall_s": wall, "cpu_s": cpu,
              "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9,
              "matches": len(outputs[3]), "torch": torch.__version__, "threads": torch.get_num_threads()}
    if cuda:
        report["cuda_peak_gb"] = torch.cuda.max_memory_allocated() / 1e9
        report["gpu"] = torch.cuda.get_device_name()
    torch.save(dict(save(outputs)), args.out)
    print("RESULT " + json.dumps(report), flush=True)


def dense_agreement(a: Mapping[str, Any], b: Mapping[str, Any]) -> tuple[float, float, float]:
    """Max |Δwarp|, max |Δcertainty| and the share of sampled match rows equal within 1e-4 (0 when the counts
    differ) between two workers' saved outputs."""
    warp_diff = (a["warp"] - b["warp"]).abs().max().item()
    cert_diff = (a["certainty"] - b["certainty"]).abs().max().item()
    same = (a["matches"].shape == b["matches"].shape
            and ((a["matches"] - b["matches"]).abs().amax(dim=1) <= 1e-4).float().mean().item())
    return warp_diff, cert_diff, float(same)


def _run_worker(script: Path, impl: str, config: str, args: argparse.Namespace, weight_args: Sequence[str],
                out: Path) -> dict[str, Any] | None:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, str(script), "--worker", impl, "--config", config, *weight_args, "--out", str(out),
           "--device", args.device, "--threads", str(args.threads), "--seed", str(args.seed), "--num-samples",
           str(args.num_samples), "--warmup", str(args.warmup)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    print(f"  {impl} @ {config} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}", file=sys.stderr)
    return None


def side_by_side(script: Path, args: argparse.Namespace, configs: Mapping[str, Any], default_configs: Sequence[str],
                 quick_configs: Sequence[str], original_hint: str | None,
                 make_weights: Callable[[Path, int], Sequence[str]],
                 compare: Callable[[str, dict[str, dict[str, Any]], dict[str, Path]], list[str]]) -> int:
    """The parent: weights (``make_weights(tmp, seed)`` returns the worker's weight options), every implementation
    on every configuration, one line per run and ``compare``'s lines per configuration; ``--json`` keeps them all.
    ``original_hint`` is why the original cannot run here (``None`` when it can)."""
    names = args.configs.split(",") if args.configs else list(quick_configs if args.quick else default_configs)
    unknown = [name for name in names if name not in configs]
    if unknown:
        raise SystemExit(f"unknown configuration(s) {', '.join(unknown)}; known: {', '.join(configs)}")
    impls = args.impls.split(",")
    if "original" in impls and original_hint is not None:
        print(f"note: original not measured: {original_hint}")
        impls.remove("original")
    everything = []
    with tempfile.TemporaryDirectory(prefix=f"{script.stem}-bench-") as tmp:
        weight_args = make_weights(Path(tmp), args.seed)
        print(f"device {args.device}, {args.threads} threads, python {sys.executable}")
        for config in names:
            print(f"\n== {config}: {configs[config]} ==")
            runs, outs = {}, {}
            for impl in impls:
                outs[impl] = Path(tmp) / f"{impl}-{config}.pt"
                result = _run_worker(script, impl, config, args, weight_args, outs[impl])
                if result is None:
                    continue
                runs[impl] = result
                everything.append(result)
                extra = f", CUDA peak {result['cuda_peak_gb']:.2f} GB" if "cuda_peak_gb" in result else ""
                print(f"  {impl:10s} wall {result['wall_s']:7.1f} s  CPU {result['cpu_s']:7.1f} s  peak RSS "
                      f"{result['peak_rss_gb']:5.2f} GB{extra}  matches {result['matches']}", flush=True)
            for line in compare(config, runs, outs):
                print(line, flush=True)
    if args.json:
        args.json.write_text(json.dumps(everything, indent=1))
    return 0
