"""``gim match`` and ``gim demo``: match two images, write GIM's two demo pictures, print the numbers.

``gim demo`` is ``gim match`` on the Middlebury motorcycle stereo pair bundled with scikit-image, with the share of
matches that agree with the ground-truth disparity.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["MatchSummary", "register", "run_match"]


def register(sub: Any) -> None:
    parser = sub.add_parser("match", help="match two images and write the match and warp pictures")
    parser.add_argument("image0", type=Path)
    parser.add_argument("image1", type=Path)
    _common_options(parser)
    parser.add_argument("--disparity", type=Path, default=None,
                        help="ground-truth disparity of image0 (.npz/.npy; x1 = x0 - d) to score the matches")
    parser.set_defaults(handler=_run_match_command)

    demo = sub.add_parser("demo", help="gim match on the motorcycle stereo pair bundled with scikit-image")
    _common_options(demo, default_out="demo_out")
    demo.set_defaults(handler=_run_demo_command)


def _common_options(parser: argparse.ArgumentParser, default_out: str = ".") -> None:
    parser.add_argument("--matcher", default=None,
                        help="registered matcher name (default: the best GIM matcher whose weights are installed, "
                             "else aliked_lightglue)")
    parser.add_argument("--weights", default=None, help="checkpoint file (default: the matcher's registered weights)")
    parser.add_argument("--out", type=Path, default=Path(default_out), help="output directory for the pictures")
    parser.add_argument("--max-size", type=int, default=None,
                        help="downscale images so that their long side is at most N px before matching "
                             "(keypoints are mapped back to the original pixels)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, …")
    parser.add_argument("--onnx", type=Path, default=None, metavar="DIR",
                        help="run the ONNX graphs that `gim export onnx` wrote to DIR in ONNX Runtime instead of "
                             "PyTorch (the onnx extra; docs/onnx.md)")
    parser.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE",
                        help="matcher option (repeatable), e.g. --conf max_keypoints=4096")
    parser.add_argument("--threshold", type=float, default=1.0,
                        help="inlier threshold of the fundamental-matrix fit in px (GIM's demo: 1.0)")


@dataclass
class MatchSummary:
    """What ``gim match`` measured and wrote."""

    matcher: str
    num_matches: int
    num_inliers: int
    seconds: float
    timing: dict[str, float]
    match_png: Path
    warp_png: Path
    disparity_share: float | None = None
    disparity_valid: int | None = None
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        stages = ", ".join(f"{k} {v:.2f} s" for k, v in self.timing.items() if k != "total")
        out = [f"matcher: {self.matcher}", f"matches: {self.num_matches}",
               f"inliers: {self.num_inliers} (fundamental matrix, USAC_MAGSAC)",
               f"time: {self.seconds:.2f} s{f' ({stages})' if stages else ''}"]
        if self.disparity_share is not None:
            out.append(f"ground truth: {100 * self.disparity_share:.1f} % of matches within 3 px of the GT disparity "
                       f"({self.disparity_valid} matches with GT)")
        out += [f"wrote {self.match_png}", f"wrote {self.warp_png}"]
        return out


def run_match(
    image0: Path,
    image1: Path,
    *,
    matcher: str | None = None,
    weights: str | None = None,
    out: Path = Path("."),
    max_size: int | None = None,
    device: str = "cpu",
    conf: dict[str, Any] | None = None,
    threshold: float = 1.0,
    disparity: Path | None = None,
    onnx: Path | None = None,
) -> MatchSummary:
    """Match two image files, fit F and H, write ``{stem0}_{stem1}_{matcher}_{match,warp}.png`` into ``out``.

    ``onnx``: an export directory of ``gim export onnx``; the matcher then runs its graphs in ONNX Runtime
    (``load_matcher(..., backend="onnxruntime")``) and ``matcher`` defaults to the exported one.
    """
    from gim_plugins.io import read_image, to_image_tensor
    from gim_plugins.matching import default_matcher, load_matcher, match_pair
    from gim_plugins.viz import draw_matches, draw_warp, write_png

    notes = []
    if matcher is None and onnx is not None:
        from gim_plugins.export.manifest import read_manifest

        matcher = str(read_manifest(onnx)["matcher"])
    if matcher is None:
        matcher, hint = default_matcher()
        if hint:
            notes.append(hint)
    backend = {"backend": "onnxruntime", "onnx": onnx} if onnx is not None else {}
    model = load_matcher(matcher, weights=weights, device=device, **backend, **(conf or {}))
    array0, array1 = read_image(image0), read_image(image1)
    full0 = to_image_tensor(array0, "image0", model.min_image_size)
    full1 = to_image_tensor(array1, "image1", model.min_image_size)
    start = time.perf_counter()
    result = match_pair(model, full0, full1, max_size=max_size)  # in pixels of full0/full1 even when downscaled
    seconds = time.perf_counter() - start
    fit_f = result.fundamental(threshold=threshold)
    fit_h = result.homography()
    k0, k1, _ = result.numpy()
    stem = f"{Path(image0).stem}_{Path(image1).stem}_{matcher.replace(':', '.')}"
    match_png = write_png(out / f"{stem}_match.png", draw_matches(full0.numpy(), full1.numpy(), k0, k1,
                                                                    fit_f.inliers))
    warp_png = write_png(out / f"{stem}_warp.png", draw_warp(full0.numpy(), full1.numpy(), fit_h.model))
    summary = MatchSummary(model.name or matcher, len(result), fit_f.num_inliers, seconds,
                           dict(result.timing), match_png, warp_png, notes=notes)
    if disparity is not None:
        from gim_plugins.datasets.motorcycle import disparity_agreement, load_disparity

        summary.disparity_share, summary.disparity_valid = disparity_agreement(k0, k1, load_disparity(disparity))
    return summary


def _from_args(args: argparse.Namespace, image0: Path, image1: Path, disparity: Path | None) -> int:
    from gim_plugins.conf import parse_conf

    summary = run_match(image0, image1, matcher=args.matcher, weights=args.weights, out=args.out,
                        max_size=args.max_size, device=args.device, conf=parse_conf(args.conf),
                        threshold=args.threshold, disparity=disparity, onnx=args.onnx)
    for note in summary.notes:
        print(note, file=sys.stderr)
    print("\n".join(summary.lines()))
    return 0


def _run_match_command(args: argparse.Namespace) -> int:
    return _from_args(args, args.image0, args.image1, args.disparity)


def _run_demo_command(args: argparse.Namespace) -> int:
    from gim_plugins.datasets.motorcycle import paths

    files = paths()
    print(f"motorcycle stereo pair (Middlebury 2014, bundled with scikit-image): {files['left'].parent}")
    return _from_args(args, files["left"], files["right"], files["disparity"])
