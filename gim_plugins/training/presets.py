"""Training presets: GIM's four training branches (and ALIKED+LightGlue) as data.

A preset names the matcher (its trainer), the trainer's options, the optimiser, the schedule, the batch and image
size, the data mix and the validation. ``gim train --preset NAME --set key=value`` overrides any leaf (dotted keys,
strictly checked: an unknown key is an error).

Values are GIM's (branches ``train-gim-{loftr,dkm,roma,glue}``, their ``trainer/config.py``, ``trainer/lightning.py``,
``train.py`` and the README commands), read from the code where the code and the README summary disagree:

=================  ========  ===================  ======  ========  ===============  ==========  ==========
preset             optim     lr / min_lr          wd      backbone  schedule         batch       W × H
=================  ========  ===================  ======  ========  ===============  ==========  ==========
gim_loftr          AdamW     1e-3 / 5e-5          0.1     × 0.1     warm-up + linear 64         840 × 840
gim_dkm            AdamW     8e-4 / 1e-4          0.01    × 0.05    warm-up + linear 120        896 × 672
gim_roma           AdamW     8e-4 / 1e-4          0.01    × 0.05    warm-up + linear 120        672 × 672
gim_lightglue      Adam      1e-4 (constant)      0       —         × 10^(−1/10) per  1 (no acc.) 1024 × 1024
                                                                    epoch after 30
aliked_lightglue   Adam      1e-4 (constant)      0       —         as gim_lightglue 1 (no acc.) 1024 × 1024
=================  ========  ===================  ======  ========  ===============  ==========  ==========

All: gradient clipping 0.5 (norm), seed 3407, SyncBatchNorm under multi-GPU DDP, one-epoch warm-up from 0.1 · lr
(LoFTR/DKM/RoMa), accumulation to the canonical batch (``ceil(canonical / (batch_size · world_size))``), epochs 10 /
10 / 370 / 50 / 50, data ``maxlen`` 938 240 per kind (RoMa 25 600). GIM's DKM branch sets ``CANONICAL_BS = 120`` and
``ADAMW_DECAY = 0.01`` in its code (the README summary says 64 and 0.1); the code's values are used. GIM's LightGlue
branch neither warms up nor accumulates (both are commented out in its code).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["PRESETS", "resolve_preset"]

_COMMON: dict[str, Any] = {
    "seed": 3407,
    "clip_grad_norm": 0.5,
    "sync_batchnorm": True,  # converted only under multi-GPU DDP (SyncBatchNorm needs CUDA)
    "precision": "fp32",  # or "bf16" (autocast on the device)
    "data": {
        "batch_size": 1,  # pairs per micro-batch per process
        "num_workers": 0,
        "maxlen": {},  # items per epoch per kind of data ({"walk": …, "megadepth": …}); empty: natural lengths
        "max_labels": 2048,  # label capacity of a batch row
    },
    "validation": {
        "per_epoch": 1,  # validations per epoch (GIM: 1; LightGlue: 5); --val-every sets a step interval instead
        "max_pairs": 50,  # first pairs of each ZEB subset (None: all)
        "top_k": 5,  # best checkpoints kept (GIM: save_top_k=5)
        "conf": {},  # matcher options on top of its -zeb preset (e.g. smaller sizes for a CPU run)
    },
    "checkpoint_every": 500,  # optimizer steps between RUN/last.ckpt writes (and at every validation and the end)
}

_WARMUP_LINEAR = {"kind": "warmup_linear", "warmup_epochs": 1, "warmup_ratio": 0.1}

PRESETS: dict[str, dict[str, Any]] = {
    "gim_loftr": {
        "matcher": "gim_loftr",
        "trainer": {},
        "optimizer": {"name": "adamw", "lr": 1e-3, "weight_decay": 0.1, "backbone_lr_scale": 0.1},
        "schedule": {**_WARMUP_LINEAR, "min_lr": 5e-5, "max_epochs": 10},
        "canonical_batch": 64,
        "image_size": [840, 840],  # (W, H) of the batch canvas, GIM's --img_size order
    },
    "gim_dkm": {
        "matcher": "gim_dkm",
        "trainer": {},
        "optimizer": {"name": "adamw", "lr": 8e-4, "weight_decay": 0.01, "backbone_lr_scale": 0.05},
        "schedule": {**_WARMUP_LINEAR, "min_lr": 1e-4, "max_epochs": 10},
        "canonical_batch": 120,
        "image_size": [896, 672],
    },
    "gim_roma": {
        "matcher": "gim_roma",
        "trainer": {},
        "optimizer": {"name": "adamw", "lr": 8e-4, "weight_decay": 0.01, "backbone_lr_scale": 0.05},
        "schedule": {**_WARMUP_LINEAR, "min_lr": 1e-4, "max_epochs": 370},
        "canonical_batch": 120,
        "image_size": [672, 672],
        "data": {"maxlen": {"walk": 25600, "megadepth": 25600}},
    },
    "gim_lightglue": {
        "matcher": "gim_lightglue",
        "trainer": {},
        "optimizer": {"name": "adam", "lr": 1e-4, "weight_decay": 0.0, "backbone_lr_scale": 1.0},
        "schedule": {"kind": "lightglue", "start_epoch": 30, "exp_div_10": 10, "max_epochs": 50},
        "canonical_batch": None,
        "image_size": [1024, 1024],
        "validation": {"per_epoch": 5},
    },
    "aliked_lightglue": {
        "matcher": "aliked_lightglue",
        "trainer": {},
        "init": "aliked_lightglue",  # LightGlue starts from the offline weights
        "optimizer": {"name": "adam", "lr": 1e-4, "weight_decay": 0.0, "backbone_lr_scale": 1.0},
        "schedule": {"kind": "lightglue", "start_epoch": 30, "exp_div_10": 10, "max_epochs": 50},
        "canonical_batch": None,
        "image_size": [1024, 1024],
        "validation": {"per_epoch": 5},
    },
}
"""Preset name → its settings (merged over the common ones by :func:`resolve_preset`)."""


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict) and key not in ("maxlen", "conf"):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(dict(value)) if isinstance(value, Mapping) else copy.deepcopy(value)
    return out


def _defaults(preset: Mapping[str, Any]) -> dict[str, Any]:
    return _merge({**_COMMON, "init": None, "trainer": {}}, preset)


def resolve_preset(name: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The full settings of preset ``name`` with ``overrides`` (nested or dotted keys) applied.

    ``trainer`` overrides are checked later by the trainer (its ``default_conf``); every other key must exist.

    Raises:
        KeyError: unknown preset or key (the message lists the known ones).
    """
    if name not in PRESETS:
        raise KeyError(f"unknown training preset {name!r}; known: {', '.join(PRESETS)}")
    settings = _defaults(PRESETS[name])
    for key, value in _flatten(overrides or {}):
        _set(settings, key, value)
    return settings


FREE_FORM = ("trainer", "data.maxlen", "validation.conf")
"""Subtrees whose keys are not fixed by the preset: the trainer checks its options, ``maxlen`` keys are data kinds."""


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value and dotted not in FREE_FORM:
            out += _flatten(value, dotted + ".")
        else:
            out.append((dotted, value))
    return out


def _set(settings: dict[str, Any], dotted: str, value: Any) -> None:
    parts: Sequence[str] = dotted.split(".")
    free = next((len(f.split(".")) for f in FREE_FORM if dotted == f or dotted.startswith(f + ".")), None)
    strict = len(parts) if free is None else free
    node: Any = settings
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if depth < strict and (not isinstance(node, dict) or part not in node):
            raise KeyError(_unknown(settings, parts[: depth + 1]))
        if last:
            node[part] = copy.deepcopy(dict(value)) if isinstance(value, Mapping) else copy.deepcopy(value)
            return
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise KeyError(f"training setting {'.'.join(parts[: depth + 1])!r} is a value, not a section")


def _unknown(settings: Mapping[str, Any], parts: Sequence[str]) -> str:
    node: Any = settings
    for part in parts[:-1]:
        node = node.get(part, {}) if isinstance(node, Mapping) else {}
    known = ", ".join(sorted(node)) if isinstance(node, Mapping) else "(none)"
    where = ".".join(parts[:-1]) or "the preset"
    return f"unknown training setting {'.'.join(parts)!r}; known in {where}: {known}"
