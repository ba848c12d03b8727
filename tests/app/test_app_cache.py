"""The page's matcher cache: the same model for the same key, a new one for other options, a hard bound, LRU order."""

from __future__ import annotations

import gc
import weakref

import pytest

from gim_plugins.app.cache import MatcherCache
from gim_plugins.conf import ConfError
from gim_plugins.errors import UserError
from gim_plugins.matching import load_matcher


class CountingLoader:
    """load_matcher, recording each call and how many models the cache held when it was made."""

    def __init__(self, cache_ref=None):
        self.calls = []
        self.held = []
        self.cache = cache_ref

    def __call__(self, name, **kwargs):
        self.calls.append((name, kwargs))
        if self.cache is not None:
            self.held.append(len(self.cache))
        return load_matcher(name, **kwargs)


def test_feature_same_key_same_object(test_matchers):
    loader = CountingLoader()
    cache = MatcherCache(2, loader=loader)
    first = cache.get("app_test_grid")
    assert cache.get("app_test_grid") is first
    assert cache.get("app_test_grid", {"dx": 2.0}) is first  # an option at its default is the same model
    assert cache.get("app_test_grid", {}, None, "cpu") is first
    assert len(loader.calls) == 1 and cache.loads == 1


def test_feature_other_options_weights_or_device_are_other_models(test_matchers):
    loader = CountingLoader()
    cache = MatcherCache(4, loader=loader)
    base = cache.get("app_test_grid")
    moved = cache.get("app_test_grid", {"dx": 5.0})
    assert moved is not base and moved.conf.dx == 5.0
    assert loader.calls[-1] == ("app_test_grid", {"weights": None, "device": "cpu", "dx": 5.0})
    keys = cache.keys()
    assert [k[0] for k in keys] == ["app_test_grid", "app_test_grid"] and keys[0][1] != keys[1][1]
    assert MatcherCache.key("app_test_grid", None, "file.ckpt") != MatcherCache.key("app_test_grid")
    assert MatcherCache.key("app_test_grid", device="cuda:0") != MatcherCache.key("app_test_grid")


def test_cardinality_bound_evicts_least_recently_used_before_building(test_matchers):
    cache = MatcherCache(2)
    loader = CountingLoader(cache)
    cache._loader = loader
    a = cache.get("app_test_grid", {"dx": 1.0})
    b = cache.get("app_test_grid", {"dx": 2.5})
    assert cache.get("app_test_grid", {"dx": 1.0}) is a  # a is now the most recent
    gone = weakref.ref(b)
    del b
    c = cache.get("app_test_grid", {"dx": 3.0})  # evicts b, not a
    gc.collect()
    assert gone() is None  # released: the cache held the only reference
    assert len(cache) == 2 and cache.get("app_test_grid", {"dx": 1.0}) is a
    assert cache.get("app_test_grid", {"dx": 3.0}) is c
    assert loader.held == [0, 1, 1]  # never more than max_models alive, even while building
    assert cache.loads == 3
    cache.clear()
    assert len(cache) == 0


def test_exception_bad_options_fail_before_loading(test_matchers):
    loader = CountingLoader()
    cache = MatcherCache(2, loader=loader)
    with pytest.raises(ConfError, match="unknown option 'dz'"):
        cache.get("app_test_grid", {"dz": 1.0})
    assert loader.calls == []
    with pytest.raises(UserError, match="at least one model"):
        MatcherCache(0)


def test_exception_range_errors_come_from_the_matcher(test_matchers):
    cache = MatcherCache(2)
    with pytest.raises(ValueError, match="step must be positive, got 0"):
        cache.get("app_test_grid", {"step": 0})
    assert len(cache) == 0
