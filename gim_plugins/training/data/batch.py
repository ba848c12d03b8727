"""The batch format every training dataset produces and every trainer consumes.

Why one format: GIM mixes video pairs (supervised by pseudo-labels) with posed pairs (supervised by depth or by
camera poses) in one batch, and four trainers read them. Each dataset here writes the same keys with the same
shapes, so a trainer needs no per-dataset code and a mixed batch collates without special cases. The flags ``zs``,
``gt`` and ``has_depth`` say which supervision a row carries; the fields that do not apply to a row hold neutral
values (identity matrices, zero depth, zero labels) rather than being absent.

Conventions:
    * Pixels: the package convention (centre of the top-left pixel at (0, 0); a pixel covers ``[i - 0.5, i + 0.5]``)
      in the **network-input image**: the image as it is in ``image0``/``image1`` (resized, cropped and, for image 1,
      warped by the augmentation homography ``H1``). Never the original frame's pixels.
    * Canvas: every image of a batch has the same ``(H, W)``: the configured image size floored to a multiple of
      ``df`` (8). The picture sits in the top-left corner; the bottom-right padding is zero and ``mask`` is False
      there.
    * Labels: ``labels[b, i] = (x0, y0, x1, y1)``: point ``(x0, y0)`` of image 0 corresponds to ``(x1, y1)`` of
      image 1; rows ``i >= num_labels[b]`` are zero. Valid rows are in random order (the first ``k`` are a random
      subset) and unique; a pair with more labels than the capacity ``L`` keeps a random ``L`` of them. For video
      pairs they are GIM's pseudo-labels after every augmentation; for posed pairs they are ground-truth
      correspondences (from depth or 3D-point tracks) after the same augmentations. Every valid label lies on real
      image content of both images, away from the padding.
    * Geometry of posed pairs: ``K0``/``K1`` are intrinsics in network-input pixels of the image **before** the
      image-1 homography (resize and crop folded in); ``T_0to1`` maps camera-0 to camera-1 coordinates
      (``X1 = R X0 + t``); ``depth0``/``depth1`` are z depths in metres on those same pre-homography grids (0 where
      unknown). A point of image 1's camera therefore lands in ``image1`` at ``H1 · K1 · X1`` (homogeneous).
      Video pairs carry identity ``K``, ``T`` (GIM's convention) with ``gt`` False.
    * Pending pixel work (the device path): a dataset may leave the photometric (Dark) augmentation and the warp of
      ``image1``/``mask1`` by ``H1`` to be done on the training device, batch-wide. Rows with ``pending`` True hold the
      un-warped, un-darkened images and masks; :func:`gim_plugins.training.data.augment.finish` performs the work on
      whatever device the batch is on and clears ``pending``. Labels, ``H1``, ``K``, ``T`` and depth are final either
      way. Trainers call ``finish`` once after moving the batch to the device (a no-op when nothing is pending).

Keys (``B`` batch size, ``H``/``W`` canvas, ``L`` label capacity, ``P`` = :data:`DARK_PARAMS`):

============== ================ ========= =====================================================================
key            shape            dtype     meaning
============== ================ ========= =====================================================================
image0/1       (B, 3, H, W)     float32   RGB in [0, 1]; zero on the padding
mask0/1        (B, H, W)        bool      True on image content, False on padding (and outside the warp)
size0/1        (B, 2)           int64     ``(h, w)`` of the picture before padding (image 1: before ``H1``)
K0/K1          (B, 3, 3)        float32   intrinsics in network-input pixels (pre-``H1``); identity for video
T_0to1         (B, 4, 4)        float32   camera 0 → camera 1; identity for video
H1             (B, 3, 3)        float32   image-1 augmentation homography (pre → post); identity when not applied
source0/1      (B, 3, 3)        float32   affine map network-input pixels (pre-``H1``) → original file pixels
depth0/1       (B, H, W)        float32   z depth in metres on the pre-``H1`` grid; 0 unknown or no depth
labels         (B, L, 4)        float32   correspondences ``x0, y0, x1, y1``; zero rows after ``num_labels``
num_labels     (B,)             int64     valid rows of ``labels``
zs             (B,)             bool      supervised by pseudo-labels (GIM's ``zs``: video pairs)
gt             (B,)             bool      has camera ground truth ``K0, K1, T_0to1`` (GIM's ``gt``)
has_depth      (B,)             bool      ``depth0``/``depth1`` hold depth
pending        (B,)             bool      Dark augmentation and the ``H1`` pixel warp still to be applied
dark0/1        (B, P)           float32   packed Dark-augmentation parameters of the row (all zero: none)
dataset        list[str]                  source dataset: ``walk``, ``megadepth``, ``colmap``, ``zeb``
scene          list[str]                  video id / scene name
pair           list[tuple]                ``(name0, name1)`` of the two images (frame indices for video)
============== ================ ========= =====================================================================

A sample (what a dataset's ``__getitem__`` returns) has the same keys without the leading ``B``; :func:`collate`
stacks samples into a batch and :func:`check_batch` verifies one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = [
    "DARK_PARAMS",
    "DATASETS",
    "IMAGE_KEYS",
    "META_KEYS",
    "TENSOR_SPEC",
    "check_batch",
    "check_sample",
    "collate",
    "to_device",
]

DARK_PARAMS = 16
"""Length of the packed Dark-augmentation parameter vector of one image (layout in ``training.data.darkaug``)."""

DATASETS = ("walk", "megadepth", "colmap", "zeb")
"""Values of the ``dataset`` key."""

TENSOR_SPEC: dict[str, tuple[tuple[str | int, ...], str]] = {
    "image0": (("B", 3, "H", "W"), "float32"),
    "image1": (("B", 3, "H", "W"), "float32"),
    "mask0": (("B", "H", "W"), "bool"),
    "mask1": (("B", "H", "W"), "bool"),
    "size0": (("B", 2), "int64"),
    "size1": (("B", 2), "int64"),
    "K0": (("B", 3, 3), "float32"),
    "K1": (("B", 3, 3), "float32"),
    "T_0to1": (("B", 4, 4), "float32"),
    "H1": (("B", 3, 3), "float32"),
    "source0": (("B", 3, 3), "float32"),
    "source1": (("B", 3, 3), "float32"),
    "depth0": (("B", "H", "W"), "float32"),
    "depth1": (("B", "H", "W"), "float32"),
    "labels": (("B", "L", 4), "float32"),
    "num_labels": (("B",), "int64"),
    "zs": (("B",), "bool"),
    "gt": (("B",), "bool"),
    "has_depth": (("B",), "bool"),
    "pending": (("B",), "bool"),
    "dark0": (("B", DARK_PARAMS), "float32"),
    "dark1": (("B", DARK_PARAMS), "float32"),
}
"""Every tensor key: its shape (symbols ``B``, ``H``, ``W``, ``L`` shared across keys) and dtype."""

META_KEYS = ("dataset", "scene", "pair")
"""Keys that collate into plain Python lists."""

IMAGE_KEYS = ("image0", "image1", "mask0", "mask1", "depth0", "depth1")
"""Keys on the ``(H, W)`` canvas."""


def _check(item: Mapping[str, Any], batched: bool) -> dict[str, int]:
    import torch

    expected = set(TENSOR_SPEC) | set(META_KEYS)
    if set(item) != expected:
        missing, extra = sorted(expected - set(item)), sorted(set(item) - expected)
        raise ValueError(f"batch keys differ from the batch format: missing {missing}, unexpected {extra}")
    dims: dict[str, int] = {}
    for key, (shape, dtype) in TENSOR_SPEC.items():
        value = item[key]
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{key}: expected a torch.Tensor, got {type(value).__name__}")
        want = shape if batched else shape[1:]
        if value.dtype != getattr(torch, dtype):
            raise TypeError(f"{key}: expected dtype {dtype}, got {value.dtype}")
        if value.ndim != len(want):
            raise ValueError(f"{key}: expected shape {want}, got {tuple(value.shape)}")
        for symbol, size in zip(want, value.shape):
            if isinstance(symbol, int):
                if size != symbol:
                    raise ValueError(f"{key}: expected shape {want}, got {tuple(value.shape)}")
            elif dims.setdefault(symbol, int(size)) != size:
                raise ValueError(f"{key}: dimension {symbol} is {size}, elsewhere {dims[symbol]}")
    devices = {item[key].device for key in TENSOR_SPEC}
    if len(devices) != 1:
        raise ValueError(f"batch tensors are on several devices: {sorted(map(str, devices))}")
    return dims


def _check_values(item: Mapping[str, Any], dims: Mapping[str, int]) -> None:
    import torch

    num = item["num_labels"].reshape(-1)
    if bool((num < 0).any()) or bool((num > dims["L"]).any()):
        raise ValueError(f"num_labels must lie in [0, {dims['L']}], got {num.tolist()}")
    rows = torch.arange(dims["L"], device=num.device)
    labels = item["labels"].reshape(-1, dims["L"], 4)
    padding = rows[None, :] >= num[:, None]
    if bool(labels[padding].ne(0).any()):
        raise ValueError("labels must be zero after num_labels")
    if "B" in dims and any(len(item[key]) != dims["B"] for key in META_KEYS):
        raise ValueError(f"{', '.join(META_KEYS)} must have one entry per row ({dims['B']})")


def check_sample(sample: Mapping[str, Any]) -> dict[str, int]:
    """Verify one dataset item against the format; returns its sizes ``{"H", "W", "L"}``.

    Raises:
        ValueError, TypeError: a missing or extra key, a wrong shape or dtype, non-zero label padding.
    """
    dims = _check(sample, batched=False)
    single = {key: (value.unsqueeze(0) if key in TENSOR_SPEC else [value]) for key, value in sample.items()}
    _check_values(single, dims)
    return dims


def check_batch(batch: Mapping[str, Any]) -> dict[str, int]:
    """Verify a collated batch against the format; returns its sizes ``{"B", "H", "W", "L"}``.

    Raises:
        ValueError, TypeError: as :func:`check_sample`, or inconsistent batch sizes or devices.
    """
    dims = _check(batch, batched=True)
    _check_values(batch, dims)
    return dims


def collate(samples: Sequence[Mapping[str, Any] | None]) -> dict[str, Any]:
    """Stack dataset items into a batch (tensors along a new first axis, metadata into lists).

    ``None`` items (a dataset that gave up on a pair, as GIM's loaders do) are dropped. Items must share the canvas
    ``(H, W)`` and the label capacity ``L``: one loader uses one image size and one label capacity.

    Raises:
        ValueError: no item left, or items of different canvas or label sizes.
    """
    import torch

    kept = [sample for sample in samples if sample is not None]
    if not kept:
        raise ValueError("collate: every item of the batch was None (all pairs were given up)")
    shapes = {(tuple(s["image0"].shape), tuple(s["labels"].shape)) for s in kept}
    if len(shapes) != 1:
        raise ValueError(f"collate: items differ in canvas or label capacity: {sorted(shapes)}; use one image size "
                         "and one max_labels per loader")
    batch: dict[str, Any] = {key: torch.stack([s[key] for s in kept]) for key in TENSOR_SPEC}
    for key in META_KEYS:
        batch[key] = [s[key] for s in kept]
    return batch


def to_device(batch: Mapping[str, Any], device: torch.device | str, *, non_blocking: bool = False) -> dict[str, Any]:
    """The batch with every tensor on ``device`` (metadata lists unchanged)."""
    import torch

    return {key: (value.to(device, non_blocking=non_blocking) if isinstance(value, torch.Tensor) else value)
            for key, value in batch.items()}
