"""SuperPoint (DeTone, Malisiewicz, Rabinovich, CVPRW 2018), written for gim-plugins with GIM's inference settings.

Architecture (paper, §3): a VGG-style encoder — four stages of two 3×3 convolutions with ReLU (64, 64, 128, 128
channels), 2×2 max-pooling after the first three, so features at stride 8 — and two heads on it:

* interest points: 3×3 conv 128→256, ReLU, 1×1 conv 256→65; a softmax over the 65 channels gives, per 8×8 cell,
  the probability of each of its 64 pixels plus a "no interest point" dustbin. Dropping the dustbin and moving the
  64 channels back to their pixels (depth-to-space) gives a full-resolution heat map;
* descriptors: 3×3 conv 128→256, ReLU, 1×1 conv 256→256, L2-normalised at stride 8 and interpolated at the
  keypoints, then L2-normalised again.

Parameter names (``conv1a`` … ``convDb``, all convolutions with bias) are those of the released weights, so the
``superpoint.*`` tensors of GIM's ``gim_lightglue_100h`` load strictly
(``tests/fixtures/manifests/gim_lightglue_superpoint.json``).

Keypoint selection with the settings GIM uses everywhere (radius 3, threshold 0, 4-px border, 2048 points):

1. non-maximum suppression with a ``(2r+1)²`` window (r = 3) by max-pooling: a pixel survives if it is the maximum
   of its window; twice, the windows of the survivors are blanked and new maxima among the remaining pixels are
   added (this recovers points next to a suppressed one);
2. pixels within 4 px of the border are discarded, then every pixel scoring above the threshold (0: every surviving
   maximum) is a candidate, in row-major order;
3. more than ``max_keypoints`` candidates: the top-scoring ones, sorted by score; otherwise all, in row-major order;
4. ``force_num_keypoints``: an image with fewer is padded to exactly ``max_keypoints`` with uniformly random points
   inside the bounding box of its keypoints (score 0), as GIM's LightGlue was trained on fixed-size sets. The points
   come from a generator the caller passes (the wrapper seeds one per image, so features depend on the image only).

Descriptors use the sampling of the original SuperGlue release that the released weights were trained with: a
keypoint ``p`` is mapped to ``(p − s/2 + 0.5) / (size·s − s/2 − 0.5)`` (s = 8, ``size`` the descriptor-map width or
height), rescaled to [−1, 1] and sampled bilinearly with ``align_corners=True``.

Keypoints are returned at integer pixel positions, the centre of the detected pixel (the package's convention);
GIM's own SuperPoint reports them +0.5 (corner convention) after sampling the descriptors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SuperPoint", "SuperPointOutput", "complete_features", "nms_max_pool", "pad_keypoints",
           "sample_descriptors_legacy", "select_keypoints"]

GRAY_WEIGHTS = (0.299, 0.587, 0.114)
CELL = 8


@dataclass(frozen=True)
class SuperPointOutput:
    """One image's features: ``keypoints`` ``(N, 2)`` float (x, y) at pixel centres, ``scores`` ``(N,)``,
    ``descriptors`` ``(N, 256)`` unit vectors, ``num_detected`` (keypoints before padding)."""

    keypoints: torch.Tensor
    scores: torch.Tensor
    descriptors: torch.Tensor
    num_detected: int


def nms_max_pool(scores: torch.Tensor, radius: int) -> torch.Tensor:
    """Non-maximum suppression of a ``(B, H, W)`` heat map; suppressed pixels become 0."""

    def window_max(x: torch.Tensor) -> torch.Tensor:  # pooled as (B, 1, H, W): ONNX's MaxPool needs a channel axis
        return F.max_pool2d(x[:, None], kernel_size=2 * radius + 1, stride=1, padding=radius)[:, 0]

    keep = scores == window_max(scores)
    for _ in range(2):
        blanked = window_max(keep.float()) > 0
        remaining = torch.where(blanked, torch.zeros_like(scores), scores)
        keep = keep | ((remaining == window_max(remaining)) & ~blanked)
    return torch.where(keep, scores, torch.zeros_like(scores))


def sample_descriptors_legacy(keypoints: torch.Tensor, dense: torch.Tensor, stride: int = CELL) -> torch.Tensor:
    """Descriptors ``(N, C)`` of ``dense`` ``(1, C, h, w)`` at pixel positions ``keypoints`` ``(N, 2)``.

    The original SuperGlue-release mapping (see the module docstring); unit-normalised.
    """
    import torch.onnx.operators

    channels = dense.shape[1]
    # (w, h) as a tensor read from the shape (not Python numbers), so an ONNX trace keeps it for any image size;
    # w·8 − 4 − 0.5 is exact in float32, so the values are those of the Python arithmetic
    size = torch.onnx.operators.shape_as_tensor(dense)[2:].flip(0).to(device=keypoints.device, dtype=keypoints.dtype)
    extent = size * stride - stride / 2 - 0.5
    grid = (keypoints - stride / 2 + 0.5) / extent * 2 - 1
    sampled = F.grid_sample(dense, grid.view(1, 1, -1, 2), mode="bilinear", align_corners=True)
    return F.normalize(sampled.reshape(channels, -1), p=2, dim=0).t()


def select_keypoints(heat: torch.Tensor, max_keypoints: int, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Keypoints ``(N, 2)`` (x, y) and scores ``(N,)`` of one suppressed ``(H, W)`` heat map (steps 2–3 above).

    More than ``max_keypoints`` candidates: the top-scoring ones, sorted by score; otherwise all of them in row-major
    order. Written without data-dependent Python branches (the count is a tensor and the choice between the two
    orders an element-wise ``where``), so that an ONNX trace keeps both cases; the values are those of the plain
    ``if``: the same ``topk`` call when it applies, the row-major order otherwise.
    """
    rows, cols = torch.where(heat > threshold)
    scores = heat[rows, cols]
    keypoints = torch.stack([cols, rows], -1).to(heat.dtype)
    if max_keypoints <= 0:
        return keypoints, scores
    count = (heat > threshold).sum()
    k = count.clamp(max=max_keypoints)
    top = torch.topk(scores, k, dim=0, sorted=True).indices  # type: ignore[call-overload]
    order = torch.where(count > max_keypoints, top, torch.arange(k, device=heat.device))  # type: ignore[call-overload]
    return keypoints[order], scores[order]


class SuperPoint(nn.Module):
    """SuperPoint with GIM's keypoint selection.

    Args:
        max_keypoints: keep at most this many (GIM: 2048); ``-1`` keeps all.
        detection_threshold: minimum heat-map score (GIM: 0.0, i.e. every local maximum).
        nms_radius: suppression radius in pixels (GIM: 3).
        remove_borders: discard detections this close to the border, in pixels (4).
        force_num_keypoints: pad every image to exactly ``max_keypoints`` (GIM: True).
    """

    def __init__(self, *, max_keypoints: int = 2048, detection_threshold: float = 0.0, nms_radius: int = 3,
                 remove_borders: int = 4, force_num_keypoints: bool = True) -> None:
        super().__init__()
        if force_num_keypoints and max_keypoints <= 0:
            raise ValueError("force_num_keypoints needs max_keypoints > 0")
        self.max_keypoints = max_keypoints
        self.detection_threshold = detection_threshold
        self.nms_radius = nms_radius
        self.remove_borders = remove_borders
        self.force_num_keypoints = force_num_keypoints

        def conv3(cin: int, cout: int) -> nn.Conv2d:
            return nn.Conv2d(cin, cout, 3, padding=1)

        widths = (64, 64, 128, 128)
        cin = 1
        for stage, width in enumerate(widths, start=1):
            self.add_module(f"conv{stage}a", conv3(cin, width))
            self.add_module(f"conv{stage}b", conv3(width, width))
            cin = width
        self.convPa = conv3(cin, 256)
        self.convPb = nn.Conv2d(256, CELL * CELL + 1, 1)
        self.convDa = conv3(cin, 256)
        self.convDb = nn.Conv2d(256, 256, 1)

    @staticmethod
    def to_gray(image: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` RGB → ``(B, 1, H, W)`` with ITU-R 601 weights; gray input passes through."""
        if image.shape[1] == 1:
            return image
        if image.shape[1] != 3:
            raise ValueError(f"expected 1 or 3 channels, got {image.shape[1]}")
        weights = image.new_tensor(GRAY_WEIGHTS).view(1, 3, 1, 1)
        return (image * weights).sum(1, keepdim=True)

    def dense(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Heat map ``(B, 8h, 8w)`` and unit descriptors ``(B, 256, h, w)`` of ``(B, 1|3, H, W)`` images, h = H // 8."""
        x = self.to_gray(image)
        for stage in range(1, 5):
            x = F.relu(getattr(self, f"conv{stage}a")(x))
            x = F.relu(getattr(self, f"conv{stage}b")(x))
            if stage < 4:
                x = F.max_pool2d(x, 2, 2)
        cells = self.convPb(F.relu(self.convPa(x))).softmax(1)[:, :-1]
        heat = F.pixel_shuffle(cells, CELL)[:, 0]
        descriptors = F.normalize(self.convDb(F.relu(self.convDa(x))), p=2, dim=1)
        return heat, descriptors

    def suppress(self, heat: torch.Tensor) -> torch.Tensor:
        """Non-maximum suppression and border removal of a ``(B, H, W)`` heat map (steps 1–2 above)."""
        heat = nms_max_pool(heat, self.nms_radius)
        border = self.remove_borders
        if border > 0:
            heat[:, :border] = -1
            heat[:, :, :border] = -1
            heat[:, -border:] = -1
            heat[:, :, -border:] = -1
        return heat

    def forward(self, image: torch.Tensor, generator: torch.Generator | None = None) -> list[SuperPointOutput]:
        """Detect and describe a batch ``(B, 1|3, H, W)`` in [0, 1]; one :class:`SuperPointOutput` per image."""
        heat, dense = self.dense(image)
        heat = self.suppress(heat)
        outputs = []
        for index in range(heat.shape[0]):
            keypoints, scores = select_keypoints(heat[index], self.max_keypoints, self.detection_threshold)
            outputs.append(self.complete(keypoints, scores, None, dense[index:index + 1], image.shape[-2:],
                                         generator))
        return outputs

    def complete(self, keypoints: torch.Tensor, scores: torch.Tensor, descriptors: torch.Tensor | None,
                 dense: torch.Tensor, size: torch.Size | tuple[int, int],
                 generator: torch.Generator | None) -> SuperPointOutput:
        """Pad and describe one image's keypoints with this model's settings (see :func:`complete_features`)."""
        return complete_features(keypoints, scores, descriptors, dense, size, generator,
                                 max_keypoints=self.max_keypoints, force_num_keypoints=self.force_num_keypoints)


def complete_features(keypoints: torch.Tensor, scores: torch.Tensor, descriptors: torch.Tensor | None,
                      dense: torch.Tensor, size: torch.Size | tuple[int, int], generator: torch.Generator | None, *,
                      max_keypoints: int, force_num_keypoints: bool) -> SuperPointOutput:
    """Pad to ``max_keypoints`` if asked (step 4) and describe: the output of one image.

    ``descriptors`` of the detected keypoints may be given (an exported graph computes them); the padding points
    are then described alone. Sampling and normalisation are per point, so the result is the same either way.
    """
    detected = len(keypoints)
    if force_num_keypoints and detected < max_keypoints:
        padded, scores = pad_keypoints(keypoints, scores, max_keypoints, size, generator)
        if descriptors is not None:
            extra = sample_descriptors_legacy(padded[detected:], dense)
            descriptors = torch.cat([descriptors, extra])
        keypoints = padded
    if descriptors is None:
        descriptors = sample_descriptors_legacy(keypoints, dense)
    return SuperPointOutput(keypoints, scores, descriptors, detected)


def pad_keypoints(keypoints: torch.Tensor, scores: torch.Tensor, max_keypoints: int, size: torch.Size | tuple[int, int],
                  generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad to ``max_keypoints`` with random points in the keypoints' bounding box (score 0)."""
    missing = max_keypoints - len(keypoints)
    if len(keypoints):
        low, high = keypoints.min(0).values.tolist(), keypoints.max(0).values.tolist()
    else:
        low, high = [0.0, 0.0], [float(min(size))] * 2
    columns = [torch.empty(missing, 1, dtype=keypoints.dtype).uniform_(low[axis], high[axis], generator=generator)
               for axis in range(2)]
    extra = torch.cat(columns, 1).to(keypoints.device)
    return torch.cat([keypoints, extra]), torch.cat([scores, scores.new_zeros(missing)])
