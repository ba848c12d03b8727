"""What the kornia wrapper costs: ``GIMMatcher(batch)`` against a loop of ``matcher.match`` over the same pairs.

Both sides share one matcher instance, run on the same inputs, and are interleaved ``--runs`` times (median
reported) so machine noise hits them alike; the ratio is wrapper / core. The wrapper's work is input checks, the
per-pair dtype conversion, the device round trip of the core contract (images reach the matcher as CPU float32) and
the concatenation of the outputs. Inputs are the motorcycle pair (741×500), repeated ``--batch`` times::

    .venv/bin/python benchmarks/kornia_matcher.py [--matcher aliked_lightglue] [--device cuda] [--batch 4]
        [--dtype float16] [--runs 5]

``--dtype`` is the dtype of the input batch (the core loop gets the same values converted to float32 first).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from gim_plugins import load_matcher
from gim_plugins.datasets.motorcycle import paths
from gim_plugins.io import read_image
from gim_plugins.kornia_ext import GIMMatcher


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--matcher", default="aliked_lightglue")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--dtype", default="float32", choices=["float16", "bfloat16", "float32", "float64"])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    device = torch.device(args.device)
    found = paths()
    left, right = (torch.from_numpy(read_image(found[s])).permute(2, 0, 1).float() / 255.0 for s in ("left", "right"))
    dtype = getattr(torch, args.dtype)
    data = {"image0": left[None].repeat(args.batch, 1, 1, 1).to(device, dtype),
            "image1": right[None].repeat(args.batch, 1, 1, 1).to(device, dtype)}
    core = load_matcher(args.matcher, device=device)
    wrapper = GIMMatcher(core)

    def run_core() -> int:
        return sum(len(core.match(data["image0"][b].float(), data["image1"][b].float())) for b in range(args.batch))

    def run_wrapper() -> int:
        return len(wrapper(data)["keypoints0"])

    assert run_core() == run_wrapper()  # warm-up, and the same matches on both sides
    core_times, wrapper_times = [], []
    for _ in range(args.runs):
        core_times.append(_timed(run_core, device))
        wrapper_times.append(_timed(run_wrapper, device))
    core_s, wrapper_s = statistics.median(core_times), statistics.median(wrapper_times)
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"matcher {args.matcher} on {device} ({card}), batch {args.batch} of 741x500 pairs, input {args.dtype}, "
          f"{args.runs} runs")
    print(f"core loop   {core_s:8.3f} s  ({core_s / args.batch:.3f} s per pair)")
    print(f"GIMMatcher  {wrapper_s:8.3f} s  ({wrapper_s / args.batch:.3f} s per pair)")
    print(f"ratio GIMMatcher / core: {wrapper_s / core_s:.3f}")


if __name__ == "__main__":
    main()
