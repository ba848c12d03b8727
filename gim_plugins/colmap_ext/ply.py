"""Coloured point clouds as PLY files, in the layout of COLMAP's ``fused.ply``.

Why here: ``fused.ply`` is COLMAP's dense output (``stereo_fusion``), and the dense-triangulation path of
``gim reconstruct --dense`` writes the same layout, so every viewer that opens COLMAP's file (MeshLab, CloudCompare,
Open3D, our ``gim view``) opens ours. The layout is a binary little-endian ``vertex`` element with float ``x y z``,
optional float ``nx ny nz`` and uchar ``red green blue``. :func:`read_ply` also reads ASCII and big-endian files,
``double`` coordinates and other scalar property types, and ignores properties it does not know (e.g. COLMAP's
``visibility`` lists are not written by COLMAP's PLY writer, but other tools add ``alpha`` or ``intensity``).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gim_plugins.atomic import atomic_write_bytes

__all__ = ["PointCloud", "read_ply", "write_ply"]

_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2", "ushort": "u2",
          "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4", "float": "f4", "float32": "f4",
          "double": "f8", "float64": "f8"}
_FORMATS = {"binary_little_endian": "<", "binary_big_endian": ">", "ascii": "ascii"}


@dataclass(frozen=True, eq=False)
class PointCloud:
    """Points with optional colours and normals.

    Attributes:
        xyz: ``(N, 3)`` float32 positions (units of the model that made them).
        rgb: ``(N, 3)`` uint8 colours, or ``None``.
        normals: ``(N, 3)`` float32 unit normals, or ``None``.
    """

    xyz: np.ndarray
    rgb: np.ndarray | None = None
    normals: np.ndarray | None = None

    def __post_init__(self) -> None:
        xyz = np.ascontiguousarray(self.xyz, dtype=np.float32).reshape(-1, 3)
        object.__setattr__(self, "xyz", xyz)
        for name, dtype in (("rgb", np.uint8), ("normals", np.float32)):
            value = getattr(self, name)
            if value is None:
                continue
            array = np.asarray(value)
            if array.shape != xyz.shape:
                raise ValueError(f"{name}: expected shape {xyz.shape}, got {array.shape}")
            object.__setattr__(self, name, np.ascontiguousarray(array, dtype=dtype))

    def __len__(self) -> int:
        return len(self.xyz)


def write_ply(path: str | os.PathLike[str], cloud: PointCloud) -> Path:
    """Write ``cloud`` as a binary little-endian PLY (COLMAP's ``fused.ply`` layout), atomically; returns ``path``."""
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if cloud.normals is not None:
        fields += [("nx", "<f4"), ("ny", "<f4"), ("nz", "<f4")]
    if cloud.rgb is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    table = np.empty(len(cloud), dtype=fields)
    for axis, name in enumerate("xyz"):
        table[name] = cloud.xyz[:, axis]
    if cloud.normals is not None:
        for axis, name in enumerate(("nx", "ny", "nz")):
            table[name] = cloud.normals[:, axis]
    if cloud.rgb is not None:
        for axis, name in enumerate(("red", "green", "blue")):
            table[name] = cloud.rgb[:, axis]
    names = {"<f4": "float", "u1": "uchar"}
    header = ["ply", "format binary_little_endian 1.0", "comment written by gim-plugins",
              f"element vertex {len(cloud)}"]
    header += [f"property {names[dtype]} {name}" for name, dtype in fields]
    header.append("end_header")
    return atomic_write_bytes(path, ("\n".join(header) + "\n").encode("ascii") + table.tobytes())


def _parse_header(handle: io.BufferedReader, path: Path) -> tuple[str, list[tuple[str, int, list[tuple[str, str]]]]]:
    """``(format, [(element, count, [(property, numpy type or 'list'), …]), …])`` of a PLY header."""
    if handle.readline().strip() != b"ply":
        raise ValueError(f"{path} is not a PLY file (no 'ply' magic line)")
    fmt, elements = None, []
    while True:
        line = handle.readline()
        if not line:
            raise ValueError(f"{path}: PLY header has no end_header line")
        parts = line.decode("ascii", errors="replace").split()
        if not parts or parts[0] in ("comment", "obj_info"):
            continue
        if parts[0] == "end_header":
            break
        if parts[0] == "format" and len(parts) >= 2 and parts[1] in _FORMATS:
            fmt = _FORMATS[parts[1]]
        elif parts[0] == "element" and len(parts) == 3:
            elements.append((parts[1], int(parts[2]), []))
        elif parts[0] == "property" and elements and len(parts) == 3 and parts[1] in _TYPES:
            elements[-1][2].append((parts[2], _TYPES[parts[1]]))
        elif parts[0] == "property" and elements and len(parts) == 5 and parts[1] == "list":
            elements[-1][2].append((parts[4], "list"))
        else:
            raise ValueError(f"{path}: unsupported PLY header line {line.strip()!r}")
    if fmt is None:
        raise ValueError(f"{path}: PLY header has no supported format line")
    return fmt, elements


def read_ply(path: str | os.PathLike[str]) -> PointCloud:
    """Read the ``vertex`` element of a PLY file: positions, and colours and normals when present.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a PLY file, no ``x y z`` vertex properties, a list property before the vertices of a binary
            file, or a truncated file.
    """
    path = Path(path)
    with open(path, "rb") as handle:
        fmt, elements = _parse_header(handle, path)
        body = handle.read()
    if not elements or elements[0][0] != "vertex":
        raise ValueError(f"{path}: the first PLY element must be 'vertex', got {[e[0] for e in elements]}")
    _, count, properties = elements[0]
    names = [name for name, _ in properties]
    if not {"x", "y", "z"} <= set(names):
        raise ValueError(f"{path}: PLY vertices have no x, y, z properties (found {names})")
    if fmt == "ascii":
        rows = body.decode("ascii", errors="replace").split("\n")[:count]
        table = np.loadtxt(rows, dtype=np.float64, ndmin=2) if count else np.zeros((0, len(names)))
        if table.shape != (count, len(names)):
            raise ValueError(f"{path}: expected {count} vertex rows of {len(names)} values, got {table.shape}")
        columns = {name: table[:, i] for i, name in enumerate(names)}
    else:
        if any(dtype == "list" for _, dtype in properties):
            raise ValueError(f"{path}: list properties in binary PLY vertices are not supported")
        dtype = np.dtype([(name, fmt + kind) for name, kind in properties])
        if len(body) < count * dtype.itemsize:
            raise ValueError(f"{path}: truncated PLY file ({len(body)} bytes for {count} vertices of "
                             f"{dtype.itemsize} bytes)")
        table = np.frombuffer(body, dtype=dtype, count=count)
        columns = {name: table[name] for name in names}

    def stack(keys: tuple[str, str, str]) -> np.ndarray | None:
        return np.stack([columns[k] for k in keys], axis=1) if set(keys) <= set(columns) else None

    rgb = stack(("red", "green", "blue"))
    if rgb is None:
        rgb = stack(("r", "g", "b"))
    if rgb is not None:
        rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    return PointCloud(stack(("x", "y", "z")), rgb, stack(("nx", "ny", "nz")))
