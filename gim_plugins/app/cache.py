"""The loaded matchers the page keeps between requests: a small LRU keyed by everything that changes a model.

Building a matcher costs seconds (weights are read and remapped), and a GIM model holds hundreds of MB to GBs, so
the page keeps the last few and no more. Requests reach the cache one at a time (the page's queue runs one match at
a time); the lock makes direct use from several threads safe too.
"""

from __future__ import annotations

import gc
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from gim_plugins.app.core import DEFAULT_MAX_MODELS, canonical
from gim_plugins.conf import merge_conf
from gim_plugins.errors import UserError
from gim_plugins.registry import get_matcher_class

if TYPE_CHECKING:
    from gim_plugins.models.base import BaseMatcher

__all__ = ["Loader", "MatcherCache"]

Loader = Callable[..., "BaseMatcher"]
"""Builds a model with the signature of :func:`gim_plugins.matching.load_matcher`."""


class MatcherCache:
    """Loaded matchers kept between requests, least recently used first out.

    The key is the matcher name, its merged options, the weights argument and the device, so a request with other
    options gets its own model, and the same request gets the very same object back. At most ``max_models`` are held:
    the oldest is released *before* a new one is built, so peak memory is ``max_models`` models.

    Args:
        max_models: the bound (at least 1).
        loader: builds a model as :func:`~gim_plugins.matching.load_matcher` does (tests inject a cheap one).
    """

    def __init__(self, max_models: int = DEFAULT_MAX_MODELS, loader: Loader | None = None) -> None:
        if max_models < 1:
            raise UserError(f"the matcher cache needs room for at least one model, got {max_models}")
        self.max_models = int(max_models)
        self._loader = loader
        self._models: OrderedDict[tuple[str, str, str, str], BaseMatcher] = OrderedDict()
        self._lock = threading.RLock()
        self.loads = 0

    @staticmethod
    def key(name: str, options: Mapping[str, Any] | None = None, weights: str | None = None,
            device: str = "cpu") -> tuple[str, str, str, str]:
        """The cache key: name, merged options (as sorted JSON), weights and device."""
        merged = merge_conf(get_matcher_class(name).default_conf, options, owner=f"matcher {name!r}")
        return name, canonical(merged), str(weights or ""), device

    def get(self, name: str, options: Mapping[str, Any] | None = None, weights: str | None = None,
            device: str = "cpu") -> BaseMatcher:
        """The loaded matcher for this key, building (and caching) it on first use."""
        key = self.key(name, options, weights, device)
        with self._lock:
            model = self._models.get(key)
            if model is not None:
                self._models.move_to_end(key)
                return model
            while len(self._models) >= self.max_models:
                self._release(self._models.popitem(last=False)[1])
            loader = self._loader
            if loader is None:
                from gim_plugins.matching import load_matcher as loader
            model = loader(name, weights=weights or None, device=device, **dict(options or {}))
            self.loads += 1
            self._models[key] = model
            return model

    def keys(self) -> list[tuple[str, str, str, str]]:
        """Keys held, least recently used first."""
        with self._lock:
            return list(self._models)

    def __len__(self) -> int:
        return len(self._models)

    def clear(self) -> None:
        """Release every model."""
        with self._lock:
            while self._models:
                self._release(self._models.popitem(last=False)[1])

    @staticmethod
    def _release(model: Any) -> None:
        device = str(getattr(model, "device", "cpu"))
        del model
        gc.collect()
        if device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()
