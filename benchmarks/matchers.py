"""Every registered matcher on the motorcycle pair: seconds per pair and peak memory, on CPU or a GPU.

Matchers without installed weights run with random weights (``pretrained=False``): the timing of a network does not
depend on its weights, except for sparse matchers whose match count changes the work (reported). Each matcher runs
in this process one after the other: one warm-up pair, then ``--repeats`` timed pairs (median reported).

Usage::

    python benchmarks/matchers.py                               # CPU, every registered matcher
    python benchmarks/matchers.py --device cuda --repeats 5     # a GPU
    python benchmarks/matchers.py --matchers gim_dkm --conf gim_dkm:precision=bf16

Ratios are printed against ``root_sift`` measured in the same run (the classical baseline).
"""

from __future__ import annotations

import argparse
import ast
import json
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any


def _conf(items: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        name, _, assignment = item.partition(":")
        key, _, value = assignment.partition("=")
        try:
            out.setdefault(name, {})[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out.setdefault(name, {})[key] = value
    return out


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(name: str, device: str, repeats: int, conf: dict[str, Any]) -> dict[str, Any]:
    import torch

    from gim_plugins import load_matcher
    from gim_plugins.datasets.motorcycle import paths
    from gim_plugins.io import read_image
    from gim_plugins.matching import weights_available

    files = paths()
    left, right = read_image(files["left"]), read_image(files["right"])
    pretrained = weights_available(name)
    matcher = load_matcher(name, device=device, pretrained=pretrained, **conf)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    result = matcher.match(left, right)  # warm-up (kernels, allocator, lazy buffers)
    seconds = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        result = matcher.match(left, right)
        _sync(device)
        seconds.append(time.perf_counter() - start)
    row = {"matcher": name, "weights": "pretrained" if pretrained else "random", "device": device,
           "median_s": statistics.median(seconds), "min_s": min(seconds), "matches": len(result),
           "inliers": result.fundamental().num_inliers,
           "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}
    if device.startswith("cuda"):
        row["peak_cuda_gb"] = torch.cuda.max_memory_allocated() / 1e9
    del matcher
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--matchers", nargs="*", default=None, help="default: every registered matcher")
    parser.add_argument("--conf", action="append", default=[], metavar="NAME:KEY=VALUE")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    import torch

    from gim_plugins import list_matchers

    names = args.matchers or list_matchers()
    if "root_sift" in names:
        names = ["root_sift"] + [n for n in names if n != "root_sift"]
    confs = _conf(args.conf)
    print(f"torch {torch.__version__}, device {args.device}"
          + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else
             f", {torch.get_num_threads()} threads"))
    rows = []
    for name in names:
        try:
            row = measure(name, args.device, args.repeats, confs.get(name, {}))
        except Exception as exc:  # report and go on: one broken matcher must not hide the others
            print(f"{name:<18} FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        rows.append(row)
        base = rows[0]["median_s"] if rows[0]["matcher"] == "root_sift" else None
        ratio = f"{row['median_s'] / base:7.1f}x root_sift" if base else ""
        cuda = f"  cuda peak {row['peak_cuda_gb']:.2f} GB" if "peak_cuda_gb" in row else ""
        print(f"{name:<18} {row['weights']:<10} {row['median_s']:8.3f} s/pair  {row['matches']:6d} matches "
              f"{row['inliers']:6d} inliers  RSS {row['peak_rss_gb']:.2f} GB{cuda}  {ratio}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
