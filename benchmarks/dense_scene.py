"""Benchmark: the dense step (``gim reconstruct --dense triangulate``) on the rendered motorcycle scene.

The scene's views (default 8: the real left photo with its ground-truth depth, 6 renders, the real right photo) get
their *exact* model (cameras, poses, sparse points from the true depth) as ``sparse/0``, so the numbers measure the
dense step alone. Each matcher then densifies that model, each in its own process (peak memory per run):

* ``gt`` — ground-truth dense correspondences (the COLMAP tests' stand-in matcher: 0.5 px noise, 5 % outliers,
  5000 per pair), and ``gt-hard`` (1 px noise, 20 % outliers);
* every installed matcher that runs here: sparse ones (``aliked_lightglue``, ``root_sift``) give *sparse-derived*
  clouds (points only at keypoints); dense ones without installed weights run with **random weights**
  (``--random gim_loftr``): their numbers are time and memory only, the matches are noise.

Reported per run: dense points, accuracy (median and 90th-percentile distance to the true surface, mm and % of the
scene extent; share of points more than 5 cm off), completeness (share of the true surface — one sample per pixel
of the left photo — within 1 cm of a point), wall and CPU time, peak RSS. ``--end-to-end`` adds a run from the
photos: sparse model by ``aliked_lightglue``, then its sparse-derived dense cloud, aligned to the scene by the
cameras (rotation from their orientations, scale and shift from their centres). Timings are noisy on a shared
machine: CPU seconds are the steadier measure.

    .venv/bin/python benchmarks/dense_scene.py
    .venv/bin/python benchmarks/dense_scene.py --matchers gt aliked_lightglue --random gim_loftr --neighbours 2

Needs scipy; ``--end-to-end`` needs pycolmap (``pip install 'gim-plugins[colmap]'``).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gim_plugins.machine import cpu_name

ROOT = Path(__file__).resolve().parents[1]
# the ground-truth model writer, accuracy measure and ground-truth matcher are the tests' own
for folder in ("tests/reconstruct", "tests/colmap_ext"):
    sys.path.insert(0, str(ROOT / folder))

GT_CONFS = {"gt": {"num_matches": 5000, "noise": 0.5, "outliers": 0.05},
            "gt-hard": {"num_matches": 5000, "noise": 1.0, "outliers": 0.2}}




def _views(count: int) -> list:
    from gim_plugins.datasets import scene

    return scene.render_motorcycle_scene(count - 2, seed=0)


def _register(name: str, views: list) -> str:
    """Make ``name`` loadable in this process: the ground-truth matcher, or a matcher with random weights."""
    from gim_plugins.registry import get_matcher_class, register_matcher

    if name in GT_CONFS:
        from colmap_helpers import GroundTruthDense

        GroundTruthDense.register_views(views)
        register_matcher("gt_dense", GroundTruthDense, overwrite=True)
        return "gt_dense"
    if name.endswith("@random"):
        base = get_matcher_class(name.removesuffix("@random"))

        class Random(base):  # type: ignore[misc, valid-type]
            def __init__(self, conf=None, *, weights=None, device="cpu", pretrained=True) -> None:
                super().__init__(conf, device=device, pretrained=False)

        register_matcher(name, Random, overwrite=True)
    return name


def run_one(args: argparse.Namespace) -> dict[str, object]:
    from dense_helpers import align_model, cloud_accuracy, write_truth_model

    from gim_plugins.colmap_ext.ply import read_ply
    from gim_plugins.datasets import scene
    from gim_plugins.errors import UserError
    from gim_plugins.reconstruct import dense

    views = _views(args.views)
    images, out = args.work / "images", args.work / "out"
    scene.write_scene(views, images)
    matcher = _register(args.one, views)
    matcher_conf = dict(GT_CONFS.get(args.one, {}))
    if args.one == "end-to-end":
        from gim_plugins import reconstruct

        matcher = "aliked_lightglue"
        start = time.perf_counter()
        reconstruct.main({"matcher": matcher, "progress": False}, {"images": images, "out": out})
        sparse_seconds = time.perf_counter() - start
    else:
        write_truth_model(views, out / "sparse" / "0")
        sparse_seconds = 0.0
    conf = {"matcher": matcher, "matcher_conf": matcher_conf, "method": "triangulate", "progress": False,
            "neighbours": args.neighbours}
    start = time.perf_counter()
    try:
        ply = dense.main(conf, {"images": images, "out": out})
    except UserError as exc:
        return {"run": args.one, "error": str(exc), "dense_seconds": time.perf_counter() - start,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    seconds = time.perf_counter() - start
    summary = json.loads((ply.parent / "summary.json").read_text())
    xyz = read_ply(ply).xyz.astype("float64")
    if args.one == "end-to-end":
        s, R, t = align_model(out / "sparse" / "0", views)
        xyz = s * xyz @ R.T + t
    accuracy = cloud_accuracy(xyz)
    return {"run": args.one, "matcher": matcher, "pairs": summary["pairs"], "matches": summary["matches"],
            "sparse_derived": summary["sparse_derived"], **accuracy, "dense_seconds": seconds,
            "sparse_seconds": sparse_seconds, "cpu_seconds": _cpu_seconds(),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _row(r: dict) -> str:
    cpu = f"{r['cpu_seconds']:.0f}" if "cpu_seconds" in r else "–"
    if "error" in r:
        return (f"| {r['run']} | – | – | – | – | – | {r['dense_seconds']:.1f} | {cpu} | {r['peak_rss_mb']:.0f} | "
                f"{r['error']} |")
    return (f"| {r['run']}{' (sparse-derived)' if r['sparse_derived'] else ''} | {r['points']} | "
            f"{1000 * r['median_m']:.1f} mm ({100 * r['median_share']:.2f} %) | "
            f"{1000 * r['p90_m']:.1f} mm ({100 * r['p90_share']:.2f} %) | {100 * r['far_share']:.1f} % | "
            f"{100 * r['completeness']:.1f} % | {r['dense_seconds'] + r['sparse_seconds']:.1f} | {cpu} | "
            f"{r['peak_rss_mb']:.0f} | {r['pairs']} pairs, {r['matches']} matches |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", type=int, default=8, help="scene views (left, renders, right)")
    parser.add_argument("--neighbours", type=int, default=4, help="neighbours per image")
    parser.add_argument("--matchers", nargs="*", default=["gt", "gt-hard", "aliked_lightglue", "root_sift"])
    parser.add_argument("--random", nargs="*", default=[], help="dense matchers run with random weights")
    parser.add_argument("--end-to-end", action="store_true", help="also sparse + dense from the photos")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args)))
        return
    runs = [*args.matchers, *(f"{name}@random" for name in args.random)] + (["end-to-end"] if args.end_to_end else [])
    print(f"CPU: {cpu_name()}; {args.views} views, "
          f"{args.neighbours} neighbours per image")
    results = []
    for run in runs:
        with tempfile.TemporaryDirectory(prefix="gim-dense-bench-") as work:
            command = [sys.executable, __file__, "--one", run, "--work", work, "--views", str(args.views),
                       "--neighbours", str(args.neighbours)]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode:
                print(f"{run}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
                continue
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps(results[-1]), flush=True)
    extent = next((r["extent_m"] for r in results if "extent_m" in r), float("nan"))
    print(f"\nscene extent {extent:.2f} m; completeness: true surface within 1 cm of a point\n")
    print("| run | points | median error | p90 error | > 5 cm | completeness | seconds | CPU s | peak RSS MB | |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(_row(r))


if __name__ == "__main__":
    main()
