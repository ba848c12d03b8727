"""The peak memory a ZEB run records with every pair (resident set, and torch's CUDA peak on GPUs)."""

from __future__ import annotations

import sys

__all__ = ["PeakMemory"]


class PeakMemory:
    """Peak memory of this process since :meth:`reset`: resident set (Linux ``VmHWM``, reset through
    ``/proc/self/clear_refs``; elsewhere the lifetime ``ru_maxrss``) and, on CUDA, torch's peak allocation."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")
        self.device = device

    def reset(self) -> None:
        """Start measuring from now (the resident-set peak only where the kernel allows resetting it)."""
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
        except OSError:
            pass

    def read(self) -> dict[str, float]:
        """``{"rss": MB}`` and, on CUDA, ``"cuda": MB``."""
        peak: dict[str, float] = {"rss": _peak_rss_mb()}
        if self.cuda:
            import torch

            peak["cuda"] = torch.cuda.max_memory_allocated(self.device) / 2**20
        return peak


def _peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20
