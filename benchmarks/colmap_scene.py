"""Benchmark: ``gim reconstruct`` against pycolmap's own SIFT pipeline on the rendered motorcycle scene.

Both pipelines run on the same views (default: 14 = left + 12 renders + right, 741×500, exhaustive pairs), each in
its own process so that peak memory is measured per pipeline. Reported per pipeline: extractions per image, pairs,
pairs/s of the matching stage, total time, peak RSS, registered images, 3D points, mean track length, mean
reprojection error and the median camera-centre error after Sim3 alignment (mm and % of the scene extent); then
the ratios gim / SIFT measured in the same run. Timings are noisy on a shared machine: compare ratios, not
seconds.

    .venv/bin/python benchmarks/colmap_scene.py                     # aliked_lightglue, 14 views, exhaustive
    .venv/bin/python benchmarks/colmap_scene.py --views 6 --pairs sequential:3 --matcher root_sift

Needs pycolmap (``pip install 'gim-plugins[colmap]'``); ``--engine colmap`` also needs the colmap program.
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


def _peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024.0


def _accuracy(model_dir: Path, images: Path) -> dict[str, float]:
    from gim_plugins.colmap_ext.model import camera_centre_errors, read_text_model
    from gim_plugins.datasets import scene

    views = scene.read_scene(images)
    model = read_text_model(model_dir)
    errors = camera_centre_errors(model, {v.name: v.center for v in views})
    extent = scene.scene_extent()
    return {**model.statistics(), "centre_error_median_mm": 1000 * errors["median"],
            "centre_error_max_mm": 1000 * errors["max"], "centre_error_median_pct": 100 * errors["median"] / extent}


def run_gim(args: argparse.Namespace) -> dict[str, object]:
    from gim_plugins import reconstruct

    conf = {"matcher": args.matcher, "pairs": args.pairs, "engine": args.engine, "progress": False,
            "matcher_conf": {"max_keypoints": args.max_keypoints} if args.max_keypoints else {}}
    start = time.perf_counter()
    summary = json.loads(reconstruct.main(conf, {"images": args.images, "out": args.out}).read_text())
    total = time.perf_counter() - start
    match = summary["match"]
    result = {"pipeline": f"gim reconstruct ({args.matcher}, {args.engine})", "images": summary["images"],
              "extractions_per_image": match["extracted_now"] / max(1, match["images"]), "pairs": match["pairs"],
              "extract_seconds": match["extract_seconds_now"], "match_seconds": match["pair_seconds_now"],
              "pairs_per_second": match["pairs"] / match["pair_seconds_now"],
              "total_seconds": total, "peak_rss_mb": _peak_rss_mb()}
    if summary["registered"] >= 3:
        result.update(_accuracy(Path(summary["model"]), args.images))
    else:
        result["registered"] = summary["registered"]
    return result


def run_sift(args: argparse.Namespace) -> dict[str, object]:
    """pycolmap's SIFT extraction, exhaustive SIFT matching + verification, incremental mapping (CPU)."""
    import pycolmap

    from gim_plugins.h5io import write_pairs
    from gim_plugins.reconstruct.pairs import list_images, make_pairs

    names = list_images(args.images)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    database = out / "database.db"
    database.unlink(missing_ok=True)
    start = time.perf_counter()
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.use_gpu = False
    extraction.num_threads = 2
    pycolmap.extract_features(database, args.images, image_names=names, camera_mode=pycolmap.CameraMode.PER_IMAGE,
                              extraction_options=extraction, device=pycolmap.Device.cpu)
    extracted = time.perf_counter()
    matching = pycolmap.FeatureMatchingOptions()
    matching.use_gpu = False
    matching.num_threads = 2
    if args.pairs == "exhaustive":
        pycolmap.match_exhaustive(database, matching_options=matching, device=pycolmap.Device.cpu)
        pairs = len(names) * (len(names) - 1) // 2
    else:  # the same pairs as gim reconstruct
        pair_list = make_pairs(names, args.pairs)
        pairing = pycolmap.ImportedPairingOptions()
        pairing.match_list_path = str(write_pairs(out / "pairs.txt", pair_list))
        pycolmap.match_image_pairs(database, matching_options=matching, pairing_options=pairing,
                                   device=pycolmap.Device.cpu)
        pairs = len(pair_list)
    matched = time.perf_counter()
    options = pycolmap.IncrementalPipelineOptions()
    options.num_threads = 2
    options.multiple_models = False
    models = pycolmap.incremental_mapping(database, args.images, out / "sparse", options=options)
    total = time.perf_counter() - start
    result: dict[str, object] = {
        "pipeline": "pycolmap SIFT (CPU)", "images": len(names), "extractions_per_image": 1.0, "pairs": pairs,
        "extract_seconds": extracted - start, "match_seconds": matched - extracted,
        "pairs_per_second": pairs / (matched - extracted),
        "total_seconds": total, "peak_rss_mb": _peak_rss_mb()}
    if models:
        best = max(models.values(), key=lambda rec: rec.num_reg_images())
        (out / "text").mkdir(exist_ok=True)
        best.write_text(str(out / "text"))
        result.update(_accuracy(out / "text", args.images))
    return result


def _child(args: argparse.Namespace, which: str, out: Path) -> dict[str, object]:
    command = [sys.executable, __file__, "--child", which, "--images", str(args.images), "--out", str(out),
               "--matcher", args.matcher, "--pairs", args.pairs, "--engine", args.engine,
               "--max-keypoints", str(args.max_keypoints or 0)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{which} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--views", type=int, default=12, help="rendered views (+ the two real photos)")
    parser.add_argument("--matcher", default="aliked_lightglue")
    parser.add_argument("--pairs", default="exhaustive")
    parser.add_argument("--engine", default="pycolmap", choices=("pycolmap", "colmap"))
    parser.add_argument("--max-keypoints", type=int, default=0, help="matcher max_keypoints (0: its default)")
    parser.add_argument("--child", choices=("gim", "sift"), help=argparse.SUPPRESS)
    parser.add_argument("--images", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.max_keypoints = args.max_keypoints or None
        print(json.dumps((run_gim if args.child == "gim" else run_sift)(args)))
        return
    from gim_plugins.datasets import scene

    with tempfile.TemporaryDirectory(prefix="gim-colmap-bench-") as tmp:
        args.images = Path(tmp) / "images"
        scene.write_scene(scene.render_motorcycle_scene(args.views, seed=0), args.images)
        results = [_child(args, "gim", Path(tmp) / "gim"), _child(args, "sift", Path(tmp) / "sift")]
    keys = ["images", "extractions_per_image", "pairs", "pairs_per_second", "extract_seconds", "match_seconds",
            "total_seconds",
            "peak_rss_mb", "registered", "points", "mean_track_length", "mean_reprojection_error",
            "centre_error_median_mm", "centre_error_max_mm", "centre_error_median_pct"]
    print(f"{'':28s}" + "".join(f"{r['pipeline'][:34]:>36s}" for r in results) + f"{'ratio gim/sift':>16s}")
    for key in keys:
        values = [r.get(key) for r in results]
        cells = "".join(f"{v:>36.3f}" if isinstance(v, float) else f"{v!s:>36s}" for v in values)
        ratio = (f"{values[0] / values[1]:>16.2f}" if all(isinstance(v, int | float) and v for v in values)
                 else f"{'':>16s}")
        print(f"{key:28s}{cells}{ratio}")


if __name__ == "__main__":
    main()
