"""What every trainer is: one of the package's networks, GIM's losses for it, and its checkpoint layout.

A trainer is a ``torch.nn.Module`` the engine drives (and wraps in ``DistributedDataParallel``):

* ``forward(batch, generator) -> (loss, scalars)``: the mean loss of a batch in the batch format
  (:mod:`gim_plugins.training.data.batch`), and floats to log. Randomness of the loss (label subsampling, padding
  points) comes from ``generator``, which the engine seeds per micro-batch: a run resumes and shards identically.
* ``parameter_groups()``: GIM's optimiser groups, backbone first (its learning rate is scaled by the preset).
* ``matcher_state_dict()`` / ``load_matcher_weights()``: the tensors in the layout the package's matcher loads
  strictly (``load_matcher(name, weights="RUN/best.ckpt")``), and the reverse, which also accepts GIM's own Lightning
  checkpoints (their prefixes) for fine-tuning.
* ``matcher_conf()``: the matcher options that must accompany the weights (validation and users).

Each row of a batch is supervised by what it carries: video pairs (``zs``) and label-only posed pairs (COLMAP
tracks) by their labels, posed pairs with depth (``has_depth``) by the dense ground truth; rows with neither (ZEB
pairs without labels) are skipped and counted.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from gim_plugins.conf import Conf, merge_conf

__all__ = ["Trainer", "row_kinds"]


def row_kinds(batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(label_rows, dense_rows)`` bool ``(B,)``: rows supervised by labels and rows supervised by depth.

    Depth wins when a row has both (GIM supervises MegaDepth pairs densely); a row with labels and no depth (video,
    COLMAP tracks) uses its labels.
    """
    dense = batch["gt"] & batch["has_depth"]
    labels = (batch["num_labels"] > 0) & ~dense
    return labels, dense


class Trainer(nn.Module):
    """Base class: ``matcher`` (registry name), ``default_conf`` (merged strictly), ``backbone_key``."""

    matcher: ClassVar[str] = ""
    default_conf: ClassVar[dict[str, Any]] = {}
    backbone_key: ClassVar[str | None] = None
    """Substring of the backbone's parameter names (GIM: ``encode`` for LoFTR, ``encoder`` for DKM/RoMa)."""
    find_unused_parameters: ClassVar[bool] = False
    """True when some batches leave trainable parameters without gradient (DDP must then look for them)."""
    corner_offset: ClassVar[float] = 0.5
    """Added to the batch's package-convention pixels to get the network's (corner convention for GIM's networks)."""

    def __init__(self, conf: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.conf: Conf = merge_conf(self.default_conf, conf, owner=f"trainer {self.matcher!r}")

    # --------------------------------------------------------------------------------------------- to implement

    def forward(self, batch: Mapping[str, Any],  # type: ignore[override]
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def matcher_state_dict(self) -> dict[str, torch.Tensor]:
        """The trained tensors in the layout ``load_matcher(self.matcher, weights=...)`` loads strictly."""
        raise NotImplementedError

    def load_matcher_weights(self, state_dict: Mapping[str, Any]) -> None:
        """Load weights in the matcher's layout or GIM's Lightning layout (strict: everything must fit)."""
        raise NotImplementedError

    def matcher_conf(self) -> dict[str, Any]:
        """Matcher options the trained weights need (e.g. LoFTR's position-encoding variant)."""
        return {}

    def validation_weights(self) -> Any:
        """What ``load_matcher(self.matcher, weights=...)`` needs to run the current weights (validation): the
        matcher's state dict, or ``{weight_name: state_dict}`` when the matcher is built from several files."""
        return self.matcher_state_dict()

    # ------------------------------------------------------------------------------------------------- shared

    def parameter_groups(self) -> list[list[nn.Parameter]]:
        """Trainable parameters, ``[backbone, rest]`` when :attr:`backbone_key` is set, else ``[all]``."""
        named = [(name, p) for name, p in self.named_parameters() if p.requires_grad]
        if self.backbone_key is None:
            return [[p for _, p in named]]
        backbone = [p for name, p in named if self.backbone_key in name]
        rest = [p for name, p in named if self.backbone_key not in name]
        return [backbone, rest]

    backbone_file: ClassVar[str] = ""
    """The ImageNet file GIM initialises the backbone from (named in messages and docs)."""

    def backbone_module(self) -> nn.Module:
        """The CNN that ``backbone_weights`` initialises (GIM: an ImageNet-trained torchvision network)."""
        raise NotImplementedError(f"{self.matcher} has no ImageNet backbone")

    def backbone_key_map(self, key: str) -> str | None:
        """A key of torchvision's checkpoint → the key in :meth:`backbone_module` (None: not used, e.g. ``fc.*``)."""
        return key

    def init_backbone(self, source: str | os.PathLike[str]) -> None:
        """Initialise the backbone from torchvision's ImageNet checkpoint ``source`` (as GIM's branches do).

        Raises:
            FileNotFoundError: no such file; ValueError: the file does not fit the backbone (strict).
        """
        from gim_plugins import weights as registry
        from gim_plugins.models.state_dicts import load_strict

        tensors = registry.load_state_dict_file(source)
        mapped = {new: value for key, value in tensors.items() if (new := self.backbone_key_map(key)) is not None}
        load_strict(self.backbone_module(), mapped, f"{self.matcher} backbone ({self.backbone_file} expected)")

    def frozen_modules(self) -> list[nn.Module]:
        """Modules that stay in eval mode while training (frozen extractors)."""
        return []

    def train(self, mode: bool = True) -> Trainer:
        """Train mode everywhere except :meth:`frozen_modules` (always eval: their batch norms stay fixed)."""
        super().train(mode)
        for module in self.frozen_modules():
            module.eval()
        return self

    def corner(self, points: torch.Tensor) -> torch.Tensor:
        """Batch pixels → the network's pixel convention (``+`` :attr:`corner_offset`)."""
        return points + self.corner_offset
