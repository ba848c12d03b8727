"""``GIMMatcher`` and ``GIMLocalFeature``: any registered matcher behind kornia's module contracts.

Both wrap one :class:`~gim_plugins.models.base.BaseMatcher` built by :func:`gim_plugins.load_matcher`, so every
registered name works (``gim_dkm``, ``gim_loftr``, ``gim_lightglue``, ``gim_roma``, ``aliked_lightglue``,
``root_sift``, a plugin's matcher, or a ``"package.module:Class"`` path), and each pair goes through the very code
path of ``load_matcher(...).match(image0, image1)``: the results are equal, not just close.

Contract of :meth:`GIMMatcher.forward` (kornia's ``LoFTR`` / ``LocalFeatureMatcher`` dict, decided here once):

Input ``{"image0": (B, C, H0, W0), "image1": (B, C, H1, W1)}`` plus optional keys:
    * Images: floating tensors in [0, 1] (float16, bfloat16, float32, float64), ``C`` = 1 (gray) or 3 (RGB) for
      *every* matcher: gray is replicated to RGB for RGB networks and gray-native networks convert RGB themselves,
      exactly as ``load_matcher(...).match`` does. The two images of a pair may differ in size; ``B`` must agree.
    * ``mask0`` / ``mask1``: ``(B, H, W)`` or ``(B, 1, H, W)``, kornia's convention: nonzero = valid pixel, 0 =
      padding or "ignore". Two cases, per image:

      - *Padding* (the valid pixels form a top-left rectangle, as when images of different sizes are padded into
        one batch): the image is cropped to that rectangle and matched as it is, so a padded batch gives exactly the
        matches of the unpadded pairs, for every matcher. An all-zero mask gives no matches for that pair.
      - *Any other mask* ("ignore these pixels"): the matcher sees the whole image; sparse matchers drop the
        keypoints on masked pixels after extraction, before matching (they never compete in the matcher), and for
        every matcher a match whose keypoint's nearest pixel (``round(x), round(y)``) is masked is dropped.

      Masks are never handed to a matcher's own mask support (gim_loftr's ``match(mask0=, mask1=)``): LoFTR's masks
      mean bottom/right padding, reduced to 8×8 cells, and return nothing useful for a mask of the second kind,
      while cropping handles the first kind exactly. Either way no returned keypoint lies on a masked pixel.
    * ``lafs0`` + ``descriptors0`` (and/or ``…1``), optional ``responses0``: features of that image pre-extracted
      with :class:`GIMLocalFeature` of the same matcher (as ``LocalFeatureMatcher`` accepts them); all-zero LAFs are
      padding and ignored. Sparse matchers only.
    * Any other key is an error (a misspelt ``"mask_0"`` must not be ignored silently).

Output ``{"keypoints0": (N, 2), "keypoints1": (N, 2), "confidence": (N,), "batch_indexes": (N,)}``:
    * Keypoints are ``(x, y)`` in pixels of the input images with the centre of the top-left pixel at (0, 0) (the
      package's one convention, :mod:`gim_plugins.types`; also kornia's LAF centres and ALIKED/DISK keypoints).
      ``confidence`` is the matcher's own score (certainty, dual-softmax or assignment probability).
    * float32 whatever the input dtype: float16 keypoints would be quantised to 0.5 px between 1024 and 2048 px and
      to 1 px beyond, which ruins sub-pixel matches. ``batch_indexes`` is int64. All on ``image0``'s device.
    * Pairs are processed in batch order (one ``match`` per pair) and concatenated; within a pair the rows keep the
      matcher's order. No matches is a typed empty result, never ``None``.

Precision and devices: the wrapped network computes in its own precision (float32, or the ``precision`` option of
matchers that have one); input images are converted to float32 first. ``.to(device)`` moves the network; a dtype
cast of the module (``.half()``, ``.to(torch.float16)``) is refused with an explanation, because the networks are
fed float32 images and would fail or silently mix precisions. Inputs on another device than the network are moved
per pair. The modules are inference-only: outputs carry no gradient, the wrapped networks stay in eval mode even
under ``.train()``, and calls work inside ``torch.inference_mode()`` (outputs made outside it are normal tensors).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, NoReturn

import torch
from kornia.feature import get_laf_center, laf_from_center_scale_ori, laf_is_filled
from torch import nn

from gim_plugins.models.base import BaseMatcher, WeightsArg
from gim_plugins.types import Features, MatchResult

__all__ = ["GIMLocalFeature", "GIMMatcher"]

IMAGE_KEYS = ("image0", "image1")
OPTIONAL_KEYS = ("mask0", "mask1", "lafs0", "lafs1", "descriptors0", "descriptors1", "responses0", "responses1")
OUTPUT_KEYS = ("keypoints0", "keypoints1", "confidence", "batch_indexes")


def _build_matcher(model: str | BaseMatcher | None, weights: WeightsArg, pretrained: bool,
                   conf: Mapping[str, Any]) -> BaseMatcher:
    """A matcher from a registered name (``None``: the best installed GIM matcher) or an already built instance."""
    if isinstance(model, BaseMatcher):
        if weights is not None or not pretrained or conf:
            raise ValueError("weights=, pretrained= and matcher options apply when the matcher is built by name; "
                             "an already built matcher is used as it is")
        return model
    if model is None:
        from gim_plugins.matching import default_matcher

        model, hint = default_matcher()
        if hint is not None:
            warnings.warn(hint, RuntimeWarning, stacklevel=3)
    if not isinstance(model, str):
        raise TypeError(f"model: expected a matcher name, a 'module:Class' path or a BaseMatcher, got "
                        f"{type(model).__name__}")
    from gim_plugins.matching import load_matcher

    return load_matcher(model, weights, pretrained=pretrained, **conf)


class _InferenceModule(nn.Module):
    """Shared by both modules: device moves pass through, dtype casts are refused, the network stays in eval mode."""

    matcher: BaseMatcher

    def _refuse_dtype(self, dtype: Any) -> NoReturn:
        name = self.matcher.name
        default = self.matcher.default_conf.get("precision")
        hint = (f"; for reduced precision build it with its 'precision' option (default {default!r})"
                if default is not None else "")
        raise TypeError(f"{type(self).__name__}({name!r}) keeps its network in float32 and cannot be cast to {dtype}: "
                        f"feed images of any floating dtype (they are converted per pair); outputs are float32{hint}")

    def to(self, *args: Any, **kwargs: Any) -> _InferenceModule:
        """``nn.Module.to`` for devices; a dtype other than float32 is refused (see the module docstring)."""
        _, dtype, _, _ = torch._C._nn._parse_to(*args, **kwargs)
        if dtype is not None and dtype != torch.float32:
            self._refuse_dtype(dtype)
        return super().to(*args, **kwargs)

    def half(self) -> NoReturn:
        self._refuse_dtype(torch.float16)

    def bfloat16(self) -> NoReturn:
        self._refuse_dtype(torch.bfloat16)

    def double(self) -> NoReturn:
        self._refuse_dtype(torch.float64)

    def type(self, dst_type: Any) -> _InferenceModule:
        if dst_type in (torch.float32, "torch.FloatTensor"):
            return self.float()
        self._refuse_dtype(dst_type)

    def train(self, mode: bool = True) -> _InferenceModule:
        """Sets the module's flag only: the wrapped network always stays in eval mode (inference-only module)."""
        super().train(mode)
        self.matcher.eval()
        return self

    @property
    def name(self) -> str:
        """Registered name of the wrapped matcher."""
        return self.matcher.name

    @property
    def device(self) -> torch.device:
        """Where the network runs (CPU for matchers without parameters)."""
        return self.matcher.device

    def extra_repr(self) -> str:
        return f"model={self.matcher.name!r}, weights={self.matcher.weights_id!r}"


class GIMMatcher(_InferenceModule):
    """A registered matcher with kornia's LoFTR contract (see the module docstring for the exact contract).

    Args:
        model: a registered matcher name (``gim_plugins.list_matchers()``), a ``"package.module:Class"`` path, or an
            already built matcher. ``None``: the best GIM matcher whose weights are installed, else
            ``aliked_lightglue`` with a warning saying how to install GIM weights.
        weights: a checkpoint path or weight-registry name; ``None`` for the matcher's registered checkpoint(s).
        pretrained: ``False`` builds random weights on purpose (tests, training from scratch).
        **conf: options of the matcher's ``default_conf``; unknown ones are an error listing the known ones.

    Raises:
        gim_plugins.registry.UnknownMatcherError: an unknown name (the message lists the registered ones).
        FileNotFoundError: the weights are not installed (the message says how to get them).

    Example:
        >>> import kornia.feature as KF                                      # doctest: +SKIP
        >>> matcher = KF.GIMMatcher("gim_lightglue").to("cuda")               # doctest: +SKIP
        >>> out = matcher({"image0": img0, "image1": img1})                  # doctest: +SKIP
        >>> ransac = kornia.geometry.ransac.RANSAC("fundamental", inl_th=1.0)  # doctest: +SKIP
        >>> F, inliers = ransac(out["keypoints0"], out["keypoints1"])         # doctest: +SKIP
    """

    def __init__(self, model: str | BaseMatcher | None = None, weights: WeightsArg = None, pretrained: bool = True,
                 **conf: Any) -> None:
        super().__init__()
        self.matcher = _build_matcher(model, weights, pretrained, conf)
        self.eval()

    @property
    def is_sparse(self) -> bool:
        """Whether the matcher extracts per image (then :meth:`local_feature` gives its extractor half)."""
        return self.matcher.is_sparse

    def local_feature(self) -> GIMLocalFeature:
        """The extractor half of a sparse matcher as a kornia ``LocalFeature``-style module (sharing the network).

        Raises:
            TypeError: the matcher is dense (it matches pairs jointly and has no per-image features).
        """
        return GIMLocalFeature(self.matcher)

    def forward(self, data: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Match every pair of the batch; see the module docstring for the keys, shapes and conventions.

        Raises:
            TypeError: a non-tensor or non-floating image, or not a mapping.
            ValueError: a missing or unknown key, a wrong shape, mismatched batch sizes, values outside [0, 1],
                an image smaller than the matcher accepts, or pre-extracted features given to a dense matcher.
        """
        image0, image1 = _images(data)
        masks = [_mask(data, f"mask{i}", image) for i, image in enumerate((image0, image1))]
        features = [_pre_extracted(data, i, image, self.matcher) for i, image in enumerate((image0, image1))]
        results = []
        for b in range(image0.shape[0]):
            results.append(self._match_pair(image0[b], image1[b], [m if m is None else m[b] for m in masks],
                                            [f if f is None else f[b] for f in features]))
        return _collect(results, image0.device)

    def _match_pair(self, image0: torch.Tensor, image1: torch.Tensor, masks: list[torch.Tensor | None],
                    features: list[Features | None]) -> MatchResult:
        matcher = self.matcher
        sides = [_apply_padding(image.float(), mask) for image, mask in zip((image0, image1), masks)]
        if any(image is None for image, _ in sides):  # an all-padding image: nothing to match
            return MatchResult.empty(tuple(image0.shape[-2:]), tuple(image1.shape[-2:]), matcher.name)
        images = [image for image, _ in sides]
        ignore = [mask for _, mask in sides]
        if matcher.is_sparse and any(m is not None for m in (*ignore, *features)):
            feats = []
            for image, mask, given in zip(images, ignore, features):
                if given is None:
                    found = matcher.extract(image)  # type: ignore[attr-defined]
                else:  # on a cropped image: the crop's size (LightGlue normalises with it), keypoints inside it
                    height, width = image.shape[-2:]
                    k = given.keypoints
                    inside = (k[:, 0] <= width - 0.5) & (k[:, 1] <= height - 0.5)
                    found = Features(k[inside], given.descriptors[inside], given.scores[inside], (height, width),
                                     given.extractor)
                feats.append(_select_features(found, mask))
            result = matcher.match_features(*feats)  # type: ignore[attr-defined]
        else:
            result = matcher.match(*images)
        if any(m is not None for m in ignore):
            keep = _on_valid_pixels(result.keypoints0, ignore[0]) & _on_valid_pixels(result.keypoints1, ignore[1])
            if not bool(keep.all()):
                result = result.select(keep)
        return result


class GIMLocalFeature(_InferenceModule):
    """The extractor half of a sparse matcher, with kornia's ``LocalFeature`` output.

    ``forward(img (B, C, H, W), mask=None) -> (lafs (B, N, 2, 3), responses (B, N), descriptors (B, N, D))``, all
    float32 on ``img``'s device. Each keypoint becomes a LAF with that centre, scale 1 px and orientation 0 (the
    detectors give no scale or orientation; kornia's DISK/ALIKED examples build LAFs the same way); ``responses`` are
    the detection scores. ``N`` is the largest keypoint count in the batch; the other images' extra slots are
    kornia's padding (all-zero LAF, zero response, zero descriptor; :func:`kornia.feature.laf_is_filled` is false).
    ``mask`` (``(B, 1, H, W)`` or ``(B, H, W)``, 0 = no detection) follows :class:`GIMMatcher`'s two cases: a padding
    mask (valid pixels = a top-left rectangle) crops the image before extraction (the features of the unpadded
    image), any other mask drops the keypoints on masked pixels. Images follow :class:`GIMMatcher`'s rules (gray or
    RGB, any floating dtype, in [0, 1]).

    It fits ``kornia.feature.LocalFeatureMatcher(GIMLocalFeature("aliked_lightglue"), DescriptorMatcher(...))``, and
    its outputs can be handed back to :class:`GIMMatcher` as ``lafs0``/``descriptors0`` to match with the matcher's
    own matching half (e.g. LightGlue) without extracting again.

    Args:
        model: a sparse matcher's name or an already built sparse matcher (see :class:`GIMMatcher`).
        weights: see :class:`GIMMatcher`.
        pretrained: see :class:`GIMMatcher`.
        **conf: see :class:`GIMMatcher`.

    Raises:
        TypeError: the matcher is dense.
    """

    def __init__(self, model: str | BaseMatcher | None = None, weights: WeightsArg = None, pretrained: bool = True,
                 **conf: Any) -> None:
        super().__init__()
        matcher = _build_matcher(model, weights, pretrained, conf)
        if not matcher.is_sparse:
            raise TypeError(f"{matcher.name!r} is a dense matcher: it matches image pairs jointly and has no "
                            "per-image features; use GIMMatcher")
        self.matcher = matcher
        self.eval()

    def forward(self, img: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor,
                                                                                    torch.Tensor]:
        """Detect and describe every image of the batch; see the class docstring."""
        _check_image(img, "img")
        masks = _mask({"mask": mask}, "mask", img)
        feats = []
        dim = 0
        for b in range(img.shape[0]):
            image, ignore = _apply_padding(img[b].float(), None if masks is None else masks[b])
            if image is None:  # all padding
                feats.append(None)
                continue
            extracted = self.matcher.extract(image)  # type: ignore[attr-defined]
            feats.append(_select_features(extracted, ignore))
            dim = extracted.descriptors.shape[1]
        count = max((len(f) for f in feats if f is not None), default=0)
        lafs = torch.zeros(len(feats), count, 2, 3)
        responses = torch.zeros(len(feats), count)
        descriptors = torch.zeros(len(feats), count, dim)
        for b, f in enumerate(feats):
            n = 0 if f is None else len(f)
            if f is not None and n:
                lafs[b, :n] = laf_from_center_scale_ori(f.keypoints[None])[0]
                responses[b, :n] = f.scores
                descriptors[b, :n] = f.descriptors
        return lafs.to(img.device), responses.to(img.device), descriptors.to(img.device)


# ------------------------------------------------------------------------------------------------------ helpers


def _check_image(image: Any, name: str) -> None:
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(image).__name__}")
    if image.ndim != 4 or image.shape[1] not in (1, 3):
        raise ValueError(f"{name}: expected a (B, 1, H, W) or (B, 3, H, W) tensor, got {tuple(image.shape)}")
    if not image.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point image in [0, 1], got {image.dtype}")


def _images(data: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(data, Mapping):
        raise TypeError(f"expected a dict with 'image0' and 'image1', got {type(data).__name__}")
    unknown = sorted(set(data) - set(IMAGE_KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        raise ValueError(f"unknown input keys {unknown}; accepted: {', '.join(IMAGE_KEYS + OPTIONAL_KEYS)}")
    missing = [key for key in IMAGE_KEYS if key not in data]
    if missing:
        raise ValueError(f"missing input keys {missing}: 'image0' and 'image1' are required")
    for key in IMAGE_KEYS:
        _check_image(data[key], key)
    image0, image1 = data["image0"], data["image1"]
    if image0.shape[0] != image1.shape[0]:
        raise ValueError(f"image0 and image1 must have the same batch size, got {image0.shape[0]} and "
                         f"{image1.shape[0]}")
    return image0, image1


def _mask(data: Mapping[str, Any], key: str, image: torch.Tensor) -> torch.Tensor | None:
    """``data[key]`` as a ``(B, H, W)`` bool CPU tensor (True = valid), or ``None`` when absent."""
    mask = data.get(key)
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{key}: expected a torch.Tensor, got {type(mask).__name__}")
    if mask.ndim == 4 and mask.shape[1] == 1:
        mask = mask[:, 0]
    expected = (image.shape[0], *image.shape[-2:])
    if tuple(mask.shape) != expected:
        raise ValueError(f"{key}: expected shape (B, H, W) = {expected} (or (B, 1, H, W)) like its image, got "
                         f"{tuple(data[key].shape)}")
    return mask.detach().cpu() != 0


def _pre_extracted(data: Mapping[str, Any], index: int, image: torch.Tensor,
                   matcher: BaseMatcher) -> list[Features] | None:
    """Features per batch item from ``lafs{index}``/``descriptors{index}``/``responses{index}``, or ``None``."""
    names = (f"lafs{index}", f"descriptors{index}", f"responses{index}")
    lafs, descriptors, responses = (data.get(name) for name in names)
    if lafs is None and descriptors is None:
        if responses is not None:
            raise ValueError(f"{names[2]} needs {names[0]} and {names[1]}")
        return None
    if lafs is None or descriptors is None:
        raise ValueError(f"pre-extracted features need both {names[0]} and {names[1]}")
    if not matcher.is_sparse:
        raise ValueError(f"{matcher.name!r} is a dense matcher: it cannot match pre-extracted features")
    batch = image.shape[0]
    if lafs.ndim != 4 or lafs.shape[0] != batch or lafs.shape[2:] != (2, 3):
        raise ValueError(f"{names[0]}: expected shape ({batch}, N, 2, 3), got {tuple(lafs.shape)}")
    if descriptors.ndim != 3 or descriptors.shape[:2] != lafs.shape[:2]:
        raise ValueError(f"{names[1]}: expected shape {tuple(lafs.shape[:2])} + (D,), got {tuple(descriptors.shape)}")
    if responses is not None:
        responses = responses[..., 0] if responses.ndim == 3 and responses.shape[-1] == 1 else responses
        if tuple(responses.shape) != tuple(lafs.shape[:2]):
            raise ValueError(f"{names[2]}: expected shape {tuple(lafs.shape[:2])}, got {tuple(responses.shape)}")
    filled = laf_is_filled(lafs).cpu()
    centres = get_laf_center(lafs).detach().cpu()
    size = tuple(int(v) for v in image.shape[-2:])
    out = []
    for b in range(batch):
        keep = filled[b]
        scores = responses[b].detach().cpu()[keep] if responses is not None else torch.ones(int(keep.sum()))
        out.append(Features(centres[b][keep], descriptors[b].detach().cpu()[keep], scores, size, matcher.name))
    return out


def _padding_extent(mask: torch.Tensor) -> tuple[int, int] | None:
    """``(h, w)`` when the valid pixels of ``mask`` are exactly ``[0, h) × [0, w)`` (padding), else ``None``."""
    rows, cols = mask.any(1).nonzero(), mask.any(0).nonzero()
    if len(rows) == 0:
        return 0, 0
    height, width = int(rows[-1]) + 1, int(cols[-1]) + 1
    if int(mask.sum()) == height * width and bool(mask[:height, :width].all()):
        return height, width
    return None


def _apply_padding(image: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``(image cropped to a padding mask's valid rectangle, None)``, or ``(image, mask)`` for any other mask.

    The crop keeps the top-left corner, so keypoints of the crop are keypoints of the padded image. ``(None, None)``
    for an all-zero mask.
    """
    if mask is None:
        return image, None
    extent = _padding_extent(mask)
    if extent is None:
        return image, mask
    if extent == (0, 0):
        return None, None
    height, width = extent
    return image[:, :height, :width], None


def _on_valid_pixels(points: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``(N,)`` bool: whether each ``(x, y)`` point's nearest pixel is valid in ``mask`` (all True without one)."""
    if mask is None:
        return torch.ones(len(points), dtype=torch.bool)
    height, width = mask.shape
    col = points[:, 0].round().long().clamp(0, width - 1)
    row = points[:, 1].round().long().clamp(0, height - 1)
    return mask[row, col]


def _select_features(features: Features, mask: torch.Tensor | None) -> Features:
    """The features whose keypoints lie on valid pixels of ``mask`` (unchanged without one)."""
    if mask is None:
        return features
    keep = _on_valid_pixels(features.keypoints, mask)
    if bool(keep.all()):
        return features
    return Features(features.keypoints[keep], features.descriptors[keep], features.scores[keep],
                    features.image_size, features.extractor)


def _collect(results: list[MatchResult], device: torch.device) -> dict[str, torch.Tensor]:
    """Concatenate per-pair results into kornia's output dict (float32 / int64, on ``device``)."""
    indexes = [torch.full((len(r),), b, dtype=torch.long) for b, r in enumerate(results)]
    out = {
        "keypoints0": torch.cat([r.keypoints0 for r in results] or [torch.zeros(0, 2)]),
        "keypoints1": torch.cat([r.keypoints1 for r in results] or [torch.zeros(0, 2)]),
        "confidence": torch.cat([r.confidence for r in results] or [torch.zeros(0)]),
        "batch_indexes": torch.cat(indexes or [torch.zeros(0, dtype=torch.long)]),
    }
    return {key: value.to(device) for key, value in out.items()}
