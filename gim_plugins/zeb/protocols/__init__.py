"""ZEB evaluation protocols: one object per protocol, handed to the runner, the report and the identifier check.

ZEB's data (:mod:`gim_plugins.zeb.dataset`) can be evaluated in more than one way, and the ways give different
numbers on the same pairs. A :class:`Protocol` holds everything that differs between them, so that no other module
asks which protocol it is running:

* pair selection (which pairs of a subset, in which order);
* image loading and resizing, and the matching camera intrinsics;
* what the matcher's keypoints are turned into before pose estimation (its :class:`~gim_plugins.zeb.treatment.
  Treatment` under this protocol);
* the RANSAC threshold and which focal lengths normalise it;
* AUC rounding and the report's grouping (its own tables, a pooled summary);
* the version-token suffix that names its dumps and stores (so results of two protocols never mix);
* what it adds to the run fingerprint.

Protocols are looked up by name (``--protocol``): ``gim`` (:mod:`.gim`, the default: GIM's own protocol) and
``gluefactory`` (:mod:`.gluefactory`: cvg/glue-factory's). The registry imports a protocol's module only when it is
asked for, so this module stays importable without numpy (the CLI lists :data:`NAMES`).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from functools import cache
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import numpy as np

    from gim_plugins.models.base import BaseMatcher
    from gim_plugins.zeb.dataset import Pair, Subset, ZebImage
    from gim_plugins.zeb.treatment import Treatment

__all__ = ["DEFAULT", "NAMES", "Protocol", "all_protocols", "for_version", "get_protocol"]

_MODULES = {"gim": "gim_plugins.zeb.protocols.gim", "gluefactory": "gim_plugins.zeb.protocols.gluefactory"}
"""Protocol name → the module whose ``PROTOCOL`` is its instance, in report order (GIM's first)."""

NAMES: tuple[str, ...] = tuple(_MODULES)
DEFAULT = "gim"


class Protocol(ABC):
    """How one ZEB protocol selects, prepares, evaluates, names and reports pairs.

    Attributes:
        name: the ``--protocol`` value and the ``"protocol"`` entry of the run fingerprint.
        version_suffix: appended to the dump files' version token (``""`` for GIM's protocol, whose dumps are GIM's
            own format; another protocol's suffix keeps its results apart in every file name and store).
        ransac_threshold: RANSAC threshold in pixels of the keypoints' frame.
        focal_rule: which focal lengths normalise the threshold (:func:`gim_plugins.zeb.metrics.estimate_pose`).
        auc_decimals: rounding of every AUC (``None``: none).
        pooled_summary: the report adds the AUC pooled over all pairs of all subsets ("All pairs").
        report_note: the paragraph above this protocol's tables in the Markdown report (``""``: none).
    """

    name: ClassVar[str]
    version_suffix: ClassVar[str] = ""
    ransac_threshold: ClassVar[float]
    focal_rule: ClassVar[str]
    auc_decimals: ClassVar[int | None] = None
    pooled_summary: ClassVar[bool] = False
    report_note: ClassVar[str] = ""

    # ---------------------------------------------------------------------------------------------- the run

    @abstractmethod
    def check_options(self, rescale: str | None) -> None:
        """Refuse run options this protocol does not accept (``--rescale``).

        Raises:
            ValueError: the option does not apply, or has a bad value.
        """

    @abstractmethod
    def treatment(self, cls: type[BaseMatcher], rescale: str | None) -> Treatment:
        """How this protocol turns the keypoints of matcher class ``cls`` into pose-estimation input (``rescale``:
        the user's override of the mapping rule, already checked by :meth:`check_options`)."""

    @abstractmethod
    def select_pairs(self, pairs: Sequence[Pair], data_dir: Path, subset: Subset, max_pairs: int | None) -> list[Pair]:
        """The pairs of one subset to evaluate, in order (``pairs``: all of them, in GIM's order)."""

    @abstractmethod
    def load_image(self, path: str | os.PathLike[str], subset: Subset) -> ZebImage:
        """Read an image file and prepare it as the matcher gets it."""

    @abstractmethod
    def keypoints(self, keypoints: np.ndarray, image: ZebImage, treatment: Treatment) -> np.ndarray:
        """``(N, 2)`` matcher keypoints (package convention, pixels of the prepared image) → float32 keypoints in the
        frame of :meth:`camera`'s intrinsics."""

    def camera(self, K: np.ndarray, image: ZebImage) -> np.ndarray:
        """The ``(3, 3)`` intrinsics that go with :meth:`keypoints` (default: the pair file's, unchanged)."""
        return K

    def fingerprint(self, treatment: Treatment) -> dict[str, Any]:
        """This protocol's part of the run fingerprint: its name and the keypoint treatment."""
        return {"protocol": self.name, "keypoint_offset": treatment.keypoint_offset, "rescale": treatment.rescale,
                "padding_mask": treatment.padding_mask}

    def software_versions(self) -> dict[str, str]:
        """Versions of the packages this protocol adds to the run (e.g. the resizing library)."""
        return {}

    # ------------------------------------------------------------------------------------------------ names

    def versioned(self, version: str) -> str:
        """``version`` with this protocol's suffix (unchanged when it already ends with it).

        Raises:
            ValueError: ``version`` ends with another protocol's suffix.
        """
        owner = for_version(version)
        if owner is not self and owner.version_suffix:
            raise ValueError(f"the version suffix {owner.version_suffix!r} is reserved for --protocol {owner.name}")
        return version if version.endswith(self.version_suffix) else version + self.version_suffix

    def label(self, scene: str) -> str:
        """How ``check`` names a subset of this protocol (GIM's: the scene alone)."""
        return scene if not self.version_suffix else f"{scene} ({self.name})"

    def __repr__(self) -> str:
        return f"<ZEB protocol {self.name!r}>"


def get_protocol(name: str) -> Protocol:
    """The protocol called ``name``.

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    if name not in _MODULES:
        raise ValueError(f"protocol must be one of {NAMES}, got {name!r}")
    return _load(name)


@cache
def _load(name: str) -> Protocol:
    return import_module(_MODULES[name]).PROTOCOL


def all_protocols() -> list[Protocol]:
    """Every protocol, in report order."""
    return [get_protocol(name) for name in NAMES]


def for_version(version: str) -> Protocol:
    """The protocol whose dumps carry this version token: the one whose (non-empty) suffix it ends with, else GIM's."""
    for protocol in all_protocols():
        if protocol.version_suffix and version.endswith(protocol.version_suffix):
            return protocol
    return get_protocol(DEFAULT)
