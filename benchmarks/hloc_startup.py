"""What the hloc/kornia hooks cost: at interpreter start-up and when hloc's step modules are imported.

Every number is the median of ``--runs`` fresh interpreters, configurations interleaved so that machine noise hits
them alike. Run with the project's venv (where ``gim_plugins.pth`` is installed)::

    .venv/bin/python benchmarks/hloc_startup.py [--runs 15]

Bytecode caching is on in every run (as after a pip install, which compiles ``.pyc`` files).

Start-up: ``python -X importtime -c pass``; the hooks cost the cumulative import time of ``gim_plugins._bootstrap``
(it includes the ``gim_plugins`` package). Wall-clock start-up is also compared with the same interpreter started
without our ``.pth`` (``-S`` plus the site directory's other ``.pth`` files processed by hand, identical otherwise).

hloc: ``python -X importtime -c "import hloc.match_dense"`` (which imports ``match_features`` and
``extract_features``) with the hooks and with ``GIM_PLUGINS_NO_HOOKS=1``. The added cost is the difference of the
summed self times of every ``hloc.*`` and ``gim_plugins.*`` module (so torch's 3 s of noise does not drown it). hloc's
``match_dense`` needs torchvision at import; if it is absent, a stand-in ``torchvision.transforms.functional`` on
``PYTHONPATH`` lets the baseline import (the benchmark's only use of it), and a third configuration measures the
hooks' torch-only fallback (no stand-in: the module is recompiled with the fallback import).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PTH = "gim_plugins.pth"


def importtime(args: list[str], env: dict[str, str]) -> dict[str, tuple[int, int]]:
    """``{module: (self_us, cumulative_us)}`` of one interpreter run with ``-X importtime``."""
    proc = subprocess.run([sys.executable, "-X", "importtime", *args], capture_output=True, text=True, env=env,
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{args} failed:\n{proc.stderr[-2000:]}")
    times: dict[str, tuple[int, int]] = {}
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative, name = (part.strip() for part in line[len("import time:"):].split("|"))
        times[name.strip()] = (int(self_us), int(cumulative))
    return times


def wall(args: list[str], env: dict[str, str]) -> float:
    return timed(args, env)[0]


def timed(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall-clock and CPU seconds (user + system) of one interpreter run; CPU time is robust to a busy machine."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], env=env, check=True, capture_output=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def site_dirs() -> list[str]:
    import site

    return [d for d in site.getsitepackages() if os.path.isdir(d)]


def without_pth_code(body: str) -> str:
    """Code for ``python -S`` that processes the site directories like ``site`` does, except our ``.pth``."""
    return (
        "import os, site, sys\n"
        f"for d in {site_dirs()!r}:\n"
        "    sys.path.append(d)\n"
        "    for n in sorted(os.listdir(d)):\n"
        f"        if n.endswith('.pth') and n != {PTH!r}:\n"
        "            site.addpackage(d, n, set())\n"
        f"{body}\n"
    )


def with_pth_code(body: str) -> str:
    return without_pth_code(body).replace(f"n != {PTH!r}", "True")


def hloc_self_ms(times: dict[str, tuple[int, int]]) -> float:
    return sum(s for name, (s, _) in times.items() if name.split(".")[0] in ("hloc", "gim_plugins")) / 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=40, help="interpreters per start-up configuration")
    parser.add_argument("--hloc-runs", type=int, default=5, help="interpreters per hloc configuration (≈4 s each)")
    args = parser.parse_args()
    # Bytecode caching on, as after any pip install (pip compiles .pyc at install time): a PYTHONDONTWRITEBYTECODE
    # environment would otherwise recompile the editable package's sources at every start. One warm-up run writes them.
    drop = ("GIM_PLUGINS_NO_HOOKS", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE")
    base_env = {k: v for k, v in os.environ.items() if k not in drop}
    off_env = {**base_env, "GIM_PLUGINS_NO_HOOKS": "1"}
    if not any((Path(d) / PTH).is_file() for d in site_dirs()):
        print(f"{PTH} is not installed in {site_dirs()}; install the package first", file=sys.stderr)
        return 1

    # ------------------------------------------------------------------------------------------------ start-up
    subprocess.run([sys.executable, "-c", "import gim_plugins._host_hooks"], env=base_env, check=True)
    boot, boot_off, wall_on, wall_off, wall_pth, wall_nopth = [], [], [], [], [], []
    for _ in range(args.runs):
        times = importtime(["-c", "pass"], base_env)
        boot.append(times.get("gim_plugins._bootstrap", (0, 0))[1] + times.get("gim_plugins", (0, 0))[0])
        times = importtime(["-c", "pass"], off_env)
        boot_off.append(times.get("gim_plugins._bootstrap", (0, 0))[1] + times.get("gim_plugins", (0, 0))[0])
        wall_on.append(wall(["-c", "pass"], base_env))
        wall_off.append(wall(["-c", "pass"], off_env))
        wall_pth.append(timed(["-S", "-c", with_pth_code("pass")], base_env))
        wall_nopth.append(timed(["-S", "-c", without_pth_code("pass")], base_env))
    med = statistics.median
    print(f"interpreter start-up, median of {args.runs} ({sys.executable}):")
    print(f"  import of gim_plugins + gim_plugins._bootstrap (-X importtime): {med(boot) / 1000:.2f} ms "
          f"(GIM_PLUGINS_NO_HOOKS=1: {med(boot_off) / 1000:.2f} ms)")
    print(f"  wall clock `python -c pass`: {med(wall_on) * 1000:.1f} ms with hooks, "
          f"{med(wall_off) * 1000:.1f} ms with GIM_PLUGINS_NO_HOOKS=1")
    for label, index in (("wall clock", 0), ("CPU time", 1)):
        with_ms = med(r[index] for r in wall_pth) * 1000
        without_ms = med(r[index] for r in wall_nopth) * 1000
        print(f"  {label}, site processed by hand: {with_ms:.1f} ms with {PTH}, {without_ms:.1f} ms without → "
              f"added {with_ms - without_ms:+.1f} ms (ratio {with_ms / without_ms:.3f})")

    # -------------------------------------------------------------------------------------------- kornia.feature
    kornia_self: dict[str, list[float]] = {"hooks": [], "no hooks": []}
    try:
        for _ in range(args.hloc_runs):
            for name, env in (("hooks", base_env), ("no hooks", off_env)):
                times = importtime(["-c", "import kornia.feature"], env)
                kornia_self[name].append(sum(s for m, (s, _) in times.items()
                                             if m == "kornia.feature" or m.startswith("gim_plugins")) / 1000)
        print(f"\n`import kornia.feature`, median of {args.hloc_runs}: kornia.feature + gim_plugins self time "
              f"{med(kornia_self['hooks']):.2f} ms with hooks, {med(kornia_self['no hooks']):.2f} ms without")
    except RuntimeError:
        print("\nkornia is not installed: skipping the kornia part")

    # ---------------------------------------------------------------------------------------------- hloc import
    try:
        import hloc  # noqa: F401
    except ImportError:
        print("hloc is not installed: skipping the hloc part")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        has_tv = subprocess.run([sys.executable, "-c", "import torchvision.transforms.functional"],
                                env=off_env, capture_output=True).returncode == 0
        stub_env: dict[str, str] = {}
        if not has_tv:
            stub = Path(tmp, "torchvision", "transforms")
            stub.mkdir(parents=True)
            (stub.parent / "__init__.py").write_text("")
            (stub / "__init__.py").write_text("")
            (stub / "functional.py").write_text("def resize(img, size):\n    raise NotImplementedError\n")
            stub_env = {"PYTHONPATH": tmp}
        configs = {"hooks": {**base_env, **stub_env}, "no hooks": {**off_env, **stub_env}}
        if not has_tv:
            configs["hooks, torchvision missing (fallback)"] = base_env
        code = "import hloc.match_dense"
        results: dict[str, dict[str, list[float]]] = {name: {"self": [], "total": [], "cli": []} for name in configs}
        for _ in range(args.hloc_runs):
            for name, env in configs.items():
                times = importtime(["-c", code], env)
                results[name]["self"].append(hloc_self_ms(times))
                results[name]["total"].append(times["hloc.match_dense"][1] / 1000)
                results[name]["cli"].append(wall(["-m", "hloc.match_dense", "--help"], env) * 1000)
        print(f"\n`import hloc.match_dense` (+ match_features, extract_features), median of {args.hloc_runs}"
              f"{'' if has_tv else '; torchvision missing: stand-in on PYTHONPATH for the first two'}:")
        base_self = med(results["no hooks"]["self"])
        base_cli = med(results["no hooks"]["cli"])
        for name, res in results.items():
            print(f"  {name:<38} hloc+gim_plugins self {med(res['self']):6.1f} ms "
                  f"(added {med(res['self']) - base_self:+5.1f}) | cumulative {med(res['total']):7.0f} ms | "
                  f"`python -m hloc.match_dense --help` {med(res['cli']):6.0f} ms "
                  f"(added {med(res['cli']) - base_cli:+5.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
