"""Strict, frozen configuration dictionaries.

Every matcher, pipeline step and preset declares a ``default_conf`` dict. User options are deep-merged into a
copy of it with :func:`merge_conf`; a key the defaults do not know is an error that lists the valid keys, because a
misspelt option that is silently ignored (``num_sample`` for ``num_samples``) is the most expensive kind of bug in
an evaluation. The result is a :class:`Conf`: a read-only mapping with attribute access, so a conf can be shared
between objects without one of them mutating it under the others.

Next to its ``default_conf`` a component declares a *schema*: for every option its type and range
(``{"max_keypoints": Int(min=1) | None, "ratio_threshold": Float(min=0, max=1, min_open=True)}``), options whose
default is ``None`` too. :func:`merge_conf` checks the merged values against it, so ``max_keypoints=1.5`` or
``chunk_size=-1`` is one clear error when the component is built, never a ``TypeError`` deep inside a library or a
read of uninitialised memory. Options the schema does not name fall back to a check against the default's type.
"""

from __future__ import annotations

import ast
import copy
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from gim_plugins.errors import UserError

__all__ = ["Anything", "Bool", "Choice", "Conf", "ConfError", "ConfValueError", "Float", "Int", "Option", "PathText",
           "Schema", "Seq", "Str", "check_schema", "merge_conf", "parse_conf", "to_plain"]


class ConfError(KeyError, UserError):
    """An unknown or ill-typed configuration key, or a malformed ``KEY=VALUE`` option.

    Subclasses ``KeyError`` (what a dict raises for a bad key) but prints its message without ``KeyError``'s quotes;
    it is a :class:`~gim_plugins.errors.UserError`, so the command line reports it as one line.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ConfValueError(ConfError, ValueError):
    """An option whose value has the wrong type or lies outside its declared range (also a ``ValueError``)."""


# ------------------------------------------------------------------------------------------------------ the schema


class Option:
    """The declared type and range of one option; ``Int(min=1) | None`` also accepts ``None``."""

    def problem(self, value: Any) -> str | None:
        """``None`` when ``value`` is acceptable, else what is wrong with it (used after "expects ")."""
        raise NotImplementedError

    def describe(self) -> str:
        """What the option accepts, e.g. ``an integer >= 1``."""
        raise NotImplementedError

    def __or__(self, other: Option | None) -> Option:
        return AnyOf(self, other)

    def __ror__(self, other: Option | None) -> Option:
        return AnyOf(other, self)

    def __repr__(self) -> str:
        return f"<{self.describe()}>"


class AnyOf(Option):
    """Any of several options (``None`` in the list accepts ``None``)."""

    def __init__(self, *options: Option | None) -> None:
        flat: list[Option | None] = []
        for option in options:
            flat.extend(option.options if isinstance(option, AnyOf) else [option])
        self.options = tuple(flat)

    def problem(self, value: Any) -> str | None:
        if value is None:
            return None if None in self.options else "a value, not None"
        for option in self.options:
            if option is not None and option.problem(value) is None:
                return None
        return self.describe()

    def describe(self) -> str:
        return " or ".join("None" if o is None else o.describe() for o in self.options)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _bounds(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    return " and ".join(parts)


class _Range(Option):
    kind = "a number"

    def __init__(self, min: float | None = None, max: float | None = None, *, min_open: bool = False,
                 max_open: bool = False) -> None:
        self.min, self.max, self.min_open, self.max_open = min, max, min_open, max_open

    def _type_ok(self, value: Any) -> bool:
        return _is_number(value)

    def problem(self, value: Any) -> str | None:
        if not self._type_ok(value) or (isinstance(value, float) and math.isnan(value)):
            return self.describe()
        if self.min is not None and (value < self.min or (self.min_open and value == self.min)):
            return self.describe()
        if self.max is not None and (value > self.max or (self.max_open and value == self.max)):
            return self.describe()
        return None

    def describe(self) -> str:
        bounds = _bounds(self.min, self.max, self.min_open, self.max_open)
        return f"{self.kind} {bounds}" if bounds else self.kind


class Int(_Range):
    """A whole number (not a bool, not ``1.5``) in ``[min, max]``."""

    kind = "an integer"

    def _type_ok(self, value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)


class Float(_Range):
    """A real number (an int is accepted; NaN never) in ``[min, max]`` (``min_open``/``max_open``: strict bounds)."""


class Bool(Option):
    """``True`` or ``False`` (not 0 or 1)."""

    def problem(self, value: Any) -> str | None:
        return None if isinstance(value, bool) else self.describe()

    def describe(self) -> str:
        return "true or false"


class Str(Option):
    """A non-empty string."""

    def problem(self, value: Any) -> str | None:
        return None if isinstance(value, str) and value else self.describe()

    def describe(self) -> str:
        return "a non-empty string"


class PathText(Option):
    """A file path (a non-empty string or ``os.PathLike``); whether it exists is checked where it is used."""

    def problem(self, value: Any) -> str | None:
        return None if isinstance(value, os.PathLike) or (isinstance(value, str) and value) else self.describe()

    def describe(self) -> str:
        return "a file path"


class Choice(Option):
    """One of a fixed set of values."""

    def __init__(self, *values: Any) -> None:
        self.values = values

    def problem(self, value: Any) -> str | None:
        ok = any(value == v and type(value) is type(v) for v in self.values)
        return None if ok else self.describe()

    def describe(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)


class Seq(Option):
    """A list or tuple of ``length`` items (any length when ``None``), each accepted by ``item``."""

    def __init__(self, item: Option, length: int | None = None) -> None:
        self.item, self.length = item, length

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, list | tuple) or (self.length is not None and len(value) != self.length):
            return self.describe()
        return None if all(self.item.problem(v) is None for v in value) else self.describe()

    def describe(self) -> str:
        count = f"{self.length} " if self.length is not None else ""
        return f"a list of {count}values, each {self.item.describe()}"


class Anything(Option):
    """Any value (an option whose checks belong to the code that uses it, e.g. a state dict)."""

    def problem(self, value: Any) -> str | None:
        return None

    def describe(self) -> str:
        return "any value"


Schema = Mapping[str, "Option | Mapping[str, Any] | None"]
"""Option name → :class:`Option` (or a nested schema for a nested mapping option)."""


def check_schema(default: Mapping[str, Any], schema: Schema, *, owner: str, complete: bool = False) -> None:
    """Check that a schema fits its defaults (a programming error otherwise, so ``TypeError``, not a user error).

    Args:
        default: the component's ``default_conf``.
        schema: its declared schema.
        owner: the component, for messages.
        complete: every option of ``default`` must be declared (as for the package's own matchers and pipelines).
    """
    extra = sorted(set(schema) - set(default))
    if extra:
        raise TypeError(f"the schema of {owner} declares options its default_conf lacks: {', '.join(extra)}")
    if complete:
        missing = sorted(set(default) - set(schema))
        if missing:
            raise TypeError(f"the schema of {owner} does not declare {', '.join(missing)}")
    for key, option in schema.items():
        if isinstance(option, Mapping):
            if not isinstance(default[key], Mapping):
                raise TypeError(f"the schema of {owner} declares {key!r} as a mapping; its default is not one")
            check_schema(default[key], option, owner=owner, complete=complete)


def _validate(conf: Mapping[str, Any], schema: Schema, *, owner: str, prefix: str) -> None:
    for key, option in schema.items():
        path, value = f"{prefix}{key}", conf[key]
        if isinstance(option, Mapping):
            if not isinstance(value, Mapping):
                raise ConfValueError(f"option {path!r} of {owner} expects a mapping of options, got {value!r}")
            _validate(value, option, owner=owner, prefix=f"{path}.")
            continue
        if option is None:
            expected = None if value is None else "None"
        else:
            expected = option.problem(value)
        if expected is not None:
            raise ConfValueError(f"option {path!r} of {owner} expects {expected}, got {value!r}")


# ------------------------------------------------------------------------------------------------------- the conf


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
        raise ConfValueError(f"option {path!r} of {owner} expects {type(default).__name__}, got {value!r}")
    if isinstance(default, int | float) and not isinstance(value, int | float):
        raise ConfValueError(f"option {path!r} of {owner} expects a number, got {value!r}")
    if isinstance(default, str) and not isinstance(value, str):
        raise ConfValueError(f"option {path!r} of {owner} expects a string, got {value!r}")


def merge_conf(
    default: Mapping[str, Any],
    user: Mapping[str, Any] | None = None,
    *,
    owner: str = "this component",
    schema: Schema | None = None,
) -> Conf:
    """Deep-merge ``user`` into a copy of ``default`` and freeze the result.

    Args:
        default: The component's ``default_conf``. It is never modified.
        user: Options to override. Nested mappings are merged key by key where the default has a mapping.
        owner: Name used in error messages (e.g. the matcher name).
        schema: the declared type and range of the options (see :class:`Option`); the merged values are checked
            against it.

    Returns:
        A read-only :class:`Conf`.

    Raises:
        ConfError: for a key that ``default`` does not define (the message lists the known keys).
        ConfValueError: a value whose type contradicts the default's or the schema, or outside the declared range.

    Example:
        >>> merge_conf({"num_samples": 5000, "upsample": {"enabled": True}}, {"upsample": {"enabled": False}})
        Conf({'num_samples': 5000, 'upsample': {'enabled': False}})
    """
    if user is not None and not isinstance(user, Mapping):
        raise ConfValueError(f"options of {owner} must be a mapping of names to values, got {type(user).__name__}")
    merged = _merge(to_plain(default), dict(user or {}), owner=owner, prefix="", schema=schema or {})
    if schema:
        _validate(merged, schema, owner=owner, prefix="")
    return Conf(merged)


def _merge(default: dict[str, Any], user: Mapping[str, Any], *, owner: str, prefix: str,
           schema: Schema) -> dict[str, Any]:
    out = copy.deepcopy(default)
    for key, value in user.items():
        path = f"{prefix}{key}"
        if key not in default:
            known = ", ".join(sorted(default)) or "(none)"
            raise ConfError(f"unknown option {path!r} for {owner}; known options: {known}")
        declared = schema.get(key)
        if isinstance(default[key], Mapping) and default[key] and isinstance(value, Mapping):
            nested = declared if isinstance(declared, Mapping) else {}
            out[key] = _merge(default[key], value, owner=owner, prefix=f"{path}.", schema=nested)
        else:
            if key not in schema:  # declared options are checked against their schema, with a better message
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
