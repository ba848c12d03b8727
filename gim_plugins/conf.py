"""Strict, frozen configuration dictionaries.

Every matcher, pipeline step and preset declares a ``default_conf`` dict. User options are deep-merged into a
copy of it with :func:`merge_conf`; a key the defaults do not know is an error that lists the valid keys, because a
misspelt option that is silently ignored (``num_sample`` for ``num_samples``) is the most expensive kind of bug in
an evaluation. The result is a :class:`Conf`: a read-only mapping with attribute access, so a conf can be shared
between objects without one of them mutating it under the others.
"""

from __future__ import annotations

import ast
import copy
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from gim_plugins.errors import UserError

__all__ = ["Conf", "ConfError", "merge_conf", "parse_conf", "to_plain"]


class ConfError(KeyError, UserError):
    """An unknown or ill-typed configuration key, or a malformed ``KEY=VALUE`` option.

    Subclasses ``KeyError`` (what a dict raises for a bad key) but prints its message without ``KeyError``'s quotes;
    it is a :class:`~gim_plugins.errors.UserError`, so the command line reports it as one line.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class Conf(Mapping[str, Any]):
    """An immutable configuration mapping; nested dicts are ``Conf`` too and lists become tuples.

    Values are read as ``conf["num_samples"]`` or ``conf.num_samples``.
    """

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        object.__setattr__(self, "_data", {str(k): _freeze(v) for k, v in (data or {}).items()})

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __getattr__(self, key: str) -> Any:
        try:
            return self._data[key]
        except KeyError:
            raise AttributeError(f"conf has no option {key!r}; known: {', '.join(self._data)}") from None

    def __setattr__(self, key: str, value: Any) -> None:
        raise TypeError("Conf is read-only; build a new one with merge_conf()")

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"Conf({to_plain(self)!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return to_plain(self) == to_plain(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(repr(self))

    def __reduce__(self) -> tuple[Any, ...]:
        return (Conf, (to_plain(self),))

    def __deepcopy__(self, memo: dict[int, Any]) -> Conf:
        return self


def _freeze(value: Any) -> Any:
    if isinstance(value, Conf):
        return value
    if isinstance(value, Mapping):
        return Conf(value)
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def to_plain(value: Any) -> Any:
    """Convert a :class:`Conf` (recursively) back into plain dicts and lists, e.g. to write it as JSON."""
    if isinstance(value, Mapping):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [to_plain(v) for v in value]
    return value


def _check_type(path: str, default: Any, value: Any, owner: str) -> None:
    """Reject values whose type obviously contradicts the default (a bool for an int, a str for a number)."""
    if default is None or value is None:
        return
    if isinstance(default, bool) != isinstance(value, bool):
        raise ConfError(f"option {path!r} of {owner} expects {type(default).__name__}, got {value!r}")
    if isinstance(default, int | float) and not isinstance(value, int | float):
        raise ConfError(f"option {path!r} of {owner} expects a number, got {value!r}")
    if isinstance(default, str) and not isinstance(value, str):
        raise ConfError(f"option {path!r} of {owner} expects a string, got {value!r}")


def merge_conf(
    default: Mapping[str, Any], user: Mapping[str, Any] | None = None, *, owner: str = "this component"
) -> Conf:
    """Deep-merge ``user`` into a copy of ``default`` and freeze the result.

    Args:
        default: The component's ``default_conf``. It is never modified.
        user: Options to override. Nested mappings are merged key by key where the default has a mapping.
        owner: Name used in error messages (e.g. the matcher name).

    Returns:
        A read-only :class:`Conf`.

    Raises:
        ConfError: for a key that ``default`` does not define (the message lists the known keys) or a value whose
            type contradicts the default's.

    Example:
        >>> merge_conf({"num_samples": 5000, "upsample": {"enabled": True}}, {"upsample": {"enabled": False}})
        Conf({'num_samples': 5000, 'upsample': {'enabled': False}})
    """
    merged = _merge(to_plain(default), dict(user or {}), owner=owner, prefix="")
    return Conf(merged)


def _merge(default: dict[str, Any], user: Mapping[str, Any], *, owner: str, prefix: str) -> dict[str, Any]:
    out = copy.deepcopy(default)
    for key, value in user.items():
        path = f"{prefix}{key}"
        if key not in default:
            known = ", ".join(sorted(default)) or "(none)"
            raise ConfError(f"unknown option {path!r} for {owner}; known options: {known}")
        if isinstance(default[key], Mapping) and default[key] and isinstance(value, Mapping):
            out[key] = _merge(default[key], value, owner=owner, prefix=f"{path}.")
        else:
            _check_type(path, default[key], value, owner)
            out[key] = to_plain(value) if isinstance(value, Mapping | tuple) else copy.deepcopy(value)
    return out


_WORDS = {"true": "True", "false": "False", "null": "None", "none": "None"}


def parse_conf(items: Iterable[str], *, option: str = "--conf") -> dict[str, Any]:
    """Parse command-line ``KEY=VALUE`` options into a dict for :func:`merge_conf`.

    Values are Python/JSON literals (``1``, ``0.5``, ``true``, ``null``, ``(1, 2)``, ``[1, 2]``, ``'text'``);
    anything that is not a literal stays a string. Keys and values are not checked here: the component's
    :func:`merge_conf` does that, against its own defaults.

    Raises:
        ConfError: for an item without ``=`` or with an empty key.

    Example:
        >>> parse_conf(["a=1", "b=true", "c=(1, 2)", "d=sift"])
        {'a': 1, 'b': True, 'c': (1, 2), 'd': 'sift'}
    """
    conf: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfError(f"{option} expects KEY=VALUE, got {item!r}")
        try:
            conf[key] = ast.literal_eval(_WORDS.get(text.lower(), text))
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            conf[key] = text
    return conf
