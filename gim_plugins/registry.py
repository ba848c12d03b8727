"""Matcher registry: entry-point group ``gim_plugins.matchers``, loaded lazily and fault-isolated.

Any installed distribution can add a matcher by declaring, in its ``pyproject.toml``::

    [project.entry-points."gim_plugins.matchers"]
    my_matcher = "my_pkg.matchers:MyMatcher"   # a subclass of gim_plugins.models.base.BaseMatcher

Listing reads package metadata only; a matcher's module is imported the first time that name is requested, so a
broken plugin breaks only its own name. A ``"package.module:Class"`` string is accepted anywhere a name is, to try an
unregistered matcher, and :func:`register_matcher` adds one at run time (tests, notebooks).
"""

from __future__ import annotations

import importlib
import warnings
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

from gim_plugins.errors import UserError

if TYPE_CHECKING:
    from gim_plugins.models.base import BaseMatcher

__all__ = [
    "GROUP",
    "MatcherLoadError",
    "NotAMatcherError",
    "UnknownMatcherError",
    "get_matcher_class",
    "list_matchers",
    "register_matcher",
    "unregister_matcher",
]

GROUP = "gim_plugins.matchers"
_runtime: dict[str, Any] = {}


class UnknownMatcherError(KeyError, UserError):
    """A matcher name that is neither registered nor a ``module:Class`` path."""

    def __str__(self) -> str:
        return str(self.args[0])


class MatcherLoadError(ImportError):
    """A registered matcher whose module failed to import (the plugin is broken, not the registry)."""


class NotAMatcherError(TypeError, UserError):
    """A ``module:Class`` path (or a registration) that names something other than a matcher class."""


@cache
def _entry_points() -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=GROUP):
        if ep.name in found and found[ep.name].value != ep.value:
            first = found[ep.name]
            warnings.warn(
                f"matcher {ep.name!r} is registered twice ({first.value} and {ep.value}); using {first.value}",
                RuntimeWarning,
                stacklevel=3,
            )
            continue
        found.setdefault(ep.name, ep)
    return found


def refresh() -> None:
    """Forget the cached entry-point scan (after installing a plugin in a running process)."""
    _entry_points.cache_clear()


def list_matchers() -> list[str]:
    """Names of all registered matchers (entry points and run-time registrations), sorted. Imports nothing."""
    return sorted(set(_entry_points()) | set(_runtime))


def _import_path(path: str) -> Any:
    module_name, _, attr = path.partition(":")
    module = importlib.import_module(module_name)
    target: Any = module
    for part in attr.split("."):
        target = getattr(target, part)
    return target


def _check_class(cls: Any, origin: str) -> type[BaseMatcher]:
    from gim_plugins.models.base import BaseMatcher

    if not (isinstance(cls, type) and issubclass(cls, BaseMatcher)):
        what = f"the class {cls.__qualname__}" if isinstance(cls, type) else f"a {type(cls).__name__}"
        raise NotAMatcherError(f"{origin} names {what}, not a matcher: 'module:Class' must name a subclass of "
                               "gim_plugins.models.base.BaseMatcher")
    return cls


def get_matcher_class(name: str) -> type[BaseMatcher]:
    """The matcher class registered as ``name`` (or the class at a ``"module:Class"`` path).

    Raises:
        UnknownMatcherError: ``name`` is not registered; the message lists the registered names.
        MatcherLoadError: the matcher is registered but its module fails to import.
        NotAMatcherError: a ``module:Class`` path that names something other than a matcher class.
    """
    if not isinstance(name, str) or not name:
        known = ", ".join(list_matchers()) or "(none)"
        raise UnknownMatcherError(f"a matcher name is needed (got {name!r}); registered matchers: {known}")
    if name in _runtime:
        target = _runtime[name]
        cls = _import_path(target) if isinstance(target, str) else target
        return _check_class(cls, f"matcher {name!r}")
    ep = _entry_points().get(name)
    if ep is not None:
        try:
            cls = ep.load()
        except Exception as exc:  # a broken plugin must name itself, not look like a registry bug
            dist = f" (from {ep.dist.name} {ep.dist.version})" if ep.dist is not None else ""
            raise MatcherLoadError(f"matcher {name!r}{dist} failed to import {ep.value}: {exc}") from exc
        return _check_class(cls, f"matcher {name!r} ({ep.value})")
    if ":" in name:
        try:
            cls = _import_path(name)
        except (ImportError, AttributeError, ValueError) as exc:  # ValueError: an empty module name (":Class")
            raise MatcherLoadError(f"cannot import matcher class {name!r}: {exc}") from exc
        return _check_class(cls, name)
    known = ", ".join(list_matchers()) or "(none)"
    raise UnknownMatcherError(f"unknown matcher {name!r}; registered matchers: {known} (or pass 'module:Class')")


def register_matcher(name: str, target: type[BaseMatcher] | str, *, overwrite: bool = False) -> None:
    """Register a matcher class (or a ``"module:Class"`` path) under ``name`` for this process."""
    if not overwrite and (name in _runtime or name in _entry_points()):
        raise ValueError(f"matcher {name!r} is already registered; pass overwrite=True to replace it")
    _runtime[name] = target


def unregister_matcher(name: str) -> None:
    """Remove a run-time registration made with :func:`register_matcher`."""
    _runtime.pop(name, None)
