"""``gim list``: registered matchers, whether their weights are installed, and the default."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    parser = sub.add_parser("list", help="list the registered matchers and their weights")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from gim_plugins.matching import default_matcher
    from gim_plugins.registry import MatcherLoadError, get_matcher_class, list_matchers
    from gim_plugins.weights import resolve_weights

    default, _ = default_matcher()
    for name in list_matchers():
        try:
            cls = get_matcher_class(name)
        except MatcherLoadError as exc:
            print(f"  {name:<18} BROKEN: {exc}")
            continue
        missing = []
        for weight in cls.weight_names:
            try:
                resolve_weights(weight)
            except FileNotFoundError:
                missing.append(weight)
        if not cls.weight_names:
            state = "no weights needed"
        elif missing:
            state = f"weights missing: {', '.join(missing)} (gim weights list)"
        else:
            state = "weights installed"
        kind = "sparse" if cls.is_sparse else "dense"
        marker = "*" if name == default else " "
        print(f"{marker} {name:<18} {kind:<6} {state}")
    print(f"(* = default matcher of `gim match`: {default})")
    return 0
