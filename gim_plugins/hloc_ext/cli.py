"""``gim hloc``: check that hloc sees the GIM confs and models (the self-test of the hooks), and list them.

Runs ``python -m hloc.<step> --help`` in subprocesses, exactly as a user would, and reports which registered confs
hloc's own CLI offers, plus what is missing: hloc itself, the ``.pth`` hook, torchvision (optional), weights.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from typing import Any

__all__ = ["check", "register"]

STEPS = ("match_dense", "match_features", "extract_features")


def register(sub: Any) -> None:
    parser = sub.add_parser("hloc", help="check that hloc sees the GIM confs and matchers",
                            description=__doc__.split("\n\n")[0])
    parser.set_defaults(handler=run)


def _cli_choices(step: str) -> tuple[list[str] | None, str]:
    env = {k: v for k, v in os.environ.items() if k != "GIM_PLUGINS_NO_HOOKS"}
    proc = subprocess.run([sys.executable, "-m", f"hloc.{step}", "--help"], capture_output=True, text=True, env=env,
                          timeout=600, check=False)
    if proc.returncode != 0:
        return None, (proc.stderr.strip().splitlines() or ["failed"])[-1]
    text = " ".join(proc.stdout.split())
    marker = "--conf {"
    if marker not in text:
        return None, "no --conf choices in its --help"
    return text[text.index(marker) + len(marker):].split("}")[0].split(","), ""


def check() -> list[str]:
    """Problems that keep hloc from seeing our confs (empty when all is well); prints a report."""
    from importlib.metadata import entry_points

    from gim_plugins import _bootstrap, _host_hooks

    problems = []
    print(f"hooks: {'disabled by ' + _bootstrap.ENV_DISABLE if _bootstrap.hooks_disabled() else 'enabled'}, "
          f"finder {'installed' if _bootstrap.installed() else 'NOT installed (gim_plugins.pth missing?)'}")
    if not _bootstrap.installed() and not _bootstrap.hooks_disabled():
        problems.append("gim_plugins.pth is not active: reinstall gim-plugins with pip (normal or -e)")
    try:
        import hloc
    except ImportError as exc:
        print(f"hloc: not importable ({exc})")
        return [*problems, "hloc is not installed: pip install --no-deps <hloc source tree> (it is not on PyPI)"]
    print(f"hloc {getattr(hloc, '__version__', '?')} at {os.path.dirname(hloc.__file__)}")
    for step in STEPS:  # what the hooks will do: a module hloc imports, or the stand-in an adapter declared for it
        for required, stand_in in _host_hooks.import_fallbacks(f"hloc.{step}").items():
            error = _host_hooks.import_error(required)
            if error is None:
                print(f"{required}: importable (hloc.{step} uses it)")
            else:
                print(f"{required}: not importable ({type(error).__name__}); hloc.{step} uses {stand_in} instead")
    for step in STEPS:
        ours = []
        for ep in entry_points(group=f"hloc.{step}.confs"):
            try:
                value = ep.load()
                if not callable(value) or value() is not None:  # a callable returning None offers no conf
                    ours.append(ep.name)
            except Exception as exc:
                problems.append(f"conf {ep.name!r} ({ep.value}) is broken: {exc}")
        choices, error = _cli_choices(step)
        if choices is None:
            print(f"python -m hloc.{step}: FAILED ({error})")
            problems.append(f"python -m hloc.{step} --help failed: {error}")
            continue
        missing = [name for name in ours if name not in choices]
        seen = [name for name in ours if name in choices]
        print(f"python -m hloc.{step} --conf: {', '.join(seen) or '-'}"
              + (f"  (registered but not offered: {', '.join(missing)})" if missing else ""))
        problems += [f"hloc.{step} does not offer conf {name!r} (does hloc still assign `confs = {{...}}`?)"
                     for name in missing]
    return problems


def run(args: argparse.Namespace) -> int:
    problems = check()
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    return 1 if problems else 0
