"""ONNX Runtime vs PyTorch per pair on this CPU: time, peak memory, as ratios in one run (docs/onnx.md).

For each matcher (aliked_lightglue with its offline weights when installed; gim_lightglue and gim_loftr with random
weights, whose speed is that of the real ones; gim_loftr with coarse threshold 0 so that its fine stage refines
thousands of matches, as with real weights), it exports the graphs once into a temporary directory (or uses
``--onnx-root``), then runs the motorcycle pair with

* ``torch``: the PyTorch matcher with the exported conf (every LightGlue layer, as the graphs run),
* ``onnxruntime``: ``load_matcher(NAME, backend="onnxruntime", onnx=DIR)`` (all graph optimisations, threads = the
  cores PyTorch uses, fp32),
* ``onnxruntime-basic``: the same with ONNX Runtime's basic graph optimisations only,

each in its own subprocess (peak RSS is per process), timed as the median of ``--repeats`` runs after one warm-up.
For aliked_lightglue it also measures what the exported matcher gives up: PyTorch with adaptive depth and width
(its default) against every layer, on the same pair.

    .venv/bin/python benchmarks/onnx.py [--matchers aliked_lightglue,gim_lightglue,gim_loftr] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gim_plugins.machine import cpu_name

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]  # this file would shadow the onnx package

BACKENDS = ("torch", "onnxruntime", "onnxruntime-basic")
SIZES = {"aliked_lightglue": (500, 741), "gim_lightglue": (496, 736), "gim_loftr": (496, 736)}




def _synthetic(name: str):  # type: ignore[no-untyped-def]
    """Random weights for the GIM matchers (their checkpoints are not available offline): seeded, reproducible."""
    import torch

    from gim_plugins.matching import load_matcher

    torch.manual_seed(0)
    matcher = load_matcher(name, pretrained=False)
    return matcher.net.state_dict() if name == "gim_loftr" else _glg_state(matcher)


def _glg_state(matcher):  # type: ignore[no-untyped-def]
    state = {f"superpoint.{k}": v for k, v in matcher.superpoint.state_dict().items()}
    state.update({f"model.{k}": v for k, v in matcher.lightglue.state_dict().items() if k != "confidence_thresholds"})
    return state


def _weights_file(name: str, directory: Path) -> Path | None:
    if name == "aliked_lightglue":
        return None
    import torch

    path = directory / f"{name}.pt"
    if not path.exists():
        state = _synthetic(name)
        torch.save({f"model.{k}": v for k, v in state.items()} if name == "gim_loftr" else state, path)
    return path


def export(name: str, root: Path) -> Path:
    from gim_plugins.export.onnx_export import main

    out = root / name
    if not (out / "manifest.json").exists():
        weights = _weights_file(name, root)
        conf = {"matcher": name, "size": SIZES[name], "weights": str(weights) if weights else None}
        if name == "gim_loftr":  # random weights never reach GIM's 0.2: keep mutual nearest neighbours, so that
            conf["matcher_conf"] = {"coarse_threshold": 0.0}  # the fine stage runs on thousands of matches, as real
        start = time.perf_counter()
        main(conf, out)
        print(f"  exported {name} in {time.perf_counter() - start:.0f} s", flush=True)
    return out


def worker(name: str, backend: str, directory: Path, repeats: int, threads: int) -> dict[str, float]:
    import torch

    from gim_plugins.datasets.motorcycle import paths
    from gim_plugins.io import to_image_tensor
    from gim_plugins.matching import load_matcher

    torch.set_num_threads(threads)
    pair = [to_image_tensor(paths()[side]) for side in ("left", "right")]
    onnx_matcher = load_matcher(name, backend="onnxruntime", onnx=directory)
    if backend == "torch":
        conf = dict(onnx_matcher.manifest["conf"])
        del onnx_matcher
        weights = None if name == "aliked_lightglue" else str(directory.parent / f"{name}.pt")
        matcher = load_matcher(name, weights=weights, **conf)
    else:
        matcher = onnx_matcher
        if backend == "onnxruntime-basic":
            from gim_plugins.export.runtime import create_session

            matcher._sessions = {role: create_session(directory / graph["file"], level="basic")
                                 for role, graph in matcher.manifest["graphs"].items()}
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = matcher.match(*pair)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = matcher.match(*pair)
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": statistics.median(times), "peak_mib": peak, "peak_over_loaded_mib": peak - rss_loaded,
            "matches": len(result)}


def pruning_effect(repeats: int) -> None:
    """aliked_lightglue in PyTorch: adaptive depth and width (default) against every layer, same pair."""
    import torch

    from gim_plugins.datasets.motorcycle import paths
    from gim_plugins.matching import load_matcher

    pair = paths()["left"], paths()["right"]
    results = {}
    for label, conf in (("pruning", {}), ("all layers", {"depth_confidence": -1.0, "width_confidence": -1.0})):
        matcher = load_matcher("aliked_lightglue", **conf)
        matcher.match(*pair)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            result = matcher.match(*pair)
            times.append(time.perf_counter() - start)
        inliers = result.fundamental().num_inliers
        results[label] = (result, statistics.median(times), inliers)
    (pruned, t_p, i_p), (full, t_f, i_f) = results["pruning"], results["all layers"]
    rows_p = torch.cat([pruned.keypoints0, pruned.keypoints1], 1).double()
    rows_f = torch.cat([full.keypoints0, full.keypoints1], 1).double()
    shared = int((torch.cdist(rows_p, rows_f, p=float("inf")).min(1).values <= 1e-3).sum())
    print(f"\naliked_lightglue, PyTorch, motorcycle pair: pruning {len(pruned)} matches ({i_p} F-inliers) vs "
          f"all layers {len(full)} ({i_f} F-inliers); {shared} shared ({shared / max(len(full), 1):.1%} of all-layer "
          f"matches); time ratio all layers / pruning {t_f / t_p:.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--matchers", default="aliked_lightglue,gim_lightglue,gim_loftr")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--onnx-root", type=Path, default=None, help="reuse exports (and weights) in this folder")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--worker", nargs=3, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        name, backend, directory = args.worker
        print(json.dumps(worker(name, backend, Path(directory), args.repeats, args.threads)))
        return 0

    from gim_plugins.matching import weights_available

    print(f"CPU: {cpu_name()}; threads {args.threads}; median of {args.repeats} runs after one warm-up")
    root = args.onnx_root or Path(tempfile.mkdtemp(prefix="gim_onnx_bench_"))
    root.mkdir(parents=True, exist_ok=True)
    measured: dict[str, dict[str, dict[str, float]]] = {}
    for name in args.matchers.split(","):
        if name == "aliked_lightglue" and not weights_available(name):
            print("aliked_lightglue: weights not installed (gim weights fetch aliked_lightglue); skipped")
            continue
        directory = export(name, root)
        measured[name] = {}
        for backend in BACKENDS:
            command = [sys.executable, __file__, "--worker", name, backend, str(directory),
                       "--repeats", str(args.repeats), "--threads", str(args.threads)]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            measured[name][backend] = json.loads(output.strip().splitlines()[-1])
        base = measured[name]["torch"]
        print(f"\n{name} (motorcycle pair, {SIZES[name][1]}×{SIZES[name][0]})")
        print(f"  {'backend':18} {'s/pair':>8} {'× torch':>8} {'peak MiB':>9} {'× torch':>8} {'matches':>8}")
        for backend, row in measured[name].items():
            print(f"  {backend:18} {row['seconds']:8.3f} {row['seconds'] / base['seconds']:8.2f} "
                  f"{row['peak_mib']:9.0f} {row['peak_mib'] / base['peak_mib']:8.2f} {row['matches']:8d}")
    if "aliked_lightglue" in measured:
        pruning_effect(args.repeats)
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_name(), "threads": args.threads, "results": measured}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
