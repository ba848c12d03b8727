"""Who evaluates which pairs of a ZEB run: the core's :mod:`gim_plugins.world` (one process, ``--shard i/n`` jobs or
torchrun ranks), shared with the other pipelines that shard their pairs. For ZEB, rank ``r`` of ``n`` takes pairs
``r::n`` of each subset; under torchrun rank 0 writes the dumps, independent jobs leave them to the last one to
finish or to ``merge``.
"""

from gim_plugins.world import World, init_world, parse_shard, rank_device

__all__ = ["World", "init_world", "parse_shard", "rank_device"]
