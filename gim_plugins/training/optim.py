"""GIM's optimisers and learning-rate schedules (``trainer/optimizer.py`` and ``learning_rate_step`` of its branches).

* ``warmup_linear`` (LoFTR, DKM, RoMa; set before every optimizer step from the step count ``s``): with ``E`` steps
  per epoch and ``T = E · max_epochs`` in all, the first ``warmup_epochs · E`` steps rise linearly from
  ``warmup_ratio · lr`` to ``lr``; then the rate falls linearly to ``min_lr`` at ``T``
  (``lr(s) = (T − s)/T · (b − min_lr) + min_lr`` with ``b`` chosen so the two pieces meet).
* ``lightglue`` (glue-factory's ``exp`` schedule through ``MultiplicativeLR``, stepped per epoch): ``lr`` until epoch
  ``start_epoch − 1``, then ``× 10^(−1/exp_div_10)`` each epoch: ``lr · 10^(−max(0, e − start + 1)/exp_div_10)``.

The first parameter group (the backbone, when the trainer has one) gets ``lr · backbone_lr_scale``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

__all__ = ["build_optimizer", "learning_rate", "set_learning_rate"]

OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("warmup_linear", "lightglue")


def build_optimizer(groups: Sequence[Sequence[torch.nn.Parameter]],
                    settings: Mapping[str, Any]) -> torch.optim.Optimizer:
    """GIM's optimiser over parameter groups (empty groups are kept so group 0 is always the backbone's slot).

    Raises:
        ValueError: unknown optimiser name.
    """
    name = str(settings["name"]).lower()
    params = [{"params": list(group)} for group in groups]
    if name == "adamw":
        return torch.optim.AdamW(params, lr=float(settings["lr"]), weight_decay=float(settings["weight_decay"]))
    if name == "adam":
        return torch.optim.Adam(params, lr=float(settings["lr"]), weight_decay=float(settings["weight_decay"]))
    raise ValueError(f"optimizer.name must be one of {OPTIMIZERS}, got {settings['name']!r}")


def learning_rate(schedule: Mapping[str, Any], lr: float, step: int, epoch: int, steps_per_epoch: int) -> float:
    """The base learning rate at optimizer step ``step`` (0-based) of epoch ``epoch`` (0-based).

    Raises:
        ValueError: unknown schedule kind.
    """
    kind = schedule["kind"]
    if kind == "warmup_linear":
        min_lr = float(schedule["min_lr"])
        total = max(1, steps_per_epoch * int(schedule["max_epochs"]))
        warmup = round(float(schedule["warmup_epochs"]) * steps_per_epoch)
        if step < warmup:
            start = float(schedule["warmup_ratio"]) * lr
            return start + step / warmup * abs(lr - start)
        if total <= warmup:
            return lr
        base = total / (total - warmup) * (lr - min_lr) + min_lr
        return max(min_lr, (total - step) / total * (base - min_lr) + min_lr)
    if kind == "lightglue":
        decays = max(0, epoch - int(schedule["start_epoch"]) + 1)
        return lr * 10 ** (-decays / float(schedule["exp_div_10"]))
    raise ValueError(f"schedule.kind must be one of {SCHEDULES}, got {kind!r}")


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float, backbone_scale: float,
                      has_backbone: bool) -> None:
    """Write ``lr`` into every group (group 0 scaled by ``backbone_scale`` when it is the backbone)."""
    for index, group in enumerate(optimizer.param_groups):
        group["lr"] = lr * backbone_scale if has_backbone and index == 0 else lr


def accumulation(canonical_batch: int | None, batch_size: int, world_size: int) -> int:
    """GIM's ``accumulate_grad_batches = ceil(CANONICAL_BS / (gpus · batch_size · nodes))`` (1 without a canonical
    batch)."""
    if not canonical_batch:
        return 1
    return max(1, math.ceil(int(canonical_batch) / (batch_size * world_size)))
