"""ZEB-mini: a small ZEB-format benchmark built offline from real photos with exact ground truth.

The real ZEB (46k pairs) cannot be downloaded on every machine; ZEB-mini runs the whole chain — reader, matcher,
pose protocol, dumps, report — in minutes on a CPU. ``write_mini(out)`` creates a ZEB folder with two subsets in
the official layout (``-`` separator, PNG images, one 38-token pair file per pair):

``miniscene/`` (subset ``MiniScene``, scene ``motorcycle``): real and rendered images with exact 3D poses.
    * ``left``/``right``: the real Middlebury 2014 motorcycle stereo pair bundled with scikit-image
      (:mod:`gim_plugins.datasets.motorcycle`): calibrated intrinsics, ``R = I``, ``t = (−0.193 m, 0, 0)``.
    * ``render_NN``: views rendered with exact poses from the real left image and its ground-truth depth
      (:func:`gim_plugins.datasets.scene.render_motorcycle_scene`, shared with the COLMAP work), with per-view
      exposure/colour/blur/noise changes. Pairs: the real pair, plus pairs with covisibility ≥
      :data:`MIN_COVISIBILITY` both ways, ``max_scene_pairs`` in all, spread over the covisibility range. Without
      that module (older installs) only the real pair is written, with a note.

``minihomography/`` (subset ``MiniHomography``): known-homography pairs of real photos (scikit-image's bundled
    astronaut, coffee, chelsea, rocket, camera, immunohistochemistry).

How a homography pair gets a pose (documented choice). ZEB's ground truth is ``K0, K1, T_0to1`` and its metric is
the essential matrix, which a *single* plane does not determine: a planar homography has two physically valid
decompositions, so RANSAC picks the wrong pose about half the time whatever the matcher. Each photo is therefore
printed on a card **folded along its vertical centre line** (two planes, dihedral angle 180° − 2·:data:`FOLD_DEG`),
placed at the world origin and rendered by two pinhole cameras with exact ``K`` and pose. Each half of image 0 maps
to image 1 by an exact, known homography (stored in ``mini.json`` with the half's outline), and the two planes make
the relative pose well-posed, so GIM's protocol applies unchanged. Views: 640×480, ``f = 560`` px, principal point at
the image centre (package convention: centre of the top-left pixel at (0, 0)); image 0 is near-frontal, image 1 is
seen from 15°, 30° and 45° away (with roll and scale changes growing with the level). Rendering samples the photo
with bilinear interpolation at 2× resolution and box-filters down (no aliasing); the background is black.

Covisibility: the share of image-0 pixels whose scene point is visible in image 1 (``covisible0``), and vice versa.
Everything is written to a temporary folder first and renamed into place, so ``out`` is either complete or absent.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "FOLD_DEG",
    "MINI_FORMAT",
    "PHOTOS",
    "FoldedCard",
    "MiniPair",
    "MiniSummary",
    "View",
    "pair_line",
    "write_mini",
]

MINI_FORMAT = "gim_plugins.zeb-mini/1"
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "immunohistochemistry")
FOLD_DEG = 30.0
"""Each card half is tilted this much towards the camera (a valley fold)."""
IMAGE_SIZE = (480, 640)
FOCAL = 560.0
CARD_WIDTH = 1.0  # metres
DISTANCE = 1.5  # metres from the card centre to camera 0
LEVELS = ((15.0, 4.0, 1.0), (30.0, 10.0, 0.85), (45.0, 20.0, 0.75))
"""Homography pair levels: (viewpoint change in degrees, roll in degrees, distance factor of view 1)."""
MIN_COVISIBILITY = 0.2
SCENE = "motorcycle"  # MiniScene's scene id
SUPERSAMPLE = 2


@dataclass(frozen=True)
class View:
    """A pinhole view: ``x ~ K (R X + t)``, package pixel convention."""

    K: np.ndarray
    R: np.ndarray
    t: np.ndarray


def relative_transform(view0: View, view1: View) -> np.ndarray:
    """``(4, 4)`` ``T_0to1`` (camera-0 → camera-1 coordinates) of two world→camera poses."""
    T = np.eye(4)
    T[:3, :3] = view1.R @ view0.R.T
    T[:3, 3] = view1.t - T[:3, :3] @ view0.t
    return T


def look_at(center: np.ndarray, target: np.ndarray, roll_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """World→camera ``(R, t)`` of a camera at ``center`` looking at ``target`` (x right, y down, z forward)."""
    forward = target - center
    forward = forward / np.linalg.norm(forward)
    right = np.cross(np.array([0.0, 1.0, 0.0]), forward)  # world y points down
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    R = np.stack([right, down, forward])
    roll = math.radians(roll_deg)
    c, s = math.cos(roll), math.sin(roll)
    R = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ R
    return R, -R @ center


def _intrinsics(size: tuple[int, int], focal: float) -> np.ndarray:
    height, width = size
    return np.array([[focal, 0.0, (width - 1) / 2], [0.0, focal, (height - 1) / 2], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class FoldedCard:
    """A photo on a card folded along its vertical centre line, centred at the world origin, facing −z.

    Texture pixel ``(u, v)`` (centre convention) lies at ``d = (u − u_f)·s`` from the fold ``u_f = (w − 1)/2``:
    ``X = (d·cos α, (v − v_c)·s, −|d|·sin α)`` — both halves come towards a camera on the −z side (a valley).
    """

    texture: np.ndarray
    fold_deg: float = FOLD_DEG
    width_m: float = CARD_WIDTH

    @property
    def scale(self) -> float:
        return self.width_m / self.texture.shape[1]

    def half_matrix(self, side: int) -> np.ndarray:
        """``(3, 3)`` M with ``X = M @ [u, v, 1]`` on half ``side`` (−1: left, +1: right)."""
        h, w = self.texture.shape[:2]
        alpha, s = math.radians(self.fold_deg), self.scale
        u_f, v_c = (w - 1) / 2, (h - 1) / 2
        a = np.array([math.cos(alpha), 0.0, -side * math.sin(alpha)]) * s  # direction of increasing u
        b = np.array([0.0, s, 0.0])
        return np.stack([a, b, -u_f * a - v_c * b], axis=1)

    def half_bounds(self, side: int) -> tuple[float, float]:
        """Texture ``u`` range of a half (pixel areas, centre convention)."""
        w = self.texture.shape[1]
        u_f = (w - 1) / 2
        return (-0.5, u_f) if side < 0 else (u_f, w - 0.5)

    def homography(self, view: View, side: int) -> np.ndarray:
        """Texture pixel → image pixel homography of one half in ``view``."""
        A = view.R @ self.half_matrix(side)
        A[:, 2] += view.t
        return view.K @ A

    def render(self, view: View, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(image uint8 RGB, depth (inf = background), side (−1/+1, 0 = background))`` of the card in ``view``."""
        import cv2

        height, width = size
        ss = SUPERSAMPLE
        K_ss = view.K.copy()
        K_ss[:2, :2] *= ss
        K_ss[:2, 2] = K_ss[:2, 2] * ss + (ss - 1) / 2  # pixel i at 1× covers ss pixels centred at ss·i + (ss−1)/2
        big_view = View(K_ss, view.R, view.t)
        big = (height * ss, width * ss)
        _, side_map, (map_u, map_v) = self._surface(big_view, big)
        texture = self.texture if self.texture.ndim == 3 else np.repeat(self.texture[..., None], 3, axis=2)
        colour = cv2.remap(texture, map_u, map_v, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        colour[side_map == 0] = 0
        image = cv2.resize(colour, (width, height), interpolation=cv2.INTER_AREA)
        depth_small, side_small, _ = self._surface(view, size)
        return image, depth_small, side_small

    def _surface(self, view: View, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...]]:
        height, width = size
        h_tex = self.texture.shape[0]
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
        pixels = np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)])
        depth = np.full(xs.size, np.inf)
        side_map = np.zeros(xs.size, dtype=np.int8)
        map_u = np.full(xs.size, -1.0)
        map_v = np.full(xs.size, -1.0)
        for side in (-1, 1):
            A = view.R @ self.half_matrix(side)
            A[:, 2] += view.t
            q = np.linalg.inv(view.K @ A) @ pixels  # (solve with 3×N right-hand sides is far slower)
            with np.errstate(divide="ignore", invalid="ignore"):
                u, v = q[0] / q[2], q[1] / q[2]
                z = (A @ np.stack([u, v, np.ones_like(u)]))[2]
            lo, hi = self.half_bounds(side)
            hit = (u >= lo) & (u <= hi) & (v >= -0.5) & (v <= h_tex - 0.5) & (z > 0) & np.isfinite(z)
            closer = hit & (z < depth)
            depth[closer], side_map[closer] = z[closer], side
            map_u[closer], map_v[closer] = u[closer], v[closer]
        shape = (height, width)
        return (depth.reshape(shape), side_map.reshape(shape),
                (map_u.reshape(shape).astype(np.float32), map_v.reshape(shape).astype(np.float32)))


def _card_view(rng: np.random.Generator, yaw: float, pitch: float, roll: float, distance: float,
               size: tuple[int, int] = IMAGE_SIZE, focal: float = FOCAL) -> View:
    yaw_r, pitch_r = math.radians(yaw), math.radians(pitch)
    center = distance * np.array([math.sin(yaw_r) * math.cos(pitch_r), math.sin(pitch_r),
                                  -math.cos(yaw_r) * math.cos(pitch_r)])
    target = np.array([*rng.uniform(-0.04, 0.04, 2), 0.0])
    R, t = look_at(center, target, roll)
    return View(_intrinsics(size, focal), R, t)


def _backproject(view: View, depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World points ``(N, 3)`` of the pixels with finite depth, and their flat indices."""
    height, width = depth.shape
    ys, xs = np.mgrid[0:height, 0:width]
    valid = np.isfinite(depth).ravel()
    rays = np.linalg.inv(view.K) @ np.stack([xs.ravel()[valid], ys.ravel()[valid], np.ones(valid.sum())])
    cam = rays * depth.ravel()[valid]
    return (view.R.T @ (cam - view.t[:, None])).T, np.flatnonzero(valid)


def covisibility(view0: View, depth0: np.ndarray, view1: View, depth1: np.ndarray, tol: float = 0.01) -> float:
    """Share of image-0 pixels whose scene point is seen in image 1 (inside it, and not occluded: its depth agrees
    with image 1's depth map within ``tol`` relative)."""
    points, _ = _backproject(view0, depth0)
    if len(points) == 0:
        return 0.0
    cam = points @ view1.R.T + view1.t
    z = cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        proj = (cam @ view1.K.T)[:, :2] / z[:, None]
    col, row = np.round(proj[:, 0]), np.round(proj[:, 1])
    height, width = depth1.shape
    inside = (z > 0) & (col >= 0) & (col < width) & (row >= 0) & (row < height)
    seen = np.zeros(len(points), dtype=bool)
    ci, ri = col[inside].astype(int), row[inside].astype(int)
    seen[inside] = np.abs(depth1[ri, ci] - z[inside]) <= tol * z[inside]
    return float(seen.sum() / depth0.size)


@dataclass(frozen=True)
class MiniPair:
    """One ZEB-mini pair before it is written."""

    scene: str
    name0: str
    name1: str
    K0: np.ndarray
    K1: np.ndarray
    T_0to1: np.ndarray
    covisible0: float
    covisible1: float
    extra: dict[str, Any] = field(default_factory=dict)


def _number(value: float) -> str:
    return repr(float(value))


def pair_line(pair: MiniPair) -> str:
    """The 38-token first line of a pair file."""
    numbers = [pair.covisible0, pair.covisible1, *np.asarray(pair.K0).ravel(), *np.asarray(pair.K1).ravel(),
               *np.asarray(pair.T_0to1).ravel()]
    return " ".join([pair.name0, pair.name1, *map(_number, numbers)])


def _photo(name: str) -> np.ndarray:
    import skimage.data

    image = getattr(skimage.data, name)()
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3])


def homography_pairs(images: dict[str, np.ndarray], photos: Sequence[str] = PHOTOS, seed: int = 0, *,
                     size: tuple[int, int] = IMAGE_SIZE, focal: float = FOCAL) -> list[MiniPair]:
    """Render the folded-card views of each photo into ``images`` (``{stem: RGB}``) and return the pairs.

    ``size`` (H, W) and ``focal`` (px) set the cameras (tests use small images).
    """
    pairs = []
    for number, name in enumerate(photos):
        rng = np.random.default_rng([seed, number])
        card = FoldedCard(_photo(name))
        yaw0, pitch0 = rng.uniform(-5, 5, 2)
        view0 = _card_view(rng, yaw0, pitch0, rng.uniform(-3, 3), DISTANCE, size, focal)
        image0, depth0, _ = card.render(view0, size)
        images[f"{name}-v0"] = image0
        for level, (change, roll, factor) in enumerate(LEVELS, start=1):
            direction = rng.uniform(0, 2 * math.pi)
            yaw = yaw0 + change * math.cos(direction)
            pitch = float(np.clip(pitch0 + 0.6 * change * math.sin(direction), -35, 35))
            view1 = _card_view(rng, yaw, pitch, rng.choice([-1, 1]) * roll, DISTANCE * factor, size, focal)
            image1, depth1, _ = card.render(view1, size)
            images[f"{name}-v{level}"] = image1
            H = {side: card.homography(view1, s) @ np.linalg.inv(card.homography(view0, s))
                 for side, s in (("left", -1), ("right", 1))}
            pairs.append(MiniPair(
                name, "v0", f"v{level}", view0.K, view1.K, relative_transform(view0, view1),
                covisibility(view0, depth0, view1, depth1), covisibility(view1, depth1, view0, depth0),
                {"homographies_0to1": {k: (v / v[2, 2]).tolist() for k, v in H.items()},
                 "outline0": {k: _half_outline(card, view0, s).tolist() for k, s in (("left", -1), ("right", 1))}}))
    return pairs


def _half_outline(card: FoldedCard, view: View, side: int) -> np.ndarray:
    """The four image corners of a card half (image 0 pixels), to tell which homography applies where."""
    lo, hi = card.half_bounds(side)
    h = card.texture.shape[0]
    corners = np.array([[lo, -0.5, 1], [hi, -0.5, 1], [hi, h - 0.5, 1], [lo, h - 0.5, 1]]).T
    projected = card.homography(view, side) @ corners
    return (projected[:2] / projected[2]).T


def middlebury_pair(images: dict[str, np.ndarray]) -> MiniPair:
    """The real motorcycle stereo pair alone: calibrated K, ``R = I``, ``t = (−B, 0, 0)`` in metres (used when the
    rendered scene is not available)."""
    from gim_plugins.datasets.motorcycle import CALIBRATION, load_disparity, paths
    from gim_plugins.io import read_image

    files = paths()
    left, right = read_image(files["left"]), read_image(files["right"])
    images["motorcycle-left"], images["motorcycle-right"] = left[..., :3], right[..., :3]
    T = np.eye(4)
    T[0, 3] = -CALIBRATION.baseline_mm / 1000.0
    disparity = load_disparity()
    width = disparity.shape[1]
    xs = np.arange(width)[None, :] - disparity  # x_right = x_left − d
    seen = np.isfinite(disparity) & (xs >= -0.5) & (xs <= width - 0.5)
    share = float(seen.sum() / disparity.size)
    return MiniPair(SCENE, "left", "right", CALIBRATION.K("left"), CALIBRATION.K("right"), T, share, share)


def rendered_pairs(images: dict[str, np.ndarray], num_views: int, seed: int, max_pairs: int) -> list[MiniPair] | None:
    """Pairs among the real left/right photos and the rendered views of the motorcycle scene, or ``None`` when
    :mod:`gim_plugins.datasets.scene` is absent.

    The real pair is always included; the others are the pairs with covisibility ≥ :data:`MIN_COVISIBILITY` both
    ways, thinned to ``max_pairs`` in all spread evenly over the covisibility range.
    """
    try:
        from gim_plugins.datasets import scene as scene_module
    except ImportError:
        return None
    views = scene_module.render_motorcycle_scene(num_views, seed=seed, include_real=True)
    names = {v.name: Path(v.name).stem for v in views}
    cams = {v.name: View(np.asarray(v.K, float), np.asarray(v.R, float), np.asarray(v.t, float)) for v in views}
    depth = {v.name: np.asarray(v.depth, float) for v in views if v.depth is not None}
    for v in views:
        images[f"{SCENE}-{names[v.name]}"] = np.asarray(v.image)[..., :3]
    real: list[MiniPair] = []
    candidates: list[MiniPair] = []
    for i, a in enumerate(views):
        for b in views[i + 1 :]:
            if a.name not in depth or b.name not in depth:
                continue
            c0 = covisibility(cams[a.name], depth[a.name], cams[b.name], depth[b.name])
            c1 = covisibility(cams[b.name], depth[b.name], cams[a.name], depth[a.name])
            pair = MiniPair(SCENE, names[a.name], names[b.name], cams[a.name].K, cams[b.name].K,
                            relative_transform(cams[a.name], cams[b.name]), c0, c1)
            if {pair.name0, pair.name1} == {"left", "right"}:
                real.append(pair)
            elif min(c0, c1) >= MIN_COVISIBILITY:
                candidates.append(pair)
    candidates.sort(key=lambda p: (min(p.covisible0, p.covisible1), p.name0, p.name1))
    budget = max(max_pairs - len(real), 0)
    if len(candidates) > budget:
        keep = np.unique(np.round(np.linspace(0, len(candidates) - 1, budget)).astype(int)) if budget else []
        candidates = [candidates[i] for i in keep]
    return real + candidates


@dataclass
class MiniSummary:
    """What :func:`write_mini` wrote."""

    path: Path
    pairs: dict[str, int]
    notes: list[str]
    created: bool

    def lines(self) -> list[str]:
        state = "wrote" if self.created else "already present:"
        counts = ", ".join(f"{k} {v} pairs" for k, v in self.pairs.items())
        return [f"{state} ZEB-mini at {self.path} ({counts})", *self.notes]


def _write_png(path: Path, image: np.ndarray) -> None:
    import cv2

    if not cv2.imwrite(str(path), cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write {path}")


def _write_subset(root: Path, folder: str, pairs: Sequence[MiniPair], images: dict[str, np.ndarray]) -> None:
    directory = root / folder
    directory.mkdir(parents=True)
    for stem, image in images.items():
        _write_png(directory / f"{stem}.png", image)
    for pair in pairs:
        (directory / f"{pair.scene}-{pair.name0}-{pair.name1}.txt").write_text(pair_line(pair) + "\n")


def write_mini(out: str | os.PathLike[str], *, num_views: int = 12, seed: int = 0, max_scene_pairs: int = 30,
               photos: Sequence[str] = PHOTOS, include_rendered: bool = True, overwrite: bool = False,
               progress: Callable[[str], None] | None = None) -> MiniSummary:
    """Write ZEB-mini into ``out`` (a ZEB folder: ``out/miniscene``, ``out/minihomography``, ``out/mini.json``).

    ``include_rendered=False`` leaves out the rendered motorcycle views (tests; the rendering takes a while). An
    existing ZEB-mini written with the same parameters is kept (idempotent); anything else already at ``out`` is an
    error unless ``overwrite``.

    Raises:
        FileExistsError: ``out`` exists and is not the same ZEB-mini.
    """
    out = Path(out)
    params = {"format": MINI_FORMAT, "num_views": num_views, "seed": seed, "max_scene_pairs": max_scene_pairs,
              "photos": list(photos), "rendered": include_rendered, "fold_deg": FOLD_DEG,
              "image_size": list(IMAGE_SIZE), "focal": FOCAL}
    manifest = out / "mini.json"
    if out.exists() and not overwrite:
        if manifest.is_file():
            existing = json.loads(manifest.read_text())
            if existing.get("params") == params:
                return MiniSummary(out, existing.get("pairs", {}), existing.get("notes", []), created=False)
        raise FileExistsError(f"{out} exists and is not a ZEB-mini with these parameters; pass --overwrite")
    say = progress or (lambda _: None)
    notes: list[str] = []
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        scene_images: dict[str, np.ndarray] = {}
        say("rendering the motorcycle scene")
        rendered = rendered_pairs(scene_images, num_views, seed, max_scene_pairs) if include_rendered else None
        if rendered is None:
            scene_images.clear()
            scene_pairs = [middlebury_pair(scene_images)]
            if include_rendered:
                notes.append("note: gim_plugins.datasets.scene is not installed; MiniScene holds only the real "
                             "Middlebury pair")
        else:
            scene_pairs = rendered
        say("rendering the folded photo cards")
        card_images: dict[str, np.ndarray] = {}
        card_pairs = homography_pairs(card_images, photos, seed)
        _write_subset(tmp, "miniscene", scene_pairs, scene_images)
        _write_subset(tmp, "minihomography", card_pairs, card_images)
        counts = {"MiniScene": len(scene_pairs), "MiniHomography": len(card_pairs)}
        meta = {"params": params, "pairs": counts, "notes": notes, "rendered_scene": rendered is not None,
                "homographies": {f"{p.scene}-{p.name0}-{p.name1}": p.extra for p in card_pairs}}
        (tmp / "mini.json").write_text(json.dumps(meta, indent=1) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return MiniSummary(out, counts, notes, created=True)
