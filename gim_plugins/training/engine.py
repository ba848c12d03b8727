"""The training loop on plain PyTorch: one process (CPU or GPU) up to multi-node ``torchrun``.

:func:`fit` runs a :class:`~gim_plugins.training.trainers.base.Trainer` over :class:`TrainData` with GIM's recipe
(settings from :mod:`gim_plugins.training.presets`):

* data parallelism: under ``torchrun`` (``WORLD_SIZE > 1``) every process holds a ``DistributedDataParallel`` copy
  (NCCL on GPUs, gloo on CPUs), the sampler gives each rank a disjoint shard, and batch norms become
  ``SyncBatchNorm`` on multi-GPU runs (``sync_batchnorm``; CUDA only — on CPU each process keeps its own statistics);
* gradient accumulation to the canonical batch (``ceil(canonical / (batch_size · world_size))`` micro-batches per
  optimizer step; gradients are not all-reduced on the accumulating micro-batches: ``no_sync``); the last
  micro-batches of an epoch form a shorter group, as in Lightning;
* GIM's schedule set before every optimizer step (:mod:`gim_plugins.training.optim`), gradient clipping (norm 0.5),
  optional bf16 autocast;
* ``RUN/last.ckpt`` every ``checkpoint_every`` steps, at every validation and at the end; validation every N steps
  on ZEB-format pairs with the best ``top_k`` kept by AUC@5 (``RUN/best.ckpt``); ``RUN/metrics.csv`` and TensorBoard.

Determinism and resumption: the sampler's order is a function of ``(seed, epoch)`` and every item of ``(index,
epoch)``; each micro-batch's loss draws its randomness from a generator seeded by ``(seed, epoch, global position of
its first item)``, which is the same whether the item is processed by rank ``r`` of ``n`` or by a single process
accumulating ``n`` micro-batches. A run started again with the same ``--out`` continues from ``RUN/last.ckpt``
(written only at optimizer-step boundaries): weights, optimizer, step, epoch, position in the epoch (the consumed
micro-batches are skipped without loading them) and RNG states; its loss sequence is the uninterrupted run's.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gim_plugins.errors import UserError
from gim_plugins.training.checkpoints import (
    BestCheckpoints,
    TrainState,
    load_checkpoint,
    load_weights_into,
    save_checkpoint,
    set_rng_state,
)
from gim_plugins.training.logging_utils import RunLog
from gim_plugins.training.optim import accumulation, build_optimizer, learning_rate, set_learning_rate

__all__ = ["RunSettingsError", "TrainData", "World", "fit", "init_world", "micro_batch_seed"]

log = logging.getLogger(__name__)

SETTINGS_FILE = "train.json"
VOLATILE_KEYS = ("checkpoint_every", "validation", "data.num_workers")
"""Settings a resumed run may change (they do not change the loss sequence)."""


class RunSettingsError(ValueError, UserError):
    """``RUN`` holds a run with other settings (resuming would mix two runs)."""


@dataclass
class World:
    """This process's place in the run: ``rank`` of ``size``, its ``device``; ``distributed`` under torchrun."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    distributed: bool = False

    def barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier()

    def mean(self, value: float) -> float:
        """The mean of ``value`` over the ranks."""
        if not self.distributed:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(tensor)
        return float(tensor.item()) / self.size

    def close(self) -> None:
        if self.distributed and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def init_world(device: str = "cpu") -> World:
    """Join the torchrun job when there is one (NCCL on CUDA, gloo otherwise) and pick this process's device.

    ``cuda`` under torchrun means ``cuda:LOCAL_RANK``.

    Raises:
        UserError: a CUDA device is asked for and none is available.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    name = device
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise _UserError(f"--device {device}: CUDA is not available here; use --device cpu")
        if name == "cuda":
            name = f"cuda:{local if size > 1 else 0}"
        torch.cuda.set_device(torch.device(name))
    elif name != "cpu":
        raise _UserError(f"--device {device}: expected cpu, cuda or cuda:N")
    world = World(rank, size, local, torch.device(name), size > 1)
    if world.distributed and not torch.distributed.is_initialized():
        backend = "nccl" if world.device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend, timeout=datetime.timedelta(hours=2))
    return world


class _UserError(ValueError, UserError):
    pass


@dataclass
class TrainData:
    """What the engine reads: ``dataset[key]`` samples, a ``sampler`` of keys (``set_epoch``, this rank's shard,
    deterministic per epoch), ``collate`` into the batch format, and ``finish`` (device-side pending augmentation,
    applied after moving a batch to the device; None: nothing pending)."""

    dataset: Any
    sampler: Any
    collate: Callable[[list[Any]], dict[str, Any]]
    finish: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    num_workers: int = 0


def micro_batch_seed(seed: int, epoch: int, first_item: int) -> int:
    """Seed of the loss-side generator of the micro-batch whose first item is ``first_item`` of the epoch's global
    order (the same item on any rank layout)."""
    return int(np.random.SeedSequence([int(seed), int(epoch), int(first_item)]).generate_state(1)[0])


def _settings_guard(run_dir: Path, preset: str, settings: Mapping[str, Any]) -> None:
    path = run_dir / SETTINGS_FILE
    record = {"preset": preset, "settings": settings}
    if path.is_file():
        old = json.loads(path.read_text())
        if _stable(old) != _stable(record):
            raise RunSettingsError(f"{run_dir} holds a run with other settings ({path}); use another --out, or the "
                                   "same preset and --set options to resume it")
    from gim_plugins.atomic import atomic_write_text

    atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True, default=str) + "\n")


def _stable(record: Mapping[str, Any]) -> Any:
    settings = json.loads(json.dumps(record.get("settings", {}), default=str))
    for dotted in VOLATILE_KEYS:
        node = settings
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = node.get(part, {})
        node.pop(parts[-1], None)
    return [record.get("preset"), settings]


def _to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


class _Loop:
    """One run's mutable pieces (kept together so :func:`fit` stays readable)."""

    def __init__(self, trainer: nn.Module, data: TrainData, settings: Mapping[str, Any], run_dir: Path,
                 preset: str, world: World) -> None:
        self.trainer, self.data, self.settings, self.run_dir, self.preset, self.world = (
            trainer, data, settings, run_dir, preset, world)
        self.batch_size = int(settings["data"]["batch_size"])
        self.accumulate = accumulation(settings.get("canonical_batch"), self.batch_size, world.size)
        micro = math.ceil(len(data.sampler) / self.batch_size)
        if micro == 0:
            raise _UserError("the training data has no pairs for this process (empty dataset or more ranks than "
                             "pairs)")
        self.steps_per_epoch = math.ceil(micro / self.accumulate)
        self.state = TrainState()
        self.optimizer = build_optimizer(trainer.parameter_groups(), settings["optimizer"])
        self.model: nn.Module = trainer
        self.has_backbone = trainer.backbone_key is not None

    def wrap(self) -> None:
        world, trainer = self.world, self.trainer
        if world.distributed:
            device_ids = [world.device.index] if world.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(
                trainer, device_ids=device_ids, find_unused_parameters=trainer.find_unused_parameters)

    def batches(self, epoch: int, start: int) -> Iterator[tuple[int, dict[str, Any]]]:
        """``(micro-batch index, batch)`` of ``epoch`` from micro-batch ``start`` on (earlier ones are not loaded)."""
        data = self.data
        for holder in (data.sampler, data.dataset):
            if hasattr(holder, "set_epoch"):
                holder.set_epoch(epoch)
        keys = list(iter(data.sampler))
        chunks = [keys[i : i + self.batch_size] for i in range(0, len(keys), self.batch_size)]
        loader = torch.utils.data.DataLoader(
            data.dataset, batch_sampler=chunks[start:], collate_fn=data.collate, num_workers=data.num_workers,
            pin_memory=self.world.device.type == "cuda",
            generator=torch.Generator().manual_seed(int(self.settings["seed"])))
        yield from enumerate(loader, start=start)

    def micro_count(self) -> int:
        return math.ceil(len(self.data.sampler) / self.batch_size)


def fit(trainer: nn.Module, data: TrainData, settings: Mapping[str, Any], run_dir: str | os.PathLike[str], *,
        preset: str, world: World | None = None, max_steps: int | None = None, validator: Any = None,
        val_every: int | None = None, init: str | None = None, progress: bool = True) -> Path:
    """Train ``trainer`` on ``data``; returns ``RUN/last.ckpt``. Resumes when ``RUN/last.ckpt`` exists.

    Args:
        trainer: a trainer (built on the CPU; moved to ``world.device`` here).
        data: the training data of this rank.
        settings: the resolved preset (:func:`gim_plugins.training.presets.resolve_preset`).
        run_dir: ``RUN``.
        preset: the preset's name (recorded, and checked when resuming).
        world: from :func:`init_world` (default: one CPU process).
        max_steps: stop after this many optimizer steps in all (None: the preset's epochs).
        validator: a :class:`~gim_plugins.training.validation.Validator` (None: no validation, no best.ckpt).
        val_every: validate every N optimizer steps (default: the preset's ``validation.per_epoch``).
        init: weights to start from (weight name or file; ignored when resuming).
        progress: progress bar on rank 0.

    Raises:
        RunSettingsError: ``RUN`` holds a run with other settings.
        UserError: resuming with another number of processes; bad device; empty data.
    """
    world = world or World()
    run_dir = Path(run_dir)
    if world.rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        _settings_guard(run_dir, preset, settings)
    world.barrier()
    torch.manual_seed(int(settings["seed"]))
    trainer.to(world.device)
    if world.distributed and world.device.type == "cuda" and settings.get("sync_batchnorm", True):
        trainer = nn.SyncBatchNorm.convert_sync_batchnorm(trainer)
    trainer.train()
    loop = _Loop(trainer, data, settings, run_dir, preset, world)
    last = run_dir / "last.ckpt"
    if last.is_file():
        _resume(loop, last)
    elif init:
        log.info("initial weights: %s", load_weights_into(trainer, init))
    loop.wrap()
    epochs = int(settings["schedule"]["max_epochs"])
    total = loop.steps_per_epoch * epochs if max_steps is None else int(max_steps)
    every = val_every or max(1, loop.steps_per_epoch // max(1, int(settings["validation"]["per_epoch"])))
    best = BestCheckpoints(run_dir, settings["validation"]["top_k"], loop.state.best)
    runlog = RunLog(run_dir, enabled=world.rank == 0, resume_step=loop.state.step if last.is_file() else None,
                    total_steps=total, progress=progress, initial_step=loop.state.step)
    try:
        _run(loop, total, every, validator, best, runlog)
    finally:
        runlog.close()
    return last


def _resume(loop: _Loop, path: Path) -> None:
    checkpoint = load_checkpoint(path)
    training = checkpoint["training"]
    if int(training["world_size"]) != loop.world.size:
        raise _UserError(f"{path} was written by {training['world_size']} process(es); resume with the same number "
                         f"(now {loop.world.size})")
    loop.trainer.load_matcher_weights(checkpoint["state_dict"])
    loop.optimizer.load_state_dict(training["optimizer"])
    loop.state = TrainState(int(training["step"]), int(training["epoch"]), int(training["position"]),
                            [list(b) for b in training["best"]])
    set_rng_state(training["rng"])
    log.info("resuming %s at step %d (epoch %d, micro-batch %d)", path, loop.state.step, loop.state.epoch,
             loop.state.position)


def _run(loop: _Loop, total: int, every: int, validator: Any, best: BestCheckpoints, runlog: RunLog) -> None:
    settings, state, world = loop.settings, loop.state, loop.world
    seed = int(settings["seed"])
    precision = settings.get("precision", "fp32")
    if precision not in ("fp32", "bf16"):
        raise _UserError(f"precision must be fp32 or bf16, got {precision!r}")
    clip = settings.get("clip_grad_norm")
    params = [p for group in loop.trainer.parameter_groups() for p in group]
    while state.step < total:
        micro_count = loop.micro_count()
        if state.position >= micro_count:
            state.epoch, state.position = state.epoch + 1, 0
            continue
        losses: list[float] = []
        scalars: dict[str, tuple[float, int]] = {}  # per name: sum over the step's micro-batches and their count
        started = time.perf_counter()
        for index, batch in loop.batches(state.epoch, state.position):
            closes = (index + 1) % loop.accumulate == 0 or index == micro_count - 1
            generator = torch.Generator().manual_seed(
                micro_batch_seed(seed, state.epoch, index * loop.batch_size * world.size + world.rank))
            batch = _to_device(batch, world.device)
            if loop.data.finish is not None:
                batch = loop.data.finish(batch)
            sync = contextlib.nullcontext() if closes or not world.distributed else loop.model.no_sync()
            autocast = (torch.autocast(world.device.type, dtype=torch.bfloat16) if precision == "bf16"
                        else contextlib.nullcontext())
            with sync:
                with autocast:
                    loss, step_scalars = loop.model(batch, generator)
                (loss / loop.accumulate).backward()
            losses.append(float(loss.detach()))
            for name, value in step_scalars.items():
                total_, count_ = scalars.get(name, (0.0, 0))
                scalars[name] = (total_ + value, count_ + 1)
            if not closes:
                continue
            lr = learning_rate(settings["schedule"], float(settings["optimizer"]["lr"]), state.step, state.epoch,
                               loop.steps_per_epoch)
            set_learning_rate(loop.optimizer, lr, float(settings["optimizer"]["backbone_lr_scale"]),
                              loop.has_backbone)
            if clip:
                torch.nn.utils.clip_grad_norm_(params, float(clip))
            loop.optimizer.step()
            loop.optimizer.zero_grad(set_to_none=True)
            state.step += 1
            state.position = index + 1
            mean_loss = world.mean(sum(losses) / len(losses))
            if not math.isfinite(mean_loss):
                raise FloatingPointError(f"non-finite loss at step {state.step} (epoch {state.epoch}); the weights "
                                         f"of the last checkpoint are intact")
            means = {name: total_ / count_ for name, (total_, count_) in scalars.items()}
            runlog.train(state.step, state.epoch, lr, mean_loss, means, time.perf_counter() - started)
            _after_step(loop, total, every, validator, best, runlog)
            losses, scalars, started = [], {}, time.perf_counter()
            if state.step >= total:
                break


def _after_step(loop: _Loop, total: int, every: int, validator: Any, best: BestCheckpoints, runlog: RunLog) -> None:
    """Validation, best checkpoints and ``last.ckpt`` after an optimizer step."""
    state, world, settings = loop.state, loop.world, loop.settings
    final = state.step >= total
    validate = validator is not None and (state.step % every == 0 or final)
    save = validate or final or state.step % max(1, int(settings["checkpoint_every"])) == 0
    if validate and world.rank == 0:
        result = validator(loop.trainer.validation_weights())
        runlog.validation(state.step, state.epoch, result)
        state.best = best.rank(result["auc5"], state.step)
        log.info("step %d: AUC@5 %.4f AUC@10 %.4f AUC@20 %.4f (%d pairs)", state.step, result["auc5"],
                 result["auc10"], result["auc20"], int(result["pairs"]))
    if save and world.rank == 0:
        path = save_checkpoint(loop.run_dir / "last.ckpt", state_dict=loop.trainer.matcher_state_dict(),
                               matcher=loop.trainer.matcher, matcher_conf=loop.trainer.matcher_conf(),
                               preset=loop.preset, settings=settings, optimizer=loop.optimizer, state=state,
                               world_size=world.size)
        if validate:
            best.commit(path)
    if validate or save:
        world.barrier()
