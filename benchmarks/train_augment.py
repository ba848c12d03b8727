"""Training augmentation throughput: GIM's pixel augmentation (Dark augmentation + image-1 perspective warp) per
sample in the data worker, against the same work batch-wide on a device (``finish``), at GIM's image sizes.

Baseline: the worker path (one sample at a time on the CPU, as GIM's loaders do it). Each configuration prints
milliseconds per sample and its speed relative to the baseline measured in the same run, and the machine. The
geometric part (resize, crop, label warping and filtering, drawn in the worker) is timed separately for context.
Dark augmentation is drawn with GIM's probabilities (``--every-op``: every image gets every op, the worst case).

    python benchmarks/train_augment.py [--size 840 840] [--batch 8] [--samples 16] [--device cuda] [--every-op]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from gim_plugins.machine import cpu_name


def machine(device: str) -> str:
    cpu = cpu_name()
    cpu += f", torch threads {torch.get_num_threads()}"
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{cpu}; GPU {torch.cuda.get_device_name(torch.device(device))}"
    return cpu


def frames(width: int = 1920, height: int = 1080, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A textured 1080p pair related by a homography, with 4000 exact labels (GIM's frame size)."""
    import cv2
    from skimage import data

    image0 = cv2.resize(data.astronaut(), (width, height), interpolation=cv2.INTER_LINEAR)
    H = np.array([[0.95, 0.05, 40.0], [-0.04, 0.98, 20.0], [1e-5, -2e-5, 1.0]])
    image1 = cv2.warpPerspective(image0, H, (width, height))
    rng = np.random.default_rng(seed)
    p0 = rng.uniform([100, 100], [width - 100, height - 100], (4000, 2))
    q = np.c_[p0, np.ones(len(p0))] @ H.T
    return image0, image1, np.concatenate([p0, q[:, :2] / q[:, 2:]], axis=1)


def pending_samples(size: tuple[int, int], count: int, every_op: bool) -> tuple[list[dict], float]:
    """``count`` pending samples and the seconds per sample the geometric part took in the worker."""
    from gim_plugins.training.data import darkaug
    from gim_plugins.training.data.augment import PairAugmenter
    from gim_plugins.training.data.base import make_sample

    image0, image1, labels = frames()
    augmenter = PairAugmenter({"image_size": size, "perspective_prob": 1.0})
    dark = dict(darkaug.DARK)
    if every_op:
        dark.update(p_image=1.0, p_compose=1.0)
        for key in ("brightness_contrast", "blur", "motion_blur", "gamma", "hsv"):
            dark[key] = {**darkaug.DARK[key], "p": 1.0}
    samples, start = [], time.perf_counter()
    for seed in range(count):
        rng = np.random.default_rng(seed)
        plan = augmenter.plan(rng, image0.shape[:2], image1.shape[:2], labels)
        plan = type(plan)(plan.plan0, plan.plan1, plan.H1, plan.labels, plan.attempts,
                          darkaug.sample_dark(rng, min(plan.plan0.scale), dark),
                          darkaug.sample_dark(rng, min(plan.plan1.scale), dark))
        samples.append(make_sample(plan, augmenter.canvas, image0, image1, rng=rng, max_labels=2048,
                                   dataset="walk", scene="bench", pair=("0", "1"), zs=True, gt=False, pending=True))
    return samples, (time.perf_counter() - start) / count


def timed(run, repeats: int, sync: str | None = None) -> float:
    run()  # warm-up (kernel caches, CUDA context)
    if sync:
        torch.cuda.synchronize(sync)
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    if sync:
        torch.cuda.synchronize(sync)
    return (time.perf_counter() - start) / repeats


def main(argv: list[str] | None = None) -> None:
    from gim_plugins.training.data import collate, finish, to_device

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=(840, 840), metavar=("W", "H"))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--every-op", action="store_true", help="darken every image with every op (worst case)")
    args = parser.parse_args(argv)
    samples, geometry = pending_samples(tuple(args.size), args.samples, args.every_op)
    print(f"machine: {machine(args.device)}")
    print(f"canvas {args.size[0]}×{args.size[1]}, {args.samples} samples, batch {args.batch}; geometric part in the "
          f"worker: {1000 * geometry:.1f} ms/sample")

    def per_sample() -> None:
        for sample in samples:
            finish(collate([sample]))

    batches = [collate(samples[i:i + args.batch]) for i in range(0, len(samples), args.batch)]

    def batched(device: str) -> None:
        for batch in batches:
            finish(to_device(batch, device))

    baseline = timed(per_sample, args.repeats) / len(samples)
    rows = [("worker path, per sample, cpu", baseline)]
    rows.append((f"batch {args.batch}, cpu", timed(lambda: batched("cpu"), args.repeats) / len(samples)))
    if args.device != "cpu":
        on_device = [to_device(b, args.device) for b in batches]

        def resident() -> None:
            for batch in on_device:
                finish(batch)

        sync = args.device if args.device.startswith("cuda") else None
        rows.append((f"batch {args.batch}, {args.device} (with transfer)",
                     timed(lambda: batched(args.device), args.repeats, sync) / len(samples)))
        rows.append((f"batch {args.batch}, {args.device} (batch already there)",
                     timed(resident, args.repeats, sync) / len(samples)))
    print(f"{'path':45} {'ms/sample':>10} {'speed vs worker':>16}")
    for name, seconds in rows:
        print(f"{name:45} {1000 * seconds:10.2f} {baseline / seconds:15.2f}×")


if __name__ == "__main__":
    main()
