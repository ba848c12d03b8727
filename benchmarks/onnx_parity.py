"""Parity of the ONNX Runtime backend with PyTorch on the motorcycle pair: the numbers of docs/onnx.md.

Exports each matcher as ``tests/export`` does (aliked_lightglue with its offline weights when installed;
gim_lightglue and gim_loftr with the synthetic checkpoints of ``tests/export/onnx_fixtures.py``) into
``--onnx-root`` (reused when already there), then prints per image the keypoint agreement (same set? largest
distance), the largest descriptor and score difference, and per pair the matches of both sides, the share found in
the other within 1e-3 px in all four coordinates, and the largest coordinate difference.

    .venv/bin/python benchmarks/onnx_parity.py [--matchers aliked_lightglue,gim_lightglue,gim_loftr]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from gim_plugins.machine import cpu_name

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]  # benchmarks/onnx.py would shadow onnx
sys.path.insert(0, str(HERE.parent / "tests" / "export"))




def _rows(result):  # type: ignore[no-untyped-def]
    import torch

    return torch.cat([result.keypoints0, result.keypoints1], 1).double()


def measure(name: str, directory: Path) -> None:
    import torch
    from onnx_fixtures import shared_matches, torch_twin

    from gim_plugins.datasets.motorcycle import paths
    from gim_plugins.matching import load_matcher

    pair = paths()
    onnx_matcher = load_matcher(name, backend="onnxruntime", onnx=directory)
    torch_matcher = torch_twin(onnx_matcher)
    if name != "gim_loftr":
        for side in ("left", "right"):
            ft, fo = torch_matcher.extract(pair[side]), onnx_matcher.extract(pair[side])
            same = sorted(map(tuple, ft.keypoints.tolist())) == sorted(map(tuple, fo.keypoints.tolist()))
            distance, index = torch.cdist(ft.keypoints.double(), fo.keypoints.double()).min(1)
            print(f"{name} {side}: keypoints {len(ft)} / {len(fo)}, identical set {same}, same order "
                  f"{torch.equal(ft.keypoints, fo.keypoints)}, largest distance {distance.max().item():.3g} px; "
                  f"descriptors max|Δ| {(ft.descriptors - fo.descriptors[index]).abs().max().item():.3g}; "
                  f"scores max|Δ| {(ft.scores - fo.scores[index]).abs().max().item():.3g}")
    rt, ro = torch_matcher.match(pair["left"], pair["right"]), onnx_matcher.match(pair["left"], pair["right"])
    a, b = shared_matches(rt, ro, 1e-3), shared_matches(ro, rt, 1e-3)
    line = (f"{name} matches: torch {len(rt)}, onnx {len(ro)}; torch's in onnx (1e-3 px) {a / max(len(rt), 1):.2%}, "
            f"onnx's in torch {b / max(len(ro), 1):.2%}")
    if len(rt) and len(ro):
        nearest = torch.cdist(_rows(rt), _rows(ro), p=float("inf")).min(1).values
        line += f"; largest coordinate difference to the nearest match {nearest.max().item():.3g} px"
    print(line, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--matchers", default="aliked_lightglue,gim_lightglue,gim_loftr")
    parser.add_argument("--onnx-root", type=Path, default=None, help="reuse exports in this folder")
    args = parser.parse_args(argv)
    import onnxruntime
    import torch
    from onnx_fixtures import LOFTR_SIZE, SIZE, gim_lightglue_weights, loftr_weights

    from gim_plugins.export.onnx_export import main as export
    from gim_plugins.matching import weights_available

    print(f"CPU: {cpu_name()}; torch {torch.__version__}, onnxruntime {onnxruntime.__version__}")
    confs = {
        "aliked_lightglue": {"size": SIZE},
        "gim_lightglue": {"weights": gim_lightglue_weights(), "matcher_conf": {"filter_threshold": 0.0},
                          "dynamic": True},
        "gim_loftr": {"weights": loftr_weights(), "size": LOFTR_SIZE, "matcher_conf": {"coarse_threshold": 0.0}},
    }
    root = args.onnx_root or Path(tempfile.mkdtemp(prefix="gim_onnx_parity_"))
    for name in args.matchers.split(","):
        if name == "aliked_lightglue" and not weights_available(name):
            print("aliked_lightglue: weights not installed (gim weights fetch aliked_lightglue); skipped")
            continue
        directory = root / name
        if not (directory / "manifest.json").exists():
            start = time.perf_counter()
            export({"matcher": name, **confs[name]}, directory)
            print(f"exported {name} in {time.perf_counter() - start:.0f} s", flush=True)
        measure(name, directory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
