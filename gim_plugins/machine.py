"""Which machine a measurement ran on (standard library only, so benchmarks can say it before importing torch).

Why: the same code is faster or slower from one machine to the next — bfloat16 above all, which is native on some
CPUs and emulated on others — so every benchmark prints the CPU it ran on next to its ratios.
"""

from __future__ import annotations

import os
import platform

__all__ = ["cpu_name"]


def cpu_name(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's model and visible core count, e.g. ``"AMD EPYC 9B14, 2 cores"`` (the platform's processor string
    where ``cpuinfo`` cannot be read)."""
    name = platform.processor() or platform.machine()
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as handle:
            name = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), name)
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores"
