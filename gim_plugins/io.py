"""Reading images and normalising every accepted image form into one tensor layout.

Matchers accept file paths, ``H×W×3`` uint8 RGB / ``H×W`` gray numpy arrays (also 16-bit, RGBA, float in [0, 1]),
PIL images, or torch tensors (``C×H×W``, ``1×C×H×W`` or ``H×W``). :func:`to_image_tensor` turns each of them into the
single internal layout: a float32 ``(3, H, W)`` RGB tensor in [0, 1] on the CPU. Gray input is replicated to three
channels (exact: the ITU-R 601 weights sum to 1, so a gray-native network gets its gray values back), alpha is
dropped as ``cv2.imread`` drops it for GIM's RGBA demo images, and 16-bit input is scaled by 1/65535.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["ImageInput", "read_image", "resize_max_side", "rgb_to_gray", "scale_keypoints", "to_image_tensor"]

ImageInput: TypeAlias = "str | os.PathLike[str] | np.ndarray | torch.Tensor | Any"
"""Anything :func:`to_image_tensor` accepts."""

GRAY_WEIGHTS = (0.299, 0.587, 0.114)
"""RGB → gray weights (ITU-R 601), as OpenCV and GIM's SuperPoint use them."""


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as RGB (``H×W×3``), gray (``H×W``) or RGBA (``H×W×4``), keeping 8 or 16 bits.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not an image OpenCV can decode.
    """
    import cv2

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    data = np.fromfile(str(path), dtype=np.uint8)  # cv2.imread cannot report why it failed; decode explicitly
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise ValueError(f"cannot decode {path} as an image (unsupported or corrupt file)")
    if image.ndim == 3:
        code = {3: cv2.COLOR_BGR2RGB, 4: cv2.COLOR_BGRA2RGBA}.get(image.shape[2])
        image = cv2.cvtColor(image, code) if code is not None else image
    return image


def _array_to_chw(array: np.ndarray, name: str) -> np.ndarray:
    """HW, HWC → float32 CHW in [0, 1] (C = 1, 3 or 4)."""
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ValueError(f"{name}: expected an H×W, H×W×3 or H×W×4 image array, got shape {array.shape}")
    if array.dtype == np.uint8:
        scaled = array.astype(np.float32) / 255.0
    elif array.dtype == np.uint16:
        scaled = array.astype(np.float32) / 65535.0
    elif array.dtype == np.bool_:
        scaled = array.astype(np.float32)
    elif np.issubdtype(array.dtype, np.floating):
        scaled = array.astype(np.float32)
    else:
        raise ValueError(f"{name}: unsupported image dtype {array.dtype} (use uint8, uint16 or float in [0, 1])")
    return np.ascontiguousarray(scaled.transpose(2, 0, 1))


def _tensor_to_chw(image: torch.Tensor, name: str) -> torch.Tensor:
    """HW, CHW, 1CHW tensor → float32 CHW in [0, 1] on the CPU (C = 1, 3 or 4)."""
    import torch

    tensor = image.detach().cpu()
    if tensor.ndim == 4:
        if tensor.shape[0] != 1:
            raise ValueError(f"{name}: expected a single image, got a batch of {tensor.shape[0]}")
        tensor = tensor[0]
    if tensor.ndim == 2:
        tensor = tensor[None]
    if tensor.ndim != 3 or tensor.shape[0] not in (1, 3, 4):
        raise ValueError(f"{name}: expected a (C, H, W) tensor with C in 1, 3, 4, got {tuple(image.shape)}")
    if tensor.dtype == torch.uint8:
        return tensor.float() / 255.0
    if tensor.dtype == torch.bool or tensor.is_floating_point():
        return tensor.float()
    raise ValueError(f"{name}: unsupported tensor dtype {tensor.dtype} (use uint8 or float in [0, 1])")


def to_image_tensor(image: ImageInput, name: str = "image", min_size: int = 1) -> torch.Tensor:
    """Convert any accepted image form into a float32 ``(3, H, W)`` RGB tensor in [0, 1] on the CPU.

    Args:
        image: a path, a numpy array (``H×W``, ``H×W×{1,3,4}``; uint8, uint16, bool or float in [0, 1]), a PIL image,
            or a torch tensor (``H×W``, ``{1,3,4}×H×W``, ``1×{1,3,4}×H×W``; uint8 or float in [0, 1]).
        name: used in error messages (``"image0"``).
        min_size: the smallest accepted height and width in pixels.

    Raises:
        FileNotFoundError: a path that does not exist.
        ValueError: an undecodable file, an unsupported shape or dtype, float values outside [0, 1], or an image
            smaller than ``min_size``.
    """
    import torch

    if isinstance(image, str | os.PathLike):
        image = read_image(image)
    if isinstance(image, torch.Tensor):
        tensor = _tensor_to_chw(image, name)
    else:
        array = np.asarray(image)
        if array.dtype == object or array.ndim == 0:
            raise ValueError(f"{name}: expected a path, an image array or a tensor, got {type(image).__name__}")
        tensor = torch.from_numpy(_array_to_chw(array, name))
    if tensor.shape[0] == 4:
        tensor = tensor[:3]
    if tensor.shape[0] == 1:
        tensor = tensor.expand(3, -1, -1)
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name}: image contains NaN or infinite values")
    low, high = float(tensor.min()), float(tensor.max())
    if low < 0.0 or high > 1.0:
        raise ValueError(f"{name}: float images must be in [0, 1], got values in [{low:.3g}, {high:.3g}]")
    height, width = int(tensor.shape[1]), int(tensor.shape[2])
    if height < min_size or width < min_size:
        raise ValueError(f"{name}: image of {width}×{height} px is too small; this matcher needs at least "
                         f"{min_size}×{min_size} px")
    return tensor.contiguous()


def rgb_to_gray(image: torch.Tensor) -> torch.Tensor:
    """``(..., 3, H, W)`` RGB → ``(..., 1, H, W)`` gray with the ITU-R 601 weights."""
    r, g, b = image.unbind(-3)
    return (GRAY_WEIGHTS[0] * r + GRAY_WEIGHTS[1] * g + GRAY_WEIGHTS[2] * b).unsqueeze(-3)


def resize_max_side(image: torch.Tensor, max_size: int | None) -> tuple[torch.Tensor, tuple[float, float]]:
    """Downscale a ``(C, H, W)`` image so that its long side is at most ``max_size`` (area interpolation).

    Returns:
        The (possibly) resized image and ``(sx, sy)``, the factors from resized to original pixels. Map keypoints
        back with :func:`scale_keypoints` (centre convention: ``(k + 0.5) * s - 0.5``).
    """
    import torch.nn.functional as F

    height, width = image.shape[-2:]
    if max_size is None or max(height, width) <= max_size:
        return image, (1.0, 1.0)
    factor = max_size / max(height, width)
    new_h, new_w = max(1, round(height * factor)), max(1, round(width * factor))
    resized = F.interpolate(image[None], size=(new_h, new_w), mode="area")[0]
    return resized, (width / new_w, height / new_h)


def scale_keypoints(keypoints: torch.Tensor, scale: tuple[float, float]) -> torch.Tensor:
    """Map ``(N, 2)`` keypoints from a resized image back to the original one (centre-at-integer convention)."""
    import torch

    factor = torch.tensor(scale, dtype=keypoints.dtype, device=keypoints.device)
    return (keypoints + 0.5) * factor - 0.5
