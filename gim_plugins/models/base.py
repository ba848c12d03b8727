"""Base classes of every matcher.

A matcher is a ``torch.nn.Module`` with a class-level ``default_conf`` (merged strictly: unknown keys are errors),
an ``_init(conf)`` that builds its networks, and either

* ``_match(image0, image1) -> MatchResult`` (dense matchers, :class:`BaseMatcher`), or
* ``_extract(image) -> Features`` and ``_match_features(f0, f1)`` (sparse matchers, :class:`SparseMatcher`), so that
  pipelines over many pairs extract each image once (see :mod:`gim_plugins.features`).

Images reach ``_match``/``_extract`` already normalised by :func:`gim_plugins.io.to_image_tensor`: float32
``(3, H, W)`` RGB in [0, 1] on the CPU. Keypoints leave in the package's pixel convention (:mod:`gim_plugins.types`).

Weights: ``weight_names`` lists the :data:`gim_plugins.weights.WEIGHTS` entries a matcher loads by default.
``_load_state_dicts({name: state_dict})`` remaps and loads them strictly, through
:func:`gim_plugins.models.state_dicts.load_strict` (or ``fit_state_dict`` for each file, then ``load_state_dict``,
when a matcher is built from several files): a checkpoint that does not fit raises ``CheckpointMismatchError``.
``pretrained=False`` builds random weights explicitly (tests, training from scratch); otherwise missing weights are
an error that says how to get them.

Options: next to ``default_conf`` every matcher declares ``conf_schema``, the type and range of each option
(:mod:`gim_plugins.conf`), checked when the matcher is built, so a bad value is one clear error instead of a failure
deep inside a network. Every matcher has ``max_image_pixels``: a larger image is refused before it is decoded or
converted (``match_pair(..., max_size=)`` downscales instead). The device is checked once, when the matcher is
built (:func:`check_device`).
"""

from __future__ import annotations

import logging
import os
import time
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from gim_plugins.conf import Conf, Schema, check_schema, merge_conf, to_plain
from gim_plugins.errors import InputError
from gim_plugins.io import ImageInput, to_image_tensor
from gim_plugins.types import Features, MatchResult

__all__ = ["BaseMatcher", "DeviceError", "SparseMatcher", "WeightsArg", "check_device"]

log = logging.getLogger(__name__)

WeightsArg = str | os.PathLike | Mapping[str, Any] | None
"""What ``weights=`` accepts: None (the registry's default files), a file path, a :data:`WEIGHTS` name, a state dict,
or (for matchers built from several files) a mapping ``{weight_name: path | state_dict}``."""


class DeviceError(InputError):
    """A device that does not exist or is not available to this torch build."""


def check_device(device: str | torch.device) -> torch.device:
    """The ``torch.device`` named by ``device``, checked to be usable here (call it once, before the work starts).

    Raises:
        DeviceError: an unknown device string, CUDA/MPS without support in this torch build or without a GPU, or a
            GPU index that does not exist.
    """
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise DeviceError(f"unknown device {device!r}; use cpu, cuda, cuda:N or mps") from None
    if parsed.type == "cpu":
        return parsed
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            build = "this torch build has no CUDA support" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise DeviceError(f"device {device!r} is not available: {build}; use --device cpu (or install a CUDA "
                              "build of torch on a machine with a GPU)")
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise DeviceError(f"device {device!r} does not exist: this machine has {count} CUDA GPU(s) "
                              f"(cuda:0 … cuda:{count - 1})")
        return parsed
    if parsed.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise DeviceError(f"device {device!r} is not available on this machine; use --device cpu")
        return parsed
    raise DeviceError(f"device {device!r} is not supported; use cpu, cuda, cuda:N or mps")


class BaseMatcher(nn.Module):
    """A two-image matcher. Subclasses set ``name``, ``default_conf`` and implement ``_init`` and ``_match``."""

    name: ClassVar[str] = ""
    default_conf: ClassVar[dict[str, Any]] = {}
    conf_schema: ClassVar[Schema] = {}
    """Type and range of each option of ``default_conf`` (``gim_plugins.conf.Int``, ``Float``, …), checked when the
    matcher is built; the package's matchers declare every option."""
    weight_names: ClassVar[tuple[str, ...]] = ()
    min_image_size: ClassVar[int] = 8
    is_sparse: ClassVar[bool] = False
    gim_keypoint_offset: ClassVar[float] = 0.0
    """What to add to this matcher's keypoints to get the coordinates GIM's original code reports (0.5 for DKM,
    RoMa, LoFTR and GIM's SuperPoint, which use the corner convention); dense-warp matchers subtract it from the
    original's coordinates themselves."""
    normalised_output: ClassVar[bool] = False
    """Whether the original implementation reports matches as coordinates normalised to [-1, 1] over the whole image
    it was given (a dense warp) rather than in pixels."""
    accepts_masks: ClassVar[bool] = False
    """Whether ``match`` takes validity masks ``mask0=``/``mask1=`` (``H×W`` bool, True = usable pixel)."""

    def __init__(
        self,
        conf: Mapping[str, Any] | None = None,
        *,
        weights: WeightsArg = None,
        device: str | torch.device = "cpu",
        pretrained: bool = True,
    ) -> None:
        super().__init__()
        check_schema(self.default_conf, self.conf_schema, owner=f"matcher {self.name!r}")
        self.conf: Conf = merge_conf(self.default_conf, conf, owner=f"matcher {self.name!r}", schema=self.conf_schema)
        device = check_device(device)
        self.weights_id = "none"
        self._init(self.conf)
        if weights is not None and not pretrained:
            raise InputError("pass either weights=... or pretrained=False, not both")
        if pretrained and self.weight_names:
            self.load_weights(weights)
        elif self.weight_names:
            self.weights_id = "random"
        elif weights is not None:
            raise InputError(f"matcher {self.name!r} has no weights to load; leave out --weights")
        self.to(device)
        self.eval()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, weights={self.weights_id!r}, conf={to_plain(self.conf)})"

    # ----------------------------------------------------------------------------------------------- subclass API

    @abstractmethod
    def _init(self, conf: Conf) -> None:
        """Build the networks from the merged conf (random weights)."""

    def _load_state_dicts(self, state_dicts: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
        """Remap and strictly load ``{weight_name: raw state dict}`` (every name of ``weight_names`` is present)."""
        raise NotImplementedError(f"{type(self).__name__} declares weight_names but does not load them")

    @abstractmethod
    def _match(self, image0: torch.Tensor, image1: torch.Tensor) -> MatchResult:
        """Match two float32 ``(3, H, W)`` RGB CPU images in [0, 1]; keypoints in their pixels."""

    # --------------------------------------------------------------------------------------------------- public

    @property
    def device(self) -> torch.device:
        """The device of the matcher's parameters (CPU for matchers without any)."""
        for tensor in self.parameters():
            return tensor.device
        for tensor in self.buffers():
            return tensor.device
        return torch.device("cpu")

    def load_weights(self, weights: WeightsArg = None) -> None:
        """Load weights (see :data:`WeightsArg`) strictly; errors name the missing or unexpected keys."""
        from gim_plugins import weights as registry

        sources = self._weight_sources(weights)
        state_dicts: dict[str, Mapping[str, torch.Tensor]] = {}
        ids = []
        for name, source in sources.items():
            if isinstance(source, Mapping):
                state_dicts[name] = source
                ids.append(f"{name}=<state dict>")
                continue
            path = registry.resolve_weights(name, source, verify=source is None)
            if name in registry.WEIGHTS:
                log.info("loading %s from %s (licence: %s)", name, path, registry.WEIGHTS[name].license)
            state_dicts[name] = registry.load_state_dict_file(path)
            ids.append(f"{name}={path.name}")
        self._load_state_dicts(state_dicts)
        self.weights_id = ", ".join(ids)

    def _weight_sources(self, weights: WeightsArg) -> dict[str, Any]:
        primary = self.weight_names[0]
        if weights is None:
            return dict.fromkeys(self.weight_names)
        if isinstance(weights, Mapping) and weights and set(weights) <= set(self.weight_names):
            return {name: weights.get(name) for name in self.weight_names}
        if isinstance(weights, Mapping):
            return {primary: weights, **dict.fromkeys(self.weight_names[1:])}
        from gim_plugins.weights import WEIGHTS

        text = os.fspath(weights)
        if text in WEIGHTS and not os.path.exists(text):
            if text not in self.weight_names:
                raise InputError(f"matcher {self.name!r} loads {', '.join(self.weight_names)}, not {text!r}")
            return dict.fromkeys(self.weight_names)
        return {primary: text, **dict.fromkeys(self.weight_names[1:])}

    def match(self, image0: ImageInput, image1: ImageInput) -> MatchResult:
        """Match two images.

        Args:
            image0: a path, an ``H×W×3`` uint8 RGB / ``H×W`` gray numpy array (16-bit, RGBA and float in [0, 1] are
                converted), or a tensor (``C×H×W``, ``1×C×H×W``).
            image1: the second image, any accepted form.

        Returns:
            A :class:`~gim_plugins.types.MatchResult` in pixels of the images as given, with ``timing["total"]``.
        """
        im0 = self._image_tensor(image0, "image0")
        im1 = self._image_tensor(image1, "image1")
        start = time.perf_counter()
        with torch.inference_mode():
            result = self._match(im0, im1)
        return result.with_timing(total=time.perf_counter() - start)

    @property
    def max_image_pixels(self) -> int | None:
        """The largest image (in pixels) this matcher accepts (``conf.max_image_pixels``; ``None``: no limit)."""
        return self.conf.get("max_image_pixels")

    def _image_tensor(self, image: ImageInput, name: str) -> torch.Tensor:
        """``image`` as the networks' input, refused before decoding/converting when it is too small or too large."""
        return to_image_tensor(image, name, self.min_image_size, max_pixels=self.max_image_pixels,
                               owner=f"matcher {self.name!r}")

    def forward(self, image0: ImageInput, image1: ImageInput) -> MatchResult:
        """Same as :meth:`match` (so a matcher can be called like any module)."""
        return self.match(image0, image1)

    def _result(self, k0: torch.Tensor, k1: torch.Tensor, conf: torch.Tensor, image0: torch.Tensor,
                image1: torch.Tensor) -> MatchResult:
        """Build a :class:`MatchResult` for two ``(3, H, W)`` inputs."""
        return MatchResult(k0, k1, conf, tuple(image0.shape[-2:]), tuple(image1.shape[-2:]), self.name)

    # ---------------------------------------------------------------------------- precision and batched matching

    precisions: ClassVar[Mapping[str, torch.dtype]] = {}
    """The spellings of this matcher's ``precision`` option and their compute dtypes (empty: no such option). The
    option also accepts ``"auto"``: bfloat16 where the device executes it natively, else float32
    (:mod:`gim_plugins.models.precision`)."""
    supports_batching: ClassVar[bool] = False
    """Whether :meth:`match_prepared` runs several pairs in one forward pass (dense warp matchers on a fixed
    canvas); other matchers match the pairs of a batch one after the other."""

    def compute_dtype(self) -> torch.dtype:
        """The dtype the networks compute in: the ``precision`` option resolved for the matcher's current device."""
        value = self.conf.get("precision")
        if value is None or not self.precisions:
            return torch.float32
        from gim_plugins.models.precision import resolve_precision

        return resolve_precision(value, self.device, self.precisions)

    def prepare_pair(self, image0: ImageInput, image1: ImageInput) -> Any:
        """The CPU work of one pair before the network (decoding, conversion); thread-safe, so background workers
        can run it. Its result goes to :meth:`match_prepared`."""
        return (to_image_tensor(image0, "image0", self.min_image_size),
                to_image_tensor(image1, "image1", self.min_image_size))

    def match_prepared(self, prepared: Sequence[Any]) -> list[MatchResult]:
        """Match pairs made by :meth:`prepare_pair`; one result per pair, in order (here: one pair at a time)."""
        results = []
        for im0, im1 in prepared:
            start = time.perf_counter()
            with torch.inference_mode():
                result = self._match(im0, im1)
            results.append(result.with_timing(total=time.perf_counter() - start))
        return results

    def match_batch(self, pairs: Sequence[tuple[ImageInput, ImageInput]], *, batch_size: int | None = None,
                    workers: int | None = None) -> list[MatchResult]:
        """Match many pairs: images prepared by background workers, ``batch_size`` pairs per forward pass where the
        matcher supports it (``None``: chosen from free GPU memory, 1 on the CPU). Results in the order of ``pairs``,
        each equal to :meth:`match` of that pair within float rounding. See :mod:`gim_plugins.models.batching`."""
        from gim_plugins.models.batching import iter_matches

        items = [(index, image0, image1) for index, (image0, image1) in enumerate(pairs)]
        return [result for _, result in iter_matches(self, items, batch_size=batch_size, workers=workers)]


class SparseMatcher(BaseMatcher):
    """A matcher split into a per-image extractor and a pairwise feature matcher.

    Subclasses implement ``_extract(image) -> Features`` and ``_match_features(f0, f1) -> (idx0, idx1, scores)``.
    ``extract_conf_keys`` names the conf options that change extracted features (the cache fingerprint); ``None``
    means all of them.
    """

    is_sparse: ClassVar[bool] = True
    extract_conf_keys: ClassVar[tuple[str, ...] | None] = None
    accepts_detection_mask: ClassVar[bool] = False
    """Whether ``extract`` takes ``mask=`` (``H×W`` bool, True = usable): keypoints are then detected only where the
    mask is set, the way OpenCV's detectors take a mask (subclasses implement ``_extract_masked``)."""

    @abstractmethod
    def _extract(self, image: torch.Tensor) -> Features:
        """Features of one float32 ``(3, H, W)`` RGB CPU image, keypoints in its pixels."""

    @abstractmethod
    def _match_features(self, features0: Features, features1: Features) -> tuple[torch.Tensor, torch.Tensor,
                                                                                    torch.Tensor]:
        """Indices ``(idx0, idx1)`` into the two keypoint sets and the ``(K,)`` match scores."""

    def extract(self, image: ImageInput, *, mask: Any = None) -> Features:
        """Detect and describe one image (any form :meth:`match` accepts).

        Args:
            image: the image.
            mask: optional ``H×W`` bool mask of usable pixels, for matchers with ``accepts_detection_mask``;
                others raise ``TypeError`` (multiply the image by the mask instead).
        """
        tensor = self._image_tensor(image, "image")
        if mask is None:
            with torch.inference_mode():
                return self._extract(tensor)
        if not self.accepts_detection_mask:
            raise TypeError(f"matcher {self.name!r} takes no detection mask; multiply the image by the mask instead")
        flags = torch.as_tensor(mask).detach().cpu()
        if tuple(flags.shape) != tuple(tensor.shape[-2:]):
            raise ValueError(f"mask: expected an H×W mask of the image's size {tuple(tensor.shape[-2:])}, "
                             f"got {tuple(flags.shape)}")
        with torch.inference_mode():
            return self._extract_masked(tensor, flags.bool() if flags.dtype == torch.bool else flags > 0)

    def _extract_masked(self, image: torch.Tensor, mask: torch.Tensor) -> Features:
        """Features detected where the ``(H, W)`` bool ``mask`` is set (matchers with ``accepts_detection_mask``)."""
        raise NotImplementedError(f"{type(self).__name__} declares accepts_detection_mask but does not implement it")

    def match_features(self, features0: Features, features1: Features) -> MatchResult:
        """Match two feature sets produced by :meth:`extract` (or loaded from a :class:`FeatureCache`)."""
        for label, feats in (("features0", features0), ("features1", features1)):
            if not isinstance(feats, Features):
                raise TypeError(f"{label}: expected Features, got {type(feats).__name__}")
            if feats.extractor != self.name:
                raise InputError(f"{label} were extracted by {feats.extractor!r}; matcher {self.name!r} needs its own")
        start = time.perf_counter()
        if len(features0) == 0 or len(features1) == 0:
            return MatchResult.empty(features0.image_size, features1.image_size, self.name)
        with torch.inference_mode():
            idx0, idx1, scores = self._match_features(features0, features1)
        idx0, idx1 = idx0.cpu().long(), idx1.cpu().long()
        result = MatchResult(features0.keypoints[idx0], features1.keypoints[idx1], scores.cpu(), features0.image_size,
                             features1.image_size, self.name)
        return result.with_timing(match=time.perf_counter() - start)

    def _match(self, image0: torch.Tensor, image1: torch.Tensor) -> MatchResult:
        start = time.perf_counter()
        f0, f1 = self._extract(image0), self._extract(image1)
        extracted = time.perf_counter()
        result = self.match_features(f0, f1)
        return result.with_timing(extract=extracted - start)

    def feature_fingerprint(self) -> str:
        """Identifies what :meth:`extract` computes (name, extraction options, weights): the cache's guard."""
        import json

        conf = to_plain(self.conf)
        if self.extract_conf_keys is not None:
            conf = {k: conf[k] for k in self.extract_conf_keys}
        return json.dumps({"extractor": self.name, "conf": conf, "weights": self.weights_id}, sort_keys=True)

    def _features(self, keypoints: torch.Tensor, descriptors: torch.Tensor, scores: torch.Tensor | None,
                  image: torch.Tensor) -> Features:
        """Build :class:`Features` for a ``(3, H, W)`` input."""
        if scores is None:
            scores = torch.ones(len(keypoints))
        return Features(keypoints, descriptors, scores, tuple(image.shape[-2:]), self.name)
