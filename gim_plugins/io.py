"""Reading images and normalising every accepted image form into one tensor layout.

Matchers accept file paths, ``H×W×3`` uint8 RGB / ``H×W`` gray numpy arrays (also 16-bit, RGBA, float in [0, 1]),
PIL images, or torch tensors (``C×H×W``, ``1×C×H×W`` or ``H×W``). :func:`to_image_tensor` turns each of them into the
single internal layout: a float32 ``(3, H, W)`` RGB tensor in [0, 1] on the CPU. Gray input is replicated to three
channels (exact: the ITU-R 601 weights sum to 1, so a gray-native network gets its gray values back), alpha is
dropped as ``cv2.imread`` drops it for GIM's RGBA demo images, and 16-bit input is scaled by 1/65535. PIL images in
other modes (palette ``P``, ``CMYK``, ``YCbCr``, 1-bit, …) are converted to RGB(A) first: read as plain arrays they
would be palette indices or four ink channels.

Size guards, so that a huge image is refused before anything large is allocated: a file's size is read from its
header before it is decoded (:func:`image_size`), and ``to_image_tensor(..., max_pixels=)`` refuses an image above a
matcher's ``max_image_pixels`` before converting it to float. :func:`load_downscaled` is the other way out: it
decodes once (8 or 16 bits) and converts and downscales one channel at a time, so a 100-megapixel file costs its
8-bit pixels plus one float channel, not several full-size float copies.

Every problem with an image the user gave raises :class:`~gim_plugins.errors.InputError` (a ``ValueError``) or
``FileNotFoundError`` with one line naming the image and what is wrong.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

from gim_plugins.errors import InputError

if TYPE_CHECKING:
    import torch

__all__ = ["MAX_DECODE_PIXELS", "ImageInput", "image_size", "load_downscaled", "read_image", "resize_max_side",
           "rgb_to_gray", "scale_keypoints", "to_image_tensor"]

ImageInput: TypeAlias = "str | os.PathLike[str] | np.ndarray | torch.Tensor | Any"
"""Anything :func:`to_image_tensor` accepts."""

GRAY_WEIGHTS = (0.299, 0.587, 0.114)
"""RGB → gray weights (ITU-R 601), as OpenCV and GIM's SuperPoint use them."""

MAX_DECODE_PIXELS = 400_000_000
"""Files larger than this (1.2 GB as 8-bit RGB) are not decoded at all, whatever is done with them afterwards."""

_PIL_MODES = {"1": "L", "P": None, "PA": "RGBA", "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB",
              "RGBX": "RGB", "RGBa": "RGBA", "La": "LA", "I": None, "F": None}
"""PIL modes that are not pixel arrays as they are → the mode to convert to (``None``: decided per image)."""


_PIL_HEADER_LOCK = threading.Lock()


def _megapixels(height: int, width: int) -> str:
    return f"{width}×{height} px ({height * width / 1e6:.1f} MP)"


def _amount(pixels: int) -> str:
    return f"{pixels / 1e6:.1f} MP" if pixels >= 1_000_000 else f"{pixels} px"


def check_pixels(height: int, width: int, name: str, max_pixels: int | None, owner: str = "this matcher") -> None:
    """Refuse an image larger than ``max_pixels`` (before it is decoded or converted).

    Raises:
        InputError: one line with the size, the limit and the two ways out (downscale, or raise the limit).
    """
    if max_pixels is not None and height * width > max_pixels:
        raise InputError(
            f"{name}: {_megapixels(height, width)} is larger than the {_amount(max_pixels)} {owner} accepts "
            f"(max_image_pixels); downscale it (gim match --max-size N, match_pair(..., max_size=N)) or raise the "
            "limit (--conf max_image_pixels=N)"
        )


def _check_file(path: Path) -> None:
    if path.is_dir():
        raise InputError(f"{path} is a directory, not an image file")
    if not path.exists():
        raise FileNotFoundError(f"image not found: {path}")
    if not path.is_file():
        raise InputError(f"{path} is not a regular file (a device or pipe?); give an image file")
    if path.stat().st_size == 0:
        raise InputError(f"{path} is empty (0 bytes): not an image; copy it again")


def image_size(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """``(H, W)`` of an image file from its header, without decoding the pixels (``None`` when PIL cannot tell).

    Raises:
        FileNotFoundError: the file does not exist.
        InputError: a directory or an empty file.
    """
    import warnings

    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    _check_file(path)
    with _PIL_HEADER_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # only the header is read: report any size
        try:
            with Image.open(path) as image:  # lazy: reads the header only
                width, height = image.size
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            return None
        finally:
            Image.MAX_IMAGE_PIXELS = limit
    return int(height), int(width)


def _truncated(data: np.ndarray) -> bool:
    """Whether a JPEG or PNG file lacks its end marker (OpenCV decodes a cut JPEG with a grey bottom, silently)."""
    head, tail = data[:8].tobytes(), data[-4096:].tobytes()
    if head.startswith(b"\xff\xd8"):
        return b"\xff\xd9" not in tail
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return b"IEND" not in tail
    return False


def read_image(path: str | os.PathLike[str], *, max_pixels: int | None = None,
               owner: str = "this matcher") -> np.ndarray:
    """Read an image file as RGB (``H×W×3``), gray (``H×W``) or RGBA (``H×W×4``), keeping 8 or 16 bits.

    Args:
        path: the image file.
        max_pixels: refuse (from the header, before decoding) a file with more pixels.
        owner: who sets ``max_pixels``, for the message.

    Raises:
        FileNotFoundError: the file does not exist.
        InputError: a directory, an empty or truncated file, a file OpenCV cannot decode, or one above
            ``max_pixels`` (or :data:`MAX_DECODE_PIXELS`).
    """
    import cv2

    path = Path(path)
    size = image_size(path)
    if size is not None:
        check_pixels(*size, str(path), max_pixels, owner)
        if size[0] * size[1] > MAX_DECODE_PIXELS:
            raise InputError(f"{path}: {_megapixels(*size)} is more than the {MAX_DECODE_PIXELS / 1e6:.0f} MP this "
                             "package decodes; downscale the file first")
    data = np.fromfile(str(path), dtype=np.uint8)  # cv2.imread cannot report why it failed; decode explicitly
    if _truncated(data):
        raise InputError(f"{path} is truncated (its end marker is missing): copy or download it again")
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise InputError(f"cannot decode {path} as an image (unsupported or corrupt file)")
    if image.ndim == 3:
        code = {3: cv2.COLOR_BGR2RGB, 4: cv2.COLOR_BGRA2RGBA}.get(image.shape[2])
        if code is not None:
            image = cv2.cvtColor(image, code, dst=image)  # in place: no second full-size copy
    if size is None:  # a format PIL cannot read: checked after decoding instead
        check_pixels(*image.shape[:2], str(path), max_pixels, owner)
    return image


def _pil_to_array(image: Any) -> np.ndarray:
    """A PIL image as a pixel array: palette, CMYK, 1-bit, YCbCr, … converted to RGB(A) or gray first."""
    mode = image.mode
    if mode in _PIL_MODES:
        target = _PIL_MODES[mode]
        if mode == "P":
            target = "RGBA" if "transparency" in image.info else "RGB"
        elif mode in ("I", "F"):
            array = np.asarray(image)
            if mode == "I" and array.size and 0 <= array.min() and array.max() <= 65535:
                return array.astype(np.uint16)
            raise InputError(f"PIL image in mode {mode!r} (32-bit values): convert it to 'RGB', 'L' or 'I;16' first")
        image = image.convert(target)
    return np.asarray(image)


def _array_to_chw(array: np.ndarray, name: str) -> np.ndarray:
    """HW, HWC → float32 CHW in [0, 1] (C = 1, 3 or 4)."""
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise InputError(f"{name}: expected an H×W, H×W×3 or H×W×4 image array, got shape {array.shape}")
    if 0 in array.shape[:2]:
        raise InputError(f"{name}: the image array is empty (shape {array.shape})")
    if array.dtype in (np.uint8, np.uint16):  # one float copy, divided in place (the same numbers)
        scaled = array.astype(np.float32)
        scaled /= np.float32(255.0 if array.dtype == np.uint8 else 65535.0)
    elif array.dtype == np.bool_:
        scaled = array.astype(np.float32)
    elif np.issubdtype(array.dtype, np.floating):
        scaled = array.astype(np.float32)
    else:
        raise InputError(f"{name}: unsupported image dtype {array.dtype} (use uint8, uint16 or float in [0, 1])")
    return np.ascontiguousarray(scaled.transpose(2, 0, 1))


def _tensor_to_chw(image: torch.Tensor, name: str) -> torch.Tensor:
    """HW, CHW, 1CHW tensor → float32 CHW in [0, 1] on the CPU (C = 1, 3 or 4)."""
    import torch

    tensor = image.detach().cpu()
    if tensor.ndim == 4:
        if tensor.shape[0] != 1:
            raise InputError(f"{name}: expected a single image, got a batch of {tensor.shape[0]}")
        tensor = tensor[0]
    if tensor.ndim == 2:
        tensor = tensor[None]
    if tensor.ndim != 3 or tensor.shape[0] not in (1, 3, 4):
        raise InputError(f"{name}: expected a (C, H, W) tensor with C in 1, 3, 4, got {tuple(image.shape)}")
    if 0 in tensor.shape[1:]:
        raise InputError(f"{name}: the image tensor is empty (shape {tuple(image.shape)})")
    if tensor.dtype == torch.uint8:
        return tensor.float() / 255.0
    if tensor.dtype == torch.bool or tensor.is_floating_point():
        return tensor.float()
    raise InputError(f"{name}: unsupported tensor dtype {tensor.dtype} (use uint8 or float in [0, 1])")


def _spatial_shape(image: Any) -> tuple[int, int] | None:
    """``(H, W)`` of an array or tensor in any accepted layout, without converting it (``None``: not known yet)."""
    shape = tuple(getattr(image, "shape", ()))
    if not shape or not all(isinstance(v, int) for v in shape):
        return None
    if type(image).__module__.startswith("torch"):
        return (shape[-2], shape[-1]) if len(shape) >= 2 else None
    return (shape[0], shape[1]) if len(shape) >= 2 else None


def to_image_tensor(image: ImageInput, name: str = "image", min_size: int = 1, *, max_pixels: int | None = None,
                    owner: str = "this matcher") -> torch.Tensor:
    """Convert any accepted image form into a float32 ``(3, H, W)`` RGB tensor in [0, 1] on the CPU.

    Args:
        image: a path, a numpy array (``H×W``, ``H×W×{1,3,4}``; uint8, uint16, bool or float in [0, 1]), a PIL image
            (any mode), or a torch tensor (``H×W``, ``{1,3,4}×H×W``, ``1×{1,3,4}×H×W``; uint8 or float in [0, 1]).
        name: used in error messages (``"image0"``).
        min_size: the smallest accepted height and width in pixels.
        max_pixels: refuse larger images before decoding or converting them (a matcher's ``max_image_pixels``).
        owner: who sets the limits, for the messages.

    Raises:
        FileNotFoundError: a path that does not exist.
        InputError: a directory, an empty, truncated or undecodable file, an unsupported shape or dtype, float
            values outside [0, 1], an image smaller than ``min_size`` or larger than ``max_pixels``.
    """
    import torch

    if image is None:
        raise InputError(f"{name}: expected a path, an image array or a tensor, got None")
    if isinstance(image, str | os.PathLike):
        image = read_image(image, max_pixels=max_pixels, owner=owner)
    elif hasattr(image, "mode") and hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image
        check_pixels(image.size[1], image.size[0], name, max_pixels, owner)
        image = _pil_to_array(image)
    shape = _spatial_shape(image)
    if shape is not None:
        check_pixels(*shape, name, max_pixels, owner)
    if isinstance(image, torch.Tensor):
        tensor = _tensor_to_chw(image, name)
    else:
        array = np.asarray(image)
        if array.dtype == object or array.ndim == 0:
            raise InputError(f"{name}: expected a path, an image array or a tensor, got {type(image).__name__}")
        tensor = torch.from_numpy(_array_to_chw(array, name))
    return _finish(tensor, name, min_size)


def _finish(tensor: torch.Tensor, name: str, min_size: int) -> torch.Tensor:
    """``(C, H, W)`` float in any channel count → checked ``(3, H, W)`` RGB."""
    import torch

    if tensor.shape[0] == 4:
        tensor = tensor[:3]
    if tensor.shape[0] == 1:
        tensor = tensor.expand(3, -1, -1)
    if not bool(torch.isfinite(tensor).all()):
        raise InputError(f"{name}: image contains NaN or infinite values")
    low, high = float(tensor.min()), float(tensor.max())
    if low < 0.0 or high > 1.0:
        raise InputError(f"{name}: float images must be in [0, 1], got values in [{low:.3g}, {high:.3g}]")
    height, width = int(tensor.shape[1]), int(tensor.shape[2])
    if height < min_size or width < min_size:
        raise InputError(f"{name}: image of {width}×{height} px is too small; this matcher needs at least "
                         f"{min_size}×{min_size} px")
    return tensor.contiguous()


def load_downscaled(image: ImageInput, max_size: int, name: str = "image",
                    min_size: int = 1) -> tuple[torch.Tensor, tuple[float, float], tuple[int, int]]:
    """An image downscaled so that its long side is at most ``max_size``, holding few full-size copies.

    Exactly :func:`to_image_tensor` followed by :func:`resize_max_side` (same numbers), but a file or array is
    converted to float and area-resized one channel at a time: the peak is the decoded 8/16-bit pixels plus one
    float channel, instead of the float image (12 bytes a pixel) and its copies.

    Returns:
        ``(small (3, h, w) float32, (sx, sy) from small to original pixels, (H, W) of the original)``.

    Raises:
        InputError: as :func:`to_image_tensor`, or a ``max_size`` that is not a positive integer.
    """
    import operator

    import torch
    import torch.nn.functional as F

    try:
        size = operator.index(max_size)
    except TypeError:
        size = 0
    if isinstance(max_size, bool) or size < 1:
        raise InputError(f"max_size must be a positive number of pixels (a whole number, 1 or more), got {max_size!r}")
    if isinstance(image, str | os.PathLike):
        image = read_image(image)
    elif hasattr(image, "mode") and hasattr(image, "convert") and hasattr(image, "size"):
        image = _pil_to_array(image)
    if isinstance(image, torch.Tensor) or not isinstance(image, np.ndarray) or image.ndim not in (2, 3):
        full = to_image_tensor(image, name)
        small, scale = resize_max_side(full, size)
        return _finish(small, name, min_size), scale, (int(full.shape[1]), int(full.shape[2]))
    height, width = image.shape[:2]
    if max(height, width) <= size:
        return to_image_tensor(image, name, min_size), (1.0, 1.0), (height, width)
    factor = size / max(height, width)
    new_h, new_w = max(1, round(height * factor)), max(1, round(width * factor))
    channels = image[:, :, None] if image.ndim == 2 else image
    if channels.shape[2] == 4:
        channels = channels[:, :, :3]
    planes = []
    for c in range(channels.shape[2]):  # the same arithmetic as to_image_tensor + resize_max_side, per channel
        plane = torch.from_numpy(_array_to_chw(np.ascontiguousarray(channels[:, :, c]), name))
        planes.append(F.interpolate(plane[None], size=(new_h, new_w), mode="area")[0])
        del plane
    small = torch.cat(planes, dim=0)
    return _finish(small, name, min_size), (width / new_w, height / new_h), (height, width)


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
