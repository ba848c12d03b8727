"""ZEB-mini benchmark: accuracy and cost of several matchers side by side, cost as ratios to a baseline.

Builds ZEB-mini (once), evaluates each matcher in its own process (so each peak-memory figure is its own) with the
GIM protocol, and prints the report plus each matcher's pairs/s and peak memory relative to the first matcher
(the baseline, RootSIFT by default), all measured in this one invocation on this machine.

    python benchmarks/zeb_mini.py                                   # CPU: root_sift vs aliked_lightglue
    python benchmarks/zeb_mini.py --device cuda --matchers root_sift aliked_lightglue gim_dkm gim_lightglue

GPU runs need the matchers' weights installed (``gim weights list``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--matchers", nargs="+", default=["root_sift", "aliked_lightglue"],
                        help="first = baseline for the ratios")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data", type=Path, default=Path("zeb_mini"))
    parser.add_argument("--out", type=Path, default=Path("zeb_mini_bench"))
    parser.add_argument("--overwrite", action="store_true", help="rerun matchers that already have results")
    args = parser.parse_args()

    zeb = [sys.executable, "-m", "gim_plugins.zeb"]
    subprocess.run([*zeb, "mini", "--out", str(args.data)], check=True)
    for name in args.matchers:
        command = [*zeb, "run", "--matcher", name, "--data", str(args.data), "--out", str(args.out), "--device",
                   args.device, "--no-progress"]
        subprocess.run(command + (["--overwrite"] if args.overwrite else []), check=True)

    from gim_plugins.zeb.report import collect, format_report

    results = {r.weight: r for r in collect(args.out, args.matchers)}
    print(format_report(list(results.values()), "md"))
    base = results[args.matchers[0]].cost
    if base is None:
        return 0
    print(f"cost relative to {args.matchers[0]} ({args.device}):")
    for name in args.matchers:
        cost = results[name].cost
        if cost is None:
            continue
        memory = cost.peak_cuda_mb if cost.peak_cuda_mb is not None else cost.peak_rss_mb
        base_memory = base.peak_cuda_mb if base.peak_cuda_mb is not None else base.peak_rss_mb
        print(f"  {name:<20} pairs/s ×{cost.pairs_per_second / base.pairs_per_second:.3f}   "
              f"peak memory ×{memory / base_memory:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
