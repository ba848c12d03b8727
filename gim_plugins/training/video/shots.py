"""Shot boundaries with PySceneDetect, fed frame by frame by the decoder (no second pass over the video).

A label pair must never span a cut: the two frames would show different scenes, and whatever a matcher finds
between them is wrong. :class:`ShotDetector` wraps PySceneDetect's ``ContentDetector`` (HSV difference of
consecutive frames above a threshold) or ``AdaptiveDetector`` (the same score relative to its neighbours, steadier
under fast camera motion), fed with small BGR copies of the decoded frames. A cut at frame ``k`` starts a new shot
at ``k``; shots are ``[start, end)`` frame ranges covering the processed range.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from gim_plugins.atomic import atomic_write_text

__all__ = ["DETECTORS", "ShotDetector", "read_shots", "shots_from_cuts", "write_shots"]

DETECTORS = ("content", "adaptive", "none")


class ShotDetector:
    """Feed consecutive frames with :meth:`feed`, then :meth:`cuts` gives the frames that start a new shot.

    Args:
        method: ``"content"`` (PySceneDetect's ``ContentDetector``), ``"adaptive"`` (``AdaptiveDetector``) or
            ``"none"`` (one shot).
        fps: the video's frame rate (PySceneDetect counts time in frames at this rate).
        threshold: the detector's threshold (``None``: PySceneDetect's default, 27 for content, 3.0 for adaptive).
        min_shot_len: the shortest shot in frames (PySceneDetect's ``min_scene_len``).
    """

    def __init__(self, method: str, fps: float | Fraction, *, threshold: float | None = None,
                 min_shot_len: int = 15) -> None:
        if method not in DETECTORS:
            raise ValueError(f"shot detector must be one of {', '.join(DETECTORS)}, got {method!r}")
        self.method = method
        self.fps = Fraction(fps).limit_denominator(1_000_000)
        self._cuts: list[int] = []
        self._last: int | None = None
        self._detector: Any = None
        if method == "none":
            return
        try:
            import scenedetect
        except ImportError as exc:  # an optional dependency: the [video] extra
            raise ImportError("shot detection needs PySceneDetect: pip install 'gim-plugins[video]' (or "
                              "shot_detector=none)") from exc
        kwargs: dict[str, Any] = {"min_scene_len": int(min_shot_len)}
        if method == "content":
            if threshold is not None:
                kwargs["threshold"] = float(threshold)
            self._detector = scenedetect.ContentDetector(**kwargs)
        else:
            if threshold is not None:
                kwargs["adaptive_threshold"] = float(threshold)
            self._detector = scenedetect.AdaptiveDetector(**kwargs)

    def feed(self, index: int, bgr: np.ndarray) -> None:
        """Process frame ``index`` (``H×W×3`` uint8 BGR); indices must be consecutive."""
        if self._last is not None and index != self._last + 1:
            raise ValueError(f"frames must be fed in order: got {index} after {self._last}")
        self._last = index
        if self._detector is None:
            return
        from scenedetect.common import FrameTimecode

        for cut in self._detector.process_frame(FrameTimecode(index, fps=self.fps), bgr):
            self._cuts.append(int(cut.frame_num))

    def cuts(self) -> list[int]:
        """Frames that start a new shot (after flushing the detector), sorted."""
        if self._detector is not None and self._last is not None:
            from scenedetect.common import FrameTimecode

            for cut in self._detector.post_process(FrameTimecode(self._last, fps=self.fps)):
                self._cuts.append(int(cut.frame_num))
            self._detector = None
        return sorted(set(self._cuts))


def shots_from_cuts(cuts: Sequence[int], start: int, end: int) -> list[list[int]]:
    """Shots ``[[s, e), …]`` covering ``[start, end)``, split at every cut strictly inside it."""
    bounds = [start, *sorted(c for c in set(cuts) if start < c < end), end]
    return [[a, b] for a, b in itertools.pairwise(bounds) if b > a]


def write_shots(path: str | os.PathLike[str], shots: Sequence[Sequence[int]]) -> None:
    """``shot,start,end`` CSV (``end`` exclusive), written atomically."""
    lines = ["shot,start,end"] + [f"{k},{s},{e}" for k, (s, e) in enumerate(shots)]
    atomic_write_text(path, "\n".join(lines) + "\n")


def read_shots(path: str | os.PathLike[str]) -> list[list[int]]:
    """The shots of a file written by :func:`write_shots`."""
    rows = Path(path).read_text().split()[1:]
    return [[int(v) for v in row.split(",")[1:]] for row in rows]
