"""Label precision of ``gim video`` on a ground-truth video: after the labellers' filter and after propagation.

A walk through the motorcycle scene is rendered (smooth camera path, exact poses and depth, a textured card moving
through part of it), encoded with H.264 through PyAV (real compression), and run through the pipeline's own steps —
decode, label (the offline labellers by default), propagate — into a ZeroMatch layout. Every label row is then
compared with the true correspondence (:mod:`gim_plugins.training.video.groundtruth`): share within 1 px and 2 px,
share on the moving card; plus label counts, chain lengths and the steps' throughput on this machine.

Propagation is measured per labeller (its own folders only) and for all labellers together, with GIM's rule for hops
without labels (``missing_hop="skip"``) and with ``"stop"``.

Usage::

    python benchmarks/video_gt_accuracy.py                    # 300 frames, 741×500 (cropped to 740×500), ~15 min
    python benchmarks/video_gt_accuracy.py --frames 90 --scale 0.5 --labellers root_sift   # a quick look
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from gim_plugins.machine import cpu_name


def machine() -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu_name()}, torch {torch.__version__} ({torch.get_num_threads()} threads), {gpu}"


def percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from gim_plugins.training.video import decode, groundtruth, label, propagate
    from gim_plugins.training.video.layout import Layout, VideoPaths, method_name, read_json

    video, truth, root = work / "source" / "gtwalk.mp4", work / "truth", work / "ZeroMatch"
    timings: dict[str, Any] = {}
    started = time.perf_counter()
    info = groundtruth.write_truth_video(video, truth, num_frames=args.frames, scale=args.scale, seed=args.seed,
                                         moving=(args.frames // 3, 2 * args.frames // 3), crf=args.crf,
                                         supersample=1 if args.scale <= 0.5 else 2)
    timings["render+encode s"] = time.perf_counter() - started
    quiet = {"progress": False}
    paths = VideoPaths(root, None, (video,))
    started = time.perf_counter()
    decode.main({**quiet, "shot_detector": args.shots}, paths)
    timings["decode s"] = time.perf_counter() - started
    labellers = [n.strip() for n in args.labellers.split(",")]
    started = time.perf_counter()
    label.main({**quiet, "labellers": labellers, "masks": "none", "zoom": args.zoom}, VideoPaths(root, ("gtwalk",)))
    timings["label s"] = time.perf_counter() - started
    layout = Layout(root)
    folders = layout.label_dirs("gtwalk")
    timings["label pairs"] = sum(len(list(p.glob("[[]*.npy"))) for _, _, p in folders)
    rows: list[dict[str, Any]] = []
    methods = [method_name(n) for n in labellers]
    for method in methods:
        for zoom in sorted({f.zoom for f, _, _ in folders if f.method == method}):
            chosen = [p for f, _, p in folders if f.method == method and f.zoom == zoom]
            rows.append({"labeller": method, "stage": f"filtered ({'zoom' if zoom else 'plain'})",
                         **groundtruth.measure_labels(chosen, truth)})
    for selection in [*([m] for m in methods), methods] if len(methods) > 1 else [methods]:
        for rule in ("skip", "stop"):
            started = time.perf_counter()
            propagate.main({**quiet, "methods": selection, "missing_hop": rule}, VideoPaths(root, ("gtwalk",)))
            seconds = time.perf_counter() - started
            pid, entry = next(iter(read_json(layout.summary("gtwalk", "propagate")).items()))
            measured = groundtruth.measure_propagated(layout.propagate_dir(pid, "gtwalk"), truth)
            rows.append({"labeller": "+".join(selection), "stage": f"propagated ({rule})", **measured,
                         "targets": entry["targets"], "kept": entry["kept"], "chain": entry["chain_frames"],
                         "seconds": seconds})
            shutil.rmtree(layout.propagate_dir(pid, "gtwalk"))
            (layout.summary("gtwalk", "propagate")).unlink()
    return {"info": info, "timings": timings, "rows": rows}


def table(result: dict[str, Any]) -> str:
    lines = ["| labeller | stage | labels | ≤ 1 px % | ≤ 2 px % | on card % | clear % | clear ≤ 2 px % | "
             "kept/targets | chain frames (median / max) |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for row in result["rows"]:
        chain = row.get("chain") or {}
        kept = f"{row['kept']}/{row['targets']}" if "kept" in row else ""
        spans = f"{chain.get('median', '—')} / {chain.get('max', '—')}" if chain else ""
        lines.append(f"| {row['labeller']} | {row['stage']} | {row['labels']} | {percent(row['within_1px'])} | "
                     f"{percent(row['within_2px'])} | {percent(row['on_object'])} | {percent(row['clear'])} | "
                     f"{percent(row['clear_within_2px'])} | {kept} | {spans} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--crf", type=int, default=23)
    parser.add_argument("--labellers", default="root_sift,aliked_lightglue")
    parser.add_argument("--zoom", action="store_true", help="also GIM's zoom pass (slow on a CPU)")
    parser.add_argument("--shots", default="none", help="shot detector of the decode step (the walk is one shot; "
                        "'content' may cut where the card enters)")
    parser.add_argument("--out", type=Path, default=None, help="keep the layout here (default: a temporary folder)")
    parser.add_argument("--json", type=Path, default=None, help="write the numbers here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.out or Path(tmp)
        result = run(args, work)
    info, timings = result["info"], result["timings"]
    frames = info["num_frames"]
    print(f"machine: {machine()}")
    print(f"video: {frames} frames {info['width']}×{info['height']} at {info['fps']} fps, {info['codec']} crf "
          f"{info['crf']}, card on frames {info['moving']}; seed {info['seed']}")
    print(f"throughput: render+encode {frames / timings['render+encode s']:.2f} frames/s, decode "
          f"{frames / timings['decode s']:.1f} frames/s, label {timings['label pairs'] / timings['label s']:.2f} "
          f"pairs/s ({timings['label pairs']} labelled pairs × labellers in {timings['label s']:.0f} s)")
    for row in result["rows"]:
        if "seconds" in row:
            print(f"propagate {row['labeller']} ({row['stage']}): {row['targets']} targets in {row['seconds']:.1f} s")
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
