"""The self-contained HTML page of ``gim view``: data, viewer and links in one file, no server, no network.

The viewer (``viewer.js`` next to this module, our own WebGL code with a 2D-canvas fallback) and the data are
inlined. Positions are quantised to uint16 over the bounding box of what is shown (steps of extent / 65535: 0.07 mm
for a 4 m scene) and colours kept as uint8, both base64-encoded: 9 bytes per point, so 200,000 dense points make a
page of about 2.5 MB. Links to the ZEB report and ``gim video walk`` pictures are relative to the page, so the
folder can be moved or zipped whole.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from gim_plugins.view.content import Content

__all__ = ["FOV_DEG", "build_page", "initial_view", "line_segments"]

FOV_DEG = 50.0
_FRUSTUM_SHARE = 0.12  # frustum depth as a share of the scene radius
_CAMERA_RGB = (255, 90, 60)
_START_YAW_DEG, _START_PITCH_DEG = -20.0, 15.0


def initial_view(content: Content, aspect: float = 4 / 3) -> dict[str, Any]:
    """The starting viewpoint, shared by the page and the PNG: along the cameras' mean orientation, looking at the
    scene's centre from the nearest distance at which 98 % of the shown points fit in the field of view (for an
    image ``aspect`` = width / height)."""
    center, radius = content.center_and_radius()
    if content.cameras:
        rotations = np.stack([c.R for c in content.cameras])
        forward, down = rotations[:, 2].mean(0), rotations[:, 1].mean(0)
    else:
        forward, down = np.array([0.0, 0.0, 1.0]), np.array([0.0, 1.0, 0.0])
    back = -forward / (np.linalg.norm(forward) or 1.0)
    up = -down - np.dot(-down, back) * back
    up /= np.linalg.norm(up) or 1.0
    right = np.cross(up, back)
    # an oblique start (from the upper left of the cameras' view) shows depth, and the cameras beside the scene
    yaw, pitch = math.radians(_START_YAW_DEG), math.radians(_START_PITCH_DEG)
    back = math.cos(pitch) * (math.cos(yaw) * back + math.sin(yaw) * right) + math.sin(pitch) * up
    right = np.cross(up, back)
    right /= np.linalg.norm(right)
    up = np.cross(back, right)
    tangent = math.tan(math.radians(FOV_DEG) / 2)
    shown = [a for a in (content.dense_xyz, content.sparse_xyz) if len(a)]
    cameras = np.stack([c.center for c in content.cameras]) if content.cameras else np.zeros((0, 3))
    # centre the picture on what is shown: 1st–99th percentile of the points and every camera, across the view
    sides = []
    for axis in (right, up):
        ranges = [np.percentile(np.vstack(shown) @ axis, [1, 99])] if shown else []
        ranges += [(cameras @ axis).min(), (cameras @ axis).max()] if len(cameras) else []
        values = np.hstack(ranges) if ranges else np.array([center @ axis])
        sides.append((values.min() + values.max()) / 2 - center @ axis)
    center = center + sides[0] * right + sides[1] * up

    def need(xyz: np.ndarray) -> np.ndarray:  # the eye distance at which each point is inside the field of view
        rel = xyz - center
        return np.maximum(np.abs(rel @ right) / (tangent * aspect), np.abs(rel @ up) / tangent) + rel @ back

    distance = float(np.percentile(need(np.vstack(shown)), 98)) if shown else radius / tangent
    if len(cameras):  # every camera in view
        distance = max(distance, float(need(cameras).max()))
    distance = max(1.05 * distance, 0.1 * radius)
    return {"target": center.tolist(), "distance": float(distance), "radius": float(radius),
            "right": right.tolist(), "up": up.tolist(), "back": back.tolist(), "fov": math.radians(FOV_DEG)}


def line_segments(content: Content) -> tuple[np.ndarray, np.ndarray]:
    """Camera frusta as line segments: ``(2·S, 3)`` float32 end points and their ``(2·S, 3)`` uint8 colours."""
    _, radius = content.center_and_radius()
    segments = []
    for camera in content.cameras:
        c, a, b, d, e = camera.frustum(_FRUSTUM_SHARE * radius)
        segments += [c, a, c, b, c, d, c, e, a, b, b, d, d, e, e, a]
    xyz = np.array(segments, dtype=np.float32).reshape(-1, 3)
    return xyz, np.tile(np.array(_CAMERA_RGB, dtype=np.uint8), (len(xyz), 1))


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def _quantised(xyz: np.ndarray, rgb: np.ndarray, low: np.ndarray, step: np.ndarray) -> dict[str, Any]:
    q = np.clip(np.rint((xyz - low) / step), 0, 65535).astype("<u2")
    return {"n": len(xyz), "pos": _b64(q), "rgb": _b64(rgb.astype(np.uint8))}


def _extras_html(content: Content, page_dir: Path) -> str:
    parts = []
    for title, key in (("ZEB report", "zeb"), ("gim video walk", "walk")):
        files = content.extras.get(key, [])
        if not files:
            continue
        items = []
        for path in files:
            link = html.escape(Path(os.path.relpath(path, page_dir)).as_posix(), quote=True)
            label = html.escape(Path(os.path.relpath(path, content.root)).as_posix())
            if path.suffix.lower() in (".png", ".jpg"):
                items.append(f'<a href="{link}"><img src="{link}" alt="{label}" title="{label}"></a>')
            else:
                items.append(f'<a href="{link}">{label}</a>')
        parts.append(f'<section class="extra" data-kind="{key}"><h2>{title}</h2>{" ".join(items)}</section>')
    return "\n".join(parts)


def _stats_html(content: Content) -> str:
    rows = [("cameras", len(content.cameras)),
            ("sparse points", f"{len(content.sparse_xyz):,} shown of {content.sparse_total:,}"),
            ("dense points", f"{len(content.dense_xyz):,} shown of {content.dense_total:,}")]
    recon, dense = content.summaries.get("reconstruction", {}), content.summaries.get("dense", {})
    if recon:
        rows.append(("registered", f"{recon.get('registered')} of {recon.get('images')} images"))
    if dense:
        method = dense.get("method", "?")
        if method == "triangulate":
            method += f" ({dense.get('matcher')}{', sparse-derived' if dense.get('sparse_derived') else ''})"
        rows.append(("dense method", method))
    return "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)


_STYLE = """
body { margin: 0; font: 14px system-ui, sans-serif; background: #1e1e22; color: #ddd; display: flex; height: 100vh; }
#gim-canvas { flex: 1; min-width: 0; height: 100%; display: block; cursor: grab; touch-action: none; }
aside { width: 320px; overflow-y: auto; padding: 12px; box-sizing: border-box; background: #26262b; }
h1 { font-size: 16px; margin: 0 0 8px; } h2 { font-size: 14px; margin: 16px 0 6px; }
table { border-collapse: collapse; } th { text-align: left; font-weight: normal; color: #999; padding-right: 8px; }
label { display: block; margin: 4px 0; } .extra img { width: 140px; margin: 2px; border: 1px solid #444; }
a { color: #8cf; } #gim-status { color: #9c9; margin-top: 8px; } .help { color: #999; font-size: 12px; }
"""


def build_page(content: Content, page_path: Path, *, title: str | None = None) -> str:
    """The HTML text of the page that will be written at ``page_path`` (links are relative to it)."""
    shown = [a for a in (content.dense_xyz, content.sparse_xyz) if len(a)]
    frusta, frusta_rgb = line_segments(content)
    everything = np.vstack([*shown, frusta]) if shown or len(frusta) else np.zeros((1, 3))
    low, high = everything.min(axis=0), everything.max(axis=0)
    step = np.maximum(high - low, 1e-9) / 65535.0
    data = {"bbox": {"min": low.tolist(), "step": step.tolist()}, "view": initial_view(content),
            "dense": _quantised(content.dense_xyz, content.dense_rgb, low, step),
            "sparse": _quantised(content.sparse_xyz, content.sparse_rgb, low, step),
            "cameras": {"n": len(frusta), "pos": _b64(frusta.astype("<f4")), "rgb": _b64(frusta_rgb)},
            "camera_count": len(content.cameras)}
    script = resources.files("gim_plugins.view").joinpath("viewer.js").read_text(encoding="utf-8")
    name = html.escape(title or content.root.resolve().name)
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    checks = "".join(f'<label><input type="checkbox" id="show-{k}" checked> {k}</label>'
                     for k in ("dense", "sparse", "cameras"))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{name} · gim view</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">
<style>{_STYLE}</style></head>
<body><canvas id="gim-canvas"></canvas>
<aside><h1>{name}</h1><table>{_stats_html(content)}</table>
<h2>Show</h2>{checks}<label>point size <input type="range" id="point-size" min="1" max="8" step="1" value="2"></label>
<div id="gim-status">loading…</div>
<p class="help">drag: orbit · shift-drag or right-drag: pan · wheel: zoom · double-click: reset</p>
{_extras_html(content, page_path.parent)}</aside>
<script type="application/json" id="gim-data">{payload}</script>
<script>{script}</script>
</body></html>
"""
