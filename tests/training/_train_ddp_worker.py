"""A tiny gim_lightglue run on synthetic pairs, as one process or under torchrun (the engine-equivalence test).

``python _train_ddp_worker.py RUN OUT STEPS [CHECKPOINT_EVERY]`` trains ``STEPS`` optimizer steps with a canonical
batch of 2 and saves the trainable parameters to ``OUT`` (rank 0). Alone it accumulates 2 micro-batches per step; under
``torchrun --nproc_per_node 2`` each rank takes one (gloo, DDP).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _train_synthetic import PlaneDataset, ShardedSampler, collate

from gim_plugins.training.engine import TrainData, fit, init_world
from gim_plugins.training.presets import resolve_preset
from gim_plugins.training.trainers import trainer_class


def main() -> None:
    run, out, steps = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    every = int(sys.argv[4]) if len(sys.argv) > 4 else 1000
    torch.set_num_threads(1)
    world = init_world("cpu")
    settings = resolve_preset("gim_lightglue", {
        "trainer": {"extractor_weights": None, "max_keypoints": 48, "checkpointed": False},
        "canonical_batch": 2, "checkpoint_every": every, "optimizer.lr": 1e-3})
    torch.manual_seed(0)
    trainer = trainer_class("gim_lightglue")(settings["trainer"])
    for module in trainer.extractor.modules():  # distinctive descriptors from a random SuperPoint
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight)
    data = TrainData(PlaneDataset(8, (48, 48), ("walk", "megadepth"), max_labels=48),
                     ShardedSampler(8, rank=world.rank, world_size=world.size), collate)
    try:
        fit(trainer, data, settings, run, preset="gim_lightglue", world=world, max_steps=steps, progress=False)
    finally:
        world.close()
    if world.rank == 0:
        torch.save({name: p.detach() for name, p in trainer.named_parameters() if p.requires_grad}, out)


if __name__ == "__main__":
    main()
