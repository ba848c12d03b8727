"""The ONNX Runtime backend: ``load_matcher(NAME, backend="onnxruntime", onnx=DIR)``.

Each backend class subclasses the PyTorch matcher and replaces only its network calls (``_detect``/``_lightglue`` of
the sparse matchers, ``_network``/``network_size`` of GIM-LoFTR) with runs of the exported graphs. Everything around
them — image normalisation, gray conversion, squashing, SuperPoint's padding, keypoint mapping, the feature cache,
``MatchResult`` — is the PyTorch matcher's own code, so every pipeline (hloc, kornia, COLMAP, ZEB) uses an ONNX
matcher as it uses the PyTorch one.

Sessions use ONNX Runtime's CPU provider (CUDA when ``device`` is a CUDA device and the installed onnxruntime has
it), all graph optimisations, and ``torch.get_num_threads()`` intra-op threads (the cores PyTorch uses).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch

from gim_plugins.conf import Conf
from gim_plugins.errors import UserError
from gim_plugins.models.aliked_lightglue import ALIKEDLightGlue
from gim_plugins.models.gim_lightglue import GIMLightGlue
from gim_plugins.models.gim_loftr import GIMLoFTR

__all__ = ["BACKENDS", "OnnxALIKEDLightGlue", "OnnxBackendError", "OnnxGIMLightGlue", "OnnxGIMLoFTR",
           "create_session", "load_onnx_matcher"]


class OnnxBackendError(ValueError, UserError):
    """A bad request for the onnxruntime backend (no export directory, a matcher without a backend)."""


def create_session(path: str | os.PathLike[str], device: str | torch.device = "cpu", threads: int | None = None,
                   level: str = "all") -> Any:
    """An ``onnxruntime.InferenceSession`` for one graph (see the module docstring for its settings).

    ``level``: ONNX Runtime's graph optimisation level, ``"all"`` (default), ``"extended"``, ``"basic"`` or
    ``"disable"``.
    """
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise UserError("the onnxruntime backend needs the onnx extra: pip install 'gim-plugins[onnx]'") from exc
    options = ort.SessionOptions()
    level_enum = ort.GraphOptimizationLevel
    levels = {"all": level_enum.ORT_ENABLE_ALL, "extended": level_enum.ORT_ENABLE_EXTENDED,
              "basic": level_enum.ORT_ENABLE_BASIC, "disable": level_enum.ORT_DISABLE_ALL}
    options.graph_optimization_level = levels[level]
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    providers = ["CPUExecutionProvider"]
    if torch.device(device).type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise UserError(f"device {device!r}: the installed onnxruntime has no CUDA provider; install "
                            "onnxruntime-gpu or use device='cpu'")
        providers.insert(0, "CUDAExecutionProvider")
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        raise UserError(f"onnxruntime cannot load {path}: {str(exc).splitlines()[0]}; export again with this "
                        "onnxruntime installed (gim export onnx … --overwrite)") from exc


class _OnnxBackend:
    """Shared state of the backend classes: the manifest, one session per graph, and running them."""

    backend: ClassVar[str] = "onnxruntime"
    runtime_keys: ClassVar[tuple[str, ...]] = ()
    """Options applied outside the graphs, which may differ from the exported conf."""
    onnx_dir: Path
    manifest: dict[str, Any]
    _sessions: dict[str, Any]

    def _attach(self, directory: Path, manifest: dict[str, Any], device: str | torch.device) -> None:
        self.onnx_dir = directory
        self.manifest = manifest
        self._sessions = {role: create_session(directory / graph["file"], device)
                          for role, graph in manifest["graphs"].items()}
        self.weights_id = f"onnx:{manifest['weights']['state_sha256'][:16]}"

    @property
    def graph_size(self) -> tuple[int, int] | None:
        """``(h, w)`` of the fixed-size image inputs, ``None`` when they are dynamic."""
        size = self.manifest.get("image_size")
        return (int(size[0]), int(size[1])) if size else None

    def _run(self, role: str, feeds: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        arrays = {name: tensor.detach().cpu().contiguous().numpy() for name, tensor in feeds.items()}
        return [torch.from_numpy(out) for out in self._sessions[role].run(None, arrays)]

    def _init(self, conf: Conf) -> None:  # no PyTorch networks: the graphs hold them
        return None


def _resized(image: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, tuple[float, float]]:
    """``(1, C, H, W)`` → the graph's ``(h, w)`` (bilinear, antialiased) and the ``(W/w, H/h)`` factors."""
    import torch.nn.functional as F

    height, width = image.shape[-2:]
    if (height, width) == size:
        return image, (1.0, 1.0)
    resized = F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=True)
    return resized, (width / size[1], height / size[0])


class OnnxGIMLightGlue(_OnnxBackend, GIMLightGlue):  # type: ignore[misc]
    """gim_lightglue with the SuperPoint and LightGlue graphs (all LightGlue layers)."""

    runtime_keys: ClassVar[tuple[str, ...]] = ("padding_seed", "force_num_keypoints", "flash")

    def processed_size(self, image_size: tuple[int, int]) -> tuple[int, int]:  # type: ignore[override]
        """The graph's fixed size, or GIM's squash to multiples of 8 when the graph's height and width are dynamic."""
        return self.graph_size or GIMLightGlue.processed_size(image_size)

    def _detect(self, gray: torch.Tensor, generator: torch.Generator) -> Any:
        from gim_plugins.models._arch.superpoint import complete_features

        keypoints, scores, descriptors, dense = self._run("extractor", {"image": gray})
        return complete_features(keypoints, scores, descriptors, dense, gray.shape[-2:], generator,
                                 max_keypoints=self.conf.max_keypoints,
                                 force_num_keypoints=self.conf.force_num_keypoints)

    def _lightglue(self, side0: dict[str, torch.Tensor], side1: dict[str, torch.Tensor]) -> tuple[torch.Tensor,
                                                                                                   torch.Tensor]:
        return _run_lightglue(self, side0, side1)


class OnnxALIKEDLightGlue(_OnnxBackend, ALIKEDLightGlue):  # type: ignore[misc]
    """aliked_lightglue with the ALIKED and LightGlue graphs (all LightGlue layers)."""

    runtime_keys: ClassVar[tuple[str, ...]] = ("flash",)

    def _detect(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        from gim_plugins.io import scale_keypoints

        size = self.graph_size
        image, scale = _resized(batch, size) if size else (batch, (1.0, 1.0))
        keypoints, descriptors, scores = self._run("extractor", {"image": image})
        if scale != (1.0, 1.0):
            keypoints = scale_keypoints(keypoints, scale)
        return keypoints, descriptors, scores

    def _lightglue(self, side0: dict[str, torch.Tensor], side1: dict[str, torch.Tensor]) -> tuple[torch.Tensor,
                                                                                                   torch.Tensor]:
        return _run_lightglue(self, side0, side1)


def _run_lightglue(backend: _OnnxBackend, side0: dict[str, torch.Tensor],
                   side1: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    matches, scores = backend._run("matcher", {
        "keypoints0": side0["keypoints"].float(), "keypoints1": side1["keypoints"].float(),
        "descriptors0": side0["descriptors"].float(), "descriptors1": side1["descriptors"].float(),
        "image_size0": side0["image_size"].long(), "image_size1": side1["image_size"].long()})
    return matches, scores


class OnnxGIMLoFTR(_OnnxBackend, GIMLoFTR):  # type: ignore[misc]
    """gim_loftr with its one fixed-size graph: every image is squashed to the graph's input size."""

    runtime_keys: ClassVar[tuple[str, ...]] = ("max_side", "oversize", "fast_backbone")

    def network_size(self, height: int, width: int, name: str = "image") -> tuple[int, int]:
        size = self.graph_size
        assert size is not None  # GIM-LoFTR is always exported at a fixed size
        return size

    def _network(self, color0: torch.Tensor, color1: torch.Tensor, mask0: torch.Tensor | None,
                 mask1: torch.Tensor | None) -> dict[str, torch.Tensor]:
        h, w = color0.shape[-2:]
        ones = torch.ones(1, h // 8, w // 8, dtype=torch.bool)
        k0, k1, confidence = self._run("network", {
            "image0": color0, "image1": color1,
            "mask0": ones if mask0 is None else mask0.bool(), "mask1": ones if mask1 is None else mask1.bool()})
        return {"keypoints0": k0, "keypoints1": k1, "confidence": confidence}


BACKENDS: dict[str, type[_OnnxBackend]] = {
    "gim_lightglue": OnnxGIMLightGlue,
    "aliked_lightglue": OnnxALIKEDLightGlue,
    "gim_loftr": OnnxGIMLoFTR,
}


def load_onnx_matcher(name: str, onnx: str | os.PathLike[str] | None, device: str | torch.device = "cpu",
                      **conf: Any) -> Any:
    """Build matcher ``name`` on the graphs that ``gim export onnx`` wrote to ``onnx``.

    Options in ``conf`` must equal the exported ones except those applied outside the graphs (``runtime_keys``):
    the graphs bake thresholds and sizes in.

    Raises:
        ManifestError: no export there, another matcher's, another manifest version, or changed graph files.
        OnnxBackendError: no ``onnx`` directory given, or a matcher without an onnxruntime backend.
        ConfError: an option that differs from the export.
        UserError: onnxruntime is not installed, or cannot load a graph.
    """
    from gim_plugins.conf import ConfError
    from gim_plugins.export.manifest import read_manifest

    if onnx is None:
        raise OnnxBackendError("backend='onnxruntime' needs onnx=DIR, a directory written by gim export onnx")
    if name not in BACKENDS:
        raise OnnxBackendError(f"{name!r} has no onnxruntime backend; available: {', '.join(sorted(BACKENDS))}")
    directory = Path(onnx)
    manifest = read_manifest(directory, name)
    cls = BACKENDS[name]
    exported = manifest["conf"]
    for key, value in conf.items():
        if key in exported and key not in cls.runtime_keys and value != exported[key]:
            raise ConfError(f"{name}: option {key}={value!r} differs from the exported graphs' {key}="
                            f"{exported[key]!r}; export again with --conf {key}={value}")
    matcher = cls({**exported, **conf}, pretrained=False, device="cpu")  # type: ignore[call-arg]
    matcher._attach(directory, manifest, device)
    return matcher
