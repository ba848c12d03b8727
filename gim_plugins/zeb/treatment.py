"""ZEB's per-matcher table: how GIM's ZEB code treated each network's keypoints, and the rule for any other matcher.

Our matchers all return the same thing: pixels of the image they were given, with the centre of the top-left pixel at
(0, 0) (:mod:`gim_plugins.types`). GIM's ZEB code did not: it took each network's raw output in that network's own
convention and mapped it back to the original image in one of two ways. Reproducing GIM's numbers therefore needs,
per matcher, three facts about GIM's code — not about the matcher — which live here rather than in the models:

* **keypoint offset**: what to add to our keypoints to get the coordinates GIM's code had (0.5 for DKM, RoMa, LoFTR
  and GIM's SuperPoint/LightGlue, whose raw outputs use the corner convention; 0 for OpenCV SIFT);
* **rescale rule**: ``"scale"`` (LoFTR, LightGlue, RootSIFT: times the resize factor ``[w / w_new, h / h_new]``,
  ignoring the ETH3D/KITTI padding) or ``"canvas"`` (DKM, RoMa: normalised coordinates over the whole, possibly
  padded, input mapped to the original size, which is GIM's ≈0.5 % / ≈2 % y-scale error on ETH3D / KITTI);
* **padding mask**: whether the network got the validity masks of the zero-padded ETH3D/KITTI canvases (LoFTR).

:data:`GIM_TABLE` lists them for the registered matchers GIM evaluated. A matcher outside it (a plugin, a
``module:Class``, a subclass) is treated by what its class declares about itself (:func:`derived_treatment`):
``gim_keypoint_offset`` (its keypoints relative to the original implementation's), ``normalised_output`` (the
original reports normalised coordinates over its input, as dense warps do → ``"canvas"``) and ``accepts_masks``
(``match`` takes validity masks → it gets them). The table and the derivation agree on every registered matcher (a
test checks it), so the table pins GIM's protocol even if a model's declarations change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gim_plugins.models.base import BaseMatcher

__all__ = ["GIM_TABLE", "RESCALE_RULES", "Treatment", "derived_treatment", "gim_treatment"]

RESCALE_RULES = ("scale", "canvas")


@dataclass(frozen=True)
class Treatment:
    """What a protocol does with one matcher's keypoints.

    Attributes:
        keypoint_offset: added to the matcher's keypoints (package convention) first.
        rescale: ``"scale"`` or ``"canvas"`` to map them to the original image (GIM's protocol); ``None`` where
            they stay in the prepared image.
        padding_mask: the matcher gets ``mask0=``/``mask1=`` on zero-padded canvases.
    """

    keypoint_offset: float
    rescale: str | None
    padding_mask: bool


GIM_TABLE: dict[str, Treatment] = {
    "gim_dkm": Treatment(0.5, "canvas", False),
    "gim_roma": Treatment(0.5, "canvas", False),
    "gim_loftr": Treatment(0.5, "scale", True),
    "gim_lightglue": Treatment(0.5, "scale", False),
    "root_sift": Treatment(0.0, "scale", False),
}
"""GIM's ZEB treatment of the networks it evaluated, by registered matcher name."""


def derived_treatment(cls: type[BaseMatcher]) -> Treatment:
    """GIM's protocol for a matcher it never saw, from the facts the class declares about itself."""
    return Treatment(float(cls.gim_keypoint_offset), "canvas" if cls.normalised_output else "scale",
                     bool(cls.accepts_masks))


def gim_treatment(cls: type[BaseMatcher], rescale: str | None = None) -> Treatment:
    """The treatment of ``cls`` under GIM's protocol: :data:`GIM_TABLE` for the registered class of that name, else
    :func:`derived_treatment`; ``rescale`` overrides the rule.

    Raises:
        ValueError: ``rescale`` is not one of :data:`RESCALE_RULES`.
    """
    if rescale is not None and rescale not in RESCALE_RULES:
        raise ValueError(f"rescale must be one of {RESCALE_RULES}, got {rescale!r}")
    entry = GIM_TABLE.get(cls.name) if _is_registered(cls) else None
    treatment = entry or derived_treatment(cls)
    if rescale is not None:
        treatment = Treatment(treatment.keypoint_offset, rescale, treatment.padding_mask)
    return treatment


def _is_registered(cls: type[BaseMatcher]) -> bool:
    """Whether ``cls`` is the class the registry holds under its own name (not a subclass or a namesake)."""
    from gim_plugins.registry import get_matcher_class

    try:
        return get_matcher_class(cls.name) is cls
    except (KeyError, ImportError, TypeError):
        return False
