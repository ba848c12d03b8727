"""Batched dense matching inside hloc's ``match_dense``: B pairs of a fixed-canvas matcher per forward pass.

Why: hloc's ``match_dense`` hands its model one pair at a time (its ``DataLoader`` has ``batch_size=1`` written in),
while gim_dkm and gim_roma resize every pair to one fixed canvas, so on a GPU B pairs share one forward pass for much
less than B times the cost of one (:mod:`gim_plugins.models.batching`). No hloc option reaches that loop, so this
adapter declares a wrapper of ``hloc.match_dense.match_dense`` (entry-point group ``hloc.match_dense.wrappers``,
applied by :mod:`gim_plugins._host_hooks` for ``import`` and ``python -m`` alike).

When it takes over: the conf's model is a ``gim_plugins`` dense model (``gim_dkm``, ``gim_roma``,
``gim_plugins_dense`` running a batching matcher) and the batch is not one pair — ``conf["model"]["batch_size"]``
given and above 1, or left at ``None`` (automatic) on CUDA, where the size comes from free GPU memory. Everything
else — other models, gim_loftr, the CPU without a ``batch_size`` — runs hloc's own function unchanged.

What it keeps of hloc: the pairs are read and resized by hloc's own ``ImagePairDataset`` (same preprocessing, same
scales), a pair whose image0 is an existing reference is flipped as hloc flips it, keypoints go back to the original
images with hloc's ``(k + 0.5)·s − 0.5`` and are written with hloc's ``names_to_pair`` into the same groups and
datasets (``keypoints0``, ``keypoints1``, ``scores``) — so the rest of ``match_dense`` (quantisation, assignment)
cannot tell the two loops apart, and the outputs equal the pair-by-pair ones within float rounding (test).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["takes_over", "wrap_match_dense"]


def wrap_match_dense(original: Callable[..., Any]) -> Callable[..., Any]:
    """The replacement of hloc's ``match_dense(conf, pairs, image_dir, match_path, existing_refs=[])``."""

    @functools.wraps(original)
    def match_dense(conf: dict, pairs: list, image_dir: Any, match_path: Any, existing_refs: Any = ()) -> None:
        host = inspect.unwrap(original).__globals__  # hloc's module namespace (its function is decorated)
        model_class = host["dynamic_load"](host["matchers"], conf["model"]["name"])
        device = "cuda" if host["torch"].cuda.is_available() else "cpu"  # hloc's own choice of device
        if not takes_over(model_class, conf["model"], device):
            return original(conf, pairs, image_dir, match_path, existing_refs)
        return _match_batched(host, model_class, conf, pairs, image_dir, match_path, existing_refs or (), device)

    return match_dense


def takes_over(model_class: type, model_conf: dict, device: str) -> bool:
    """Whether the batched loop runs for this model (see the module docstring); ``False`` leaves hloc's loop."""
    from gim_plugins.hloc_ext.matchers import DenseMatcher
    from gim_plugins.registry import get_matcher_class

    if not (isinstance(model_class, type) and issubclass(model_class, DenseMatcher)):
        return False
    name = model_conf.get("matcher") or model_class.matcher_name
    try:
        batching = bool(name) and get_matcher_class(name).supports_batching
    except Exception:  # an unknown matcher: hloc's loop builds the model and reports it
        return False
    batch_size = model_conf.get("batch_size")
    return batching and (batch_size not in (None, 1) or (batch_size is None and device.startswith("cuda")))


def _match_batched(host: dict, model_class: type, conf: dict, pairs: list, image_dir: Any, match_path: Any,
                   existing_refs: Any, device: str) -> None:
    import h5py
    import torch

    from gim_plugins.models.batching import default_workers, iter_matches

    model = model_class(conf["model"]).eval().to(device)
    dataset = host["ImagePairDataset"](image_dir, conf["preprocessing"], pairs)
    loader = torch.utils.data.DataLoader(dataset, num_workers=default_workers(), batch_size=1, shuffle=False)
    references = set(existing_refs)

    def items() -> Iterator[tuple[tuple, torch.Tensor, torch.Tensor]]:
        for image0, image1, scale0, scale1, (name0,), (name1,) in loader:
            flip = name0 in references  # hloc refines the query's keypoints: it feeds (image1, image0) then
            key = (name0, name1, scale0[0].numpy(), scale1[0].numpy(), flip)
            yield key, *model.inputs(*((image1, image0) if flip else (image0, image1)))

    scale_keypoints, names_to_pair = host["scale_keypoints"], host["names_to_pair"]
    host["logger"].info("Performing dense matching, %s pairs per forward pass...",
                        conf["model"].get("batch_size") or "automatic")
    with torch.no_grad(), h5py.File(str(match_path), "a") as fd:
        for (name0, name1, scale0, scale1, flip), result in iter_matches(
                model.net, items(), batch_size=conf["model"].get("batch_size")):
            pred = model.outputs(result)
            if flip:
                pred = {**pred, "keypoints0": pred["keypoints1"], "keypoints1": pred["keypoints0"]}
            kpts0 = scale_keypoints(pred["keypoints0"] + 0.5, scale0) - 0.5
            kpts1 = scale_keypoints(pred["keypoints1"] + 0.5, scale1) - 0.5
            pair = names_to_pair(name0, name1)
            if pair in fd:
                del fd[pair]
            group = fd.create_group(pair)
            group.create_dataset("keypoints0", data=kpts0.cpu().numpy())
            group.create_dataset("keypoints1", data=kpts1.cpu().numpy())
            group.create_dataset("scores", data=pred["scores"].cpu().numpy())
