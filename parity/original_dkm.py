"""Access to GIM's original DKMv3 code (from the ``imcui`` wheel) for parity tests and benchmarks.

The original code is never part of gim-plugins; it is imported from an installed ``imcui`` package when present, in
a separate environment because it needs torchvision, which gim-plugins never depends on (the DKMv3/RoMa recipe of
``parity/README.md``).

Two adjustments make the original runnable here without changing its numbers:

* its GP calls a batched ``torch.linalg.inv``, which crashes on some oneMKL CPUs for batch ≥ 2 and n ≥ 513 with
  more than one thread; :func:`looped_inverse` replaces it, while the original runs, by a per-matrix loop (the same
  LU per matrix);
* ``networks/dkm/utils/utils.py`` touches CUDA at import when CUDA is available (harmless, left as is).
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

SETUP_HINT = (
    "the original GIM code is not importable: create a separate venv with `pip install torch==2.14.1 "
    "torchvision==0.29.1`, `pip install --no-deps imcui==0.1.3`, `pip install einops yacs omegaconf joblib loguru "
    "scipy 'kornia>=0.9' opencv-python h5py tqdm matplotlib scikit-image pytest` and `pip install --no-deps -e .`, "
    "then run the test with that venv's python (see parity/README.md)"
)


def gim_root() -> Path | None:
    """``<site-packages>/imcui/third_party/gim`` when imcui and torchvision are installed, else None."""
    try:
        spec = importlib.util.find_spec("imcui")
        has_tv = importlib.util.find_spec("torchvision") is not None
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations or not has_tv:
        return None
    root = Path(next(iter(spec.submodule_search_locations))) / "third_party" / "gim"
    return root if (root / "networks" / "dkm").is_dir() else None


def _inverse_loop(original: Any) -> Any:
    def inverse(matrix: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if matrix.ndim <= 2 or matrix.shape[0] <= 1:
            return original(matrix, *args, **kwargs)
        flat = matrix.reshape(-1, *matrix.shape[-2:])
        return torch.stack([original(m, *args, **kwargs) for m in flat]).reshape(matrix.shape)

    return inverse


@contextlib.contextmanager
def looped_inverse() -> Iterator[None]:
    """Run the original with ``torch.linalg.inv`` looped per matrix (see the module docstring)."""
    original = torch.linalg.inv
    torch.linalg.inv = _inverse_loop(original)
    try:
        yield
    finally:
        torch.linalg.inv = original


def build_original(h: int, w: int, upsample: bool) -> torch.nn.Module:
    """The original ``DKMv3(None, h, w, upsample_preds=upsample)`` with its default random initialisation."""
    root = gim_root()
    if root is None:
        raise ImportError(SETUP_HINT)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from networks.dkm.models.model_zoo.DKMv3 import DKMv3  # type: ignore[import-not-found]

    model = DKMv3(None, h, w, upsample_preds=upsample)
    return model.eval()


def randomize_batchnorm(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Give every BatchNorm non-trivial running statistics and affine parameters (default init is the identity)."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
                m.running_var.copy_(0.5 + torch.rand(n, generator=generator))
                m.weight.copy_(1 + 0.1 * torch.randn(n, generator=generator))
                m.bias.copy_(0.1 * torch.randn(n, generator=generator))


def parity_inputs(height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two smooth seeded random images with a near-black corner (exercises the black-pixel mask)."""
    gen = torch.Generator().manual_seed(2)
    images = []
    for _ in range(2):
        coarse = torch.rand(1, 3, height // 8, width // 8, generator=gen)
        image = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
        image[..., : height // 6, : width // 5] = 0.01
        images.append(image)
    return images[0], images[1]
