"""``gim match`` and ``gim demo``: match two images, write GIM's two demo pictures, print the numbers.

``gim demo`` is ``gim match`` on the Middlebury motorcycle stereo pair bundled with scikit-image, with the share of
matches that agree with the ground-truth disparity.

Everything the user gives is checked before any work: the device, ``--max-size``, the disparity file, the matcher
and its options, the images (a too-large image is refused from its header unless ``--max-size`` downscales it,
which decodes each file once and converts it one channel at a time). The pictures are drawn at most
:data:`PICTURE_MAX_SIDE` pixels per image side, whatever the input size.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["PICTURE_MAX_SIDE", "MatchSummary", "register", "run_match"]

PICTURE_MAX_SIDE = 2048
"""Longest side of each image in the written pictures (larger inputs are drawn downscaled)."""


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

    Raises:
        UserError: (one line) a bad device, ``max_size``, threshold, disparity file, matcher, option or image;
            nothing is written then.
    """
    from gim_plugins.errors import InputError
    from gim_plugins.matching import check_device, default_matcher, load_matcher
    from gim_plugins.viz import draw_matches, draw_warp, write_png

    check_device(device)
    if max_size is not None and (isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1):
        raise InputError(f"--max-size must be a whole number of pixels, 1 or more (e.g. 1024), got {max_size!r}")
    if not threshold > 0:
        raise InputError(f"--threshold must be a positive number of pixels, got {threshold!r}")
    disparity_map = _read_disparity(disparity) if disparity is not None else None
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
    (im0, scale0, size0, pic0, pic_scale0) = _load(image0, "image0", model, max_size)
    (im1, scale1, size1, pic1, pic_scale1) = _load(image1, "image1", model, max_size)
    if disparity_map is not None and disparity_map.shape != size0:
        raise InputError(f"--disparity {disparity}: {disparity_map.shape[1]}×{disparity_map.shape[0]} values, but "
                         f"image0 is {size0[1]}×{size0[0]} px; give the disparity of image0")
    start = time.perf_counter()
    result = model.match(im0, im1)
    if (scale0, scale1) != ((1.0, 1.0), (1.0, 1.0)):
        result = result.rescaled(scale0, scale1, size0, size1)  # in pixels of the images as given
    seconds = time.perf_counter() - start
    fit_f = result.fundamental(threshold=threshold)
    fit_h = result.homography()
    k0, k1, _ = result.numpy()
    stem = f"{Path(image0).stem}_{Path(image1).stem}_{matcher.replace(':', '.')}"
    p0, p1 = _to_picture(k0, pic_scale0), _to_picture(k1, pic_scale1)
    match_png = write_png(out / f"{stem}_match.png", draw_matches(pic0, pic1, p0, p1, fit_f.inliers))
    homography = None if fit_h.model is None else _picture_homography(fit_h.model, pic_scale0, pic_scale1)
    warp_png = write_png(out / f"{stem}_warp.png", draw_warp(pic0, pic1, homography))
    summary = MatchSummary(model.name or matcher, len(result), fit_f.num_inliers, seconds,
                           dict(result.timing), match_png, warp_png, notes=notes)
    if disparity_map is not None:
        from gim_plugins.datasets.motorcycle import disparity_agreement

        summary.disparity_share, summary.disparity_valid = disparity_agreement(k0, k1, disparity_map)
    return summary


def _load(path: Path, name: str, model: Any, max_size: int | None) -> tuple[Any, ...]:
    """The matcher's input, its scale to the original pixels, the original ``(H, W)``, and the picture copy
    (uint8 RGB, long side ≤ :data:`PICTURE_MAX_SIDE`) with its scale to the original pixels."""
    from gim_plugins.io import load_downscaled, read_image, resize_max_side, to_image_tensor
    from gim_plugins.viz import to_uint8_rgb

    if max_size is None:
        full = to_image_tensor(path, name, model.min_image_size, max_pixels=model.max_image_pixels,
                               owner=f"matcher {model.name!r}")
        picture, pic_scale = resize_max_side(full, PICTURE_MAX_SIDE)
        return full, (1.0, 1.0), (int(full.shape[1]), int(full.shape[2])), to_uint8_rgb(picture.numpy()), pic_scale
    decoded = read_image(path)  # 8/16 bits, decoded once for both copies
    small, scale, size = load_downscaled(decoded, max_size, name, model.min_image_size)
    picture, pic_scale, _ = load_downscaled(decoded, PICTURE_MAX_SIDE, name)
    del decoded
    return small, scale, size, to_uint8_rgb(picture.numpy()), pic_scale


def _to_picture(keypoints: Any, scale: tuple[float, float]) -> Any:
    """Keypoints in original pixels → pixels of the picture copy (centre convention)."""
    import numpy as np

    return (np.asarray(keypoints, np.float64) + 0.5) / np.asarray(scale) - 0.5


def _picture_homography(homography: Any, scale0: tuple[float, float], scale1: tuple[float, float]) -> Any:
    """The 1→0 homography of original pixels, in pixels of the two picture copies."""
    import numpy as np

    def to_original(scale: tuple[float, float]) -> Any:  # picture pixel → original pixel (centre convention)
        sx, sy = scale
        return np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1.0]])

    return np.linalg.inv(to_original(scale0)) @ np.asarray(homography, np.float64) @ to_original(scale1)


def _read_disparity(path: Path) -> Any:
    """A disparity map from ``.npz`` (first array) or ``.npy``; checked before any matching or writing."""
    import numpy as np

    from gim_plugins.errors import InputError

    path = Path(path)
    if path.is_dir():
        raise InputError(f"--disparity {path} is a directory; give a .npz or .npy file")
    if not path.is_file():
        raise FileNotFoundError(f"--disparity file not found: {path}")
    try:
        with open(path, "rb") as handle:
            loaded = np.load(handle, allow_pickle=False)
            data = loaded[loaded.files[0]] if hasattr(loaded, "files") else loaded
            disparity = np.asarray(data, dtype=np.float32)
    except (ValueError, OSError, IndexError, EOFError) as exc:
        raise InputError(f"--disparity {path} is not a readable .npz/.npy array ({exc})") from None
    if disparity.ndim == 3 and disparity.shape[2] == 1:
        disparity = disparity[..., 0]
    if disparity.ndim != 2:
        raise InputError(f"--disparity {path}: expected an H×W array, got shape {disparity.shape}")
    return np.where(np.isfinite(disparity), disparity, np.inf).astype(np.float32)


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
