"""Who does which share of a job over many pairs: one process, independent ``--shard i/n`` jobs, or torchrun ranks.

Shared by the pipelines that split pairs over processes (the ZEB runner, the match step of ``gim reconstruct``), so
both read ``--shard`` and torchrun's environment the same way. With ``torchrun`` (``WORLD_SIZE > 1``) rank ``r`` of
``n`` takes items ``r::n``, coordinated over ``torch.distributed`` with the gloo backend (only barriers are
exchanged, and gloo also works next to CUDA); on GPUs rank ``r`` uses ``cuda:LOCAL_RANK``, and rank 0 writes the
shared files. Independent jobs use ``shard=(i, n)`` the same way, without any coordination: each pipeline says who
merges their results (the last one to finish, or an explicit merge step).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from gim_plugins.errors import InputError

__all__ = ["World", "init_world", "parse_shard", "rank_device"]


def parse_shard(text: str) -> tuple[int, int]:
    """``"1/4"`` → ``(1, 4)`` (0-based index).

    Raises:
        InputError: (a ValueError) not ``i/n`` with ``0 <= i < n``.
    """
    index, sep, count = text.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        i, n = -1, 0
    if not sep or not 0 <= i < n:
        raise InputError(f"--shard expects i/n with 0 <= i < n (0-based), got {text!r}")
    return i, n


@dataclass(frozen=True)
class World:
    """This process's share of the pairs: ``rank`` of ``size`` (``distributed``: under torchrun)."""

    rank: int
    size: int
    distributed: bool
    owns_group: bool = False  # the process group was created here (and is destroyed at the end of the run)

    @property
    def writes_shared_files(self) -> bool:
        """Whether this process writes the run's selection and dumps (torchrun: rank 0; shards: every job)."""
        return self.rank == 0 or not self.distributed

    def barrier(self) -> None:
        """Wait for every rank (no-op outside torchrun)."""
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        """Destroy the process group if this run created it."""
        if self.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()


def init_world(shard: tuple[int, int] | None) -> World:
    """The world of this process: torchrun's ranks when ``WORLD_SIZE > 1``, else ``shard`` (or one process).

    Raises:
        InputError: ``shard`` given under torchrun.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World(*(shard or (0, 1)), distributed=False)
    if shard is not None:
        raise InputError("--shard and torchrun are alternatives: torchrun already splits the pairs over its ranks")
    import torch.distributed as dist

    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend="gloo")  # only barriers are exchanged; gloo works next to CUDA too
    return World(dist.get_rank(), dist.get_world_size(), distributed=True, owns_group=owns)


def rank_device(device: str, world: World) -> str:
    """Under torchrun, ``cuda`` means this rank's GPU (``cuda:LOCAL_RANK``); anything else is kept."""
    if world.distributed and device == "cuda":
        return f"cuda:{int(os.environ.get('LOCAL_RANK', world.rank))}"
    return device
