"""Benchmark: how ``gim reconstruct`` scales with the number of views — exhaustive pairs against ``retrieval:K``.

The scene is the survey of the rendered motorcycle scene (:mod:`gim_plugins.datasets.survey`: narrow views on a
grid over the scene, exact poses, a ground-truth overlap matrix), at each ``--views`` N. Per N the local features
are extracted once (the time is reported as ``extract s``) and copied into every run's output folder, so the runs
differ only by their pairs: retrieval (vocabulary + similarity, inside ``wall s``), matching, verification and
mapping. Each run is its own process (``peak RSS`` is that process's).

Reported per (N, pairs): wall seconds, pairs matched, share of the pairs whose views truly overlap (> 10 % of
pixels both ways), peak RSS, registered images, and the median / max camera-centre error after Sim3 alignment (mm).
Goals (issue 15): at N = 60 and K = 10, the same registration and accuracy as exhaustive with ≤ 20 % of the pairs;
time ∝ N·K; peak RSS flat in N. Timings are noisy on a shared machine: compare within one run.

    .venv/bin/python benchmarks/sfm_scale.py                                     # N = 10 30 60; exhaustive, K = 5, 10
    .venv/bin/python benchmarks/sfm_scale.py --views 10 30 --pairs exhaustive retrieval:5

Needs pycolmap (``pip install 'gim-plugins[colmap]'``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gim_plugins.machine import cpu_name


def _conf(args: argparse.Namespace, pairs: str) -> dict:
    return {"matcher": args.matcher, "matcher_conf": {"max_keypoints": args.max_keypoints}, "pairs": pairs,
            "progress": False, "retrieval": {"vocabulary": args.vocabulary}}


def worker(args: argparse.Namespace) -> dict:
    """One reconstruction; returns its row."""
    import numpy as np

    from gim_plugins import reconstruct
    from gim_plugins.colmap_ext.model import camera_centre_errors, read_text_model
    from gim_plugins.datasets import scene

    images, out, pairs = Path(args.worker[0]), Path(args.worker[1]), args.worker[2]
    torch_threads(args.threads)
    start = time.perf_counter()
    summary = json.loads(reconstruct.main(_conf(args, pairs), {"images": images, "out": out}).read_text())
    wall = time.perf_counter() - start
    views = scene.read_scene(images)
    overlap = np.load(images / "overlap.npy")
    index = {v.name: i for i, v in enumerate(views)}
    matched = [line.split() for line in (out / "pairs.txt").read_text().splitlines()]
    true = float(np.mean([min(overlap[index[a], index[b]], overlap[index[b], index[a]]) > 0.1 for a, b in matched]))
    row = {"views": len(views), "pairs_spec": pairs, "wall_s": wall, "pairs": len(matched),
           "true_pair_share": true, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "registered": summary["registered"], "extracted_now": summary["match"]["extracted_now"]}
    if summary["registered"] >= 3:
        errors = camera_centre_errors(read_text_model(Path(summary["model"])), {v.name: v.center for v in views})
        row.update(centre_median_mm=1000 * errors["median"], centre_max_mm=1000 * errors["max"])
    return row


def torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def prepare(args: argparse.Namespace, count: int, root: Path) -> tuple[Path, Path, float]:
    """Render the survey of ``count`` views with its overlap, and extract its features once."""
    import numpy as np

    from gim_plugins.datasets.scene import write_scene
    from gim_plugins.datasets.survey import render_motorcycle_survey, view_overlap
    from gim_plugins.features import FeatureCache
    from gim_plugins.matching import load_matcher

    views = render_motorcycle_survey(count)
    images = root / f"survey{count}" / "images"
    write_scene(views, images)
    np.save(images / "overlap.npy", view_overlap(views))
    features = root / f"survey{count}" / "features.h5"
    matcher = load_matcher(args.matcher, max_keypoints=args.max_keypoints)
    start = time.perf_counter()
    cache = FeatureCache(matcher, features)
    for view in views:
        cache.get(view.name, images / view.name)
    return images, features, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--views", nargs="+", type=int, default=[10, 30, 60])
    parser.add_argument("--pairs", nargs="+", default=["exhaustive", "retrieval:5", "retrieval:10"])
    parser.add_argument("--matcher", default="aliked_lightglue")
    parser.add_argument("--max-keypoints", type=int, default=1024)
    parser.add_argument("--vocabulary", type=int, default=64, help="visual words of the retrieval vocabulary")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keep", type=Path, default=None, help="keep the renders and runs in this folder")
    parser.add_argument("--worker", nargs=3, metavar=("IMAGES", "OUT", "PAIRS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    torch_threads(args.threads)
    root = args.keep or Path(tempfile.mkdtemp(prefix="sfm_scale_"))
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    print(f"# sfm_scale — {cpu_name()}, {os.cpu_count()} cores visible, {args.threads} threads, "
          f"{args.matcher} ({args.max_keypoints} keypoints), survey views of 288×192 px")
    print(f"{'N':>3} {'pairs':>13} {'extract s':>9} {'wall s':>7} {'matched':>7} {'true %':>6} {'RSS MB':>7} "
          f"{'registered':>10} {'centre med mm':>13} {'centre max mm':>13}", flush=True)
    try:
        for count in args.views:
            images, features, extract = prepare(args, count, root)
            for pairs in args.pairs:
                out = root / f"survey{count}" / pairs.replace(":", "_")
                out.mkdir(parents=True, exist_ok=True)
                shutil.copy(features, out / "features.h5")
                command = [sys.executable, __file__, "--worker", str(images), str(out), pairs,
                           "--matcher", args.matcher, "--max-keypoints", str(args.max_keypoints),
                           "--vocabulary", str(args.vocabulary), "--threads", str(args.threads)]
                done = subprocess.run(command, env=env, capture_output=True, text=True)
                if done.returncode != 0:
                    print(f"{count:>3} {pairs:>13} failed: {done.stderr.strip().splitlines()[-1:]}", flush=True)
                    continue
                r = json.loads(done.stdout.strip().splitlines()[-1])
                print(f"{count:>3} {pairs:>13} {extract:9.1f} {r['wall_s']:7.1f} {r['pairs']:7d} "
                      f"{100 * r['true_pair_share']:6.1f} {r['peak_rss_mb']:7.0f} "
                      f"{r['registered']:>4d} / {count:<3d} {r.get('centre_median_mm', float('nan')):13.2f} "
                      f"{r.get('centre_max_mm', float('nan')):13.2f}", flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
