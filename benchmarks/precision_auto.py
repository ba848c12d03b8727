"""Benchmark: ``precision="auto"`` against float32 on this machine (gim_dkm, gim_loftr; CPU by default).

``auto`` runs bfloat16 only where the device executes it natively (:mod:`gim_plugins.models.precision`); the goal is
that it is never slower than float32 on the machine it runs on. Both variants share the same random weights and run
interleaved in one process (warm-up, then ``--reps`` alternating calls; medians), so the ratio auto / fp32 is taken
under the same load. Printed: the CPU model, what ``auto`` picks and why, wall seconds per pair, the ratio and the
number of matches of each variant.

    .venv/bin/python benchmarks/precision_auto.py                              # 240×320, 2 threads, 3 reps
    .venv/bin/python benchmarks/precision_auto.py --size 480x640 --reps 5 --matchers gim_loftr
"""

from __future__ import annotations

import argparse
import statistics
import time

from gim_plugins.machine import cpu_name


def _pair(height: int, width: int):  # type: ignore[no-untyped-def]
    import numpy as np
    from PIL import Image
    from skimage.data import stereo_motorcycle

    left, right, _ = stereo_motorcycle()
    return tuple(np.asarray(Image.fromarray(im).resize((width, height), Image.BILINEAR)) for im in (left, right))


def _matchers(name: str, height: int, width: int, device: str):  # type: ignore[no-untyped-def]
    from gim_plugins.registry import get_matcher_class

    cls = get_matcher_class(name)
    conf = ({"h": height, "w": width, "upsample": False, "pad_to_aspect": False} if name == "gim_dkm" else {})
    fp32 = cls({**conf, "precision": "fp32" if name == "gim_dkm" else "float32"}, pretrained=False, device=device)
    auto = cls({**conf, "precision": "auto"}, pretrained=False, device=device)
    auto.load_state_dict(fp32.state_dict())
    return fp32.eval(), auto.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--matchers", nargs="+", default=["gim_loftr", "gim_dkm"])
    parser.add_argument("--size", default="240x320", help="HxW of both images (and gim_dkm's canvas)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import torch

    from gim_plugins.models.precision import describe_precision

    torch.set_num_threads(args.threads)
    height, width = (int(v) for v in args.size.split("x"))
    image0, image1 = _pair(height, width)
    print(f"# precision auto vs fp32 — {cpu_name()}, {args.threads} threads, torch {torch.__version__}, "
          f"{args.size}, median of {args.reps} interleaved calls after 1 warm-up")
    print(f"# {describe_precision(args.device)}")
    print(f"{'matcher':>10} {'fp32 s':>8} {'auto s':>8} {'auto/fp32':>9} {'fp32 matches':>12} {'auto matches':>12}")
    for name in args.matchers:
        fp32, auto = _matchers(name, height, width, args.device)
        walls: dict[str, list[float]] = {"fp32": [], "auto": []}
        counts = {}
        for matcher in (fp32, auto):
            matcher.match(image0, image1)  # warm-up
        for _ in range(args.reps):
            for label, matcher in (("fp32", fp32), ("auto", auto)):
                start = time.perf_counter()
                result = matcher.match(image0, image1)
                walls[label].append(time.perf_counter() - start)
                counts[label] = len(result)
        fp, au = statistics.median(walls["fp32"]), statistics.median(walls["auto"])
        print(f"{name:>10} {fp:8.3f} {au:8.3f} {au / fp:9.2f} {counts['fp32']:12d} {counts['auto']:12d}")


if __name__ == "__main__":
    main()
