"""Compute precision chosen by the hardware: ``precision="auto"`` runs bfloat16 only where the device executes it
natively, float32 elsewhere.

Why: bfloat16 autocast is a speed option, and only a speed option where the arithmetic units have bf16 instructions.
On a CPU without them every bf16 operation is emulated through conversions, and the networks get slower, not faster
(measured on a Xeon without AVX512-BF16: gim_dkm at GIM's defaults 3.2× slower, gim_loftr at 640×480 3.3× slower
than float32); on a CPU with AVX512-BF16 they got faster. So ``"auto"`` asks the device:

* CPU: bfloat16 when the processor advertises bf16 instructions — x86 ``avx512_bf16`` or ``amx_bf16`` (AMX tiles),
  ARM ``bf16`` — in ``/proc/cpuinfo`` (Linux), or when torch's own CPU capability says AMX/AVX512-BF16
  (``torch.backends.cpu.get_cpu_capability()``) where there is no ``/proc/cpuinfo``;
* CUDA: bfloat16 on compute capability 8.0 and newer (Ampere, Ada, Hopper, Blackwell: bf16 tensor cores), float32
  on older GPUs (Volta/Turing emulate bf16);
* anything else (MPS, …): float32.

:func:`describe_precision` says what ``"auto"`` picks on a device and why (the benchmarks print it). The choice is
made per call from the device the matcher's weights are on, so moving a matcher with ``.to()`` changes it too.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping

import torch

__all__ = ["AUTO", "CPUINFO", "cpu_bf16_flags", "describe_precision", "native_bf16", "resolve_precision"]

AUTO = "auto"
_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
_BF16_ARM_FLAGS = ("bf16",)


CPUINFO = "/proc/cpuinfo"


def cpu_bf16_flags(cpuinfo: str = CPUINFO) -> tuple[str, ...] | None:
    """The bf16-related flags the CPU advertises in ``cpuinfo`` (``None`` when the file is unreadable); the
    machine's own ``/proc/cpuinfo`` is read once per process."""
    return _machine_flags() if cpuinfo == CPUINFO else _read_flags(cpuinfo)


@functools.lru_cache(maxsize=1)
def _machine_flags() -> tuple[str, ...] | None:
    return _read_flags(CPUINFO)


def _read_flags(cpuinfo: str) -> tuple[str, ...] | None:
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return None
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return tuple(sorted(flags & {*_BF16_CPU_FLAGS, *_BF16_ARM_FLAGS}))


def _torch_cpu_capability() -> str:
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        return "unknown"


def native_bf16(device: str | torch.device) -> tuple[bool, str]:
    """Whether ``device`` executes bfloat16 natively, and the evidence in words."""
    device = torch.device(device)
    if os.environ.get("GIM_PLUGINS_NATIVE_BF16") in ("0", "1"):  # an override for tests and odd machines
        forced = os.environ["GIM_PLUGINS_NATIVE_BF16"] == "1"
        return forced, f"GIM_PLUGINS_NATIVE_BF16={int(forced)}"
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(index)
        ok = (major, minor) >= (8, 0)
        return ok, f"CUDA compute capability {major}.{minor} ({'>=' if ok else '<'} 8.0)"
    if device.type == "cpu":
        flags = cpu_bf16_flags()
        if flags is not None:
            return bool(flags), (f"CPU flags {', '.join(flags)}" if flags
                                 else "no avx512_bf16 / amx_bf16 / bf16 CPU flag")
        capability = _torch_cpu_capability()
        ok = "AMX" in capability.upper() or "BF16" in capability.upper()
        return ok, f"torch CPU capability {capability}"
    return False, f"{device.type}: float32 unless asked otherwise"


def resolve_precision(value: str, device: str | torch.device, names: Mapping[str, torch.dtype]) -> torch.dtype:
    """The dtype of a ``precision`` option: ``names[value]``, or for ``"auto"`` bfloat16 where :func:`native_bf16`
    says so, else float32.

    Args:
        value: the option's value (``"auto"`` or a key of ``names``).
        device: where the network runs.
        names: the matcher's spellings, e.g. ``{"fp32": torch.float32, "bf16": torch.bfloat16}``.

    Raises:
        ValueError: an unknown value.
    """
    if value == AUTO:
        return torch.bfloat16 if native_bf16(device)[0] else torch.float32
    try:
        return names[value]
    except KeyError:
        raise ValueError(f"precision must be {AUTO!r} or one of {', '.join(names)}, got {value!r}") from None


def describe_precision(device: str | torch.device) -> str:
    """What ``precision="auto"`` picks on ``device`` and why, e.g. ``"auto → float32 (no avx512_bf16 … flag)"``."""
    ok, why = native_bf16(device)
    return f"auto → {'bfloat16' if ok else 'float32'} on {torch.device(device)} ({why})"
