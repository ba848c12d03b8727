"""``manifest.json``: everything a program needs to use the exported graphs without reading this package's code.

Written beside the graphs by the export step and read back (and checked) by the ONNX Runtime backend. It holds:

* ``format`` / ``format_version``: what this file is; a reader refuses another version;
* ``matcher``, ``conf`` (the matcher's options as exported), ``weights`` (``id``; ``state_sha256``, a hash of the
  exported tensors; ``files``, the sha256 of each weight file that was loaded from disk);
* ``graphs``: per graph (``extractor`` + ``matcher`` for sparse matchers, ``network`` for GIM-LoFTR) its ``file``,
  ``sha256``, the exporter used, and its ``inputs``/``outputs`` read from the graph itself (name, dtype, shape with
  named dynamic axes) plus ``dynamic_axes``;
* ``image_size`` (``[h, w]`` of fixed-size image inputs, ``null`` when height and width are dynamic), ``opset``;
* ``pixel_convention`` and ``processing`` (pre-processing, thresholds, padding, post-processing in words);
* ``versions`` of the packages that wrote it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gim_plugins.errors import UserError

__all__ = ["FORMAT", "FORMAT_VERSION", "MANIFEST_NAME", "ManifestError", "graph_entry", "read_manifest",
           "write_manifest"]

FORMAT = "gim-plugins-onnx"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"

_ELEM_TYPES = {1: "float32", 2: "uint8", 6: "int32", 7: "int64", 9: "bool", 10: "float16", 11: "float64"}


class ManifestError(ValueError, UserError):
    """A missing, unreadable or mismatching export directory; the message names the file and the fix."""


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _value_info(value: Any) -> dict[str, Any]:
    tensor = value.type.tensor_type
    shape = [dim.dim_param or dim.dim_value if (dim.dim_param or dim.HasField("dim_value")) else None
             for dim in tensor.shape.dim]
    return {"name": value.name, "dtype": _ELEM_TYPES.get(tensor.elem_type, str(tensor.elem_type)), "shape": shape}


def graph_entry(path: Path, exporter: str) -> dict[str, Any]:
    """The manifest entry of one graph file, its inputs and outputs read from the graph."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    inputs = [_value_info(v) for v in model.graph.input]
    outputs = [_value_info(v) for v in model.graph.output]
    dynamic = {v["name"]: {str(axis): dim for axis, dim in enumerate(v["shape"]) if isinstance(dim, str)}
               for v in inputs + outputs}
    return {"file": path.name, "sha256": file_sha256(path), "exporter": exporter,
            "inputs": inputs, "outputs": outputs, "dynamic_axes": {k: v for k, v in dynamic.items() if v}}


def _state_sha256(matcher: Any) -> str:
    digest = hashlib.sha256()
    for key, tensor in matcher.state_dict().items():
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _weight_files(matcher: Any, weights: Any) -> dict[str, str]:
    """sha256 of the weight files the matcher was loaded from (none for state dicts or random weights)."""
    from gim_plugins.weights import resolve_weights

    if matcher.weights_id in ("none", "random") or isinstance(weights, Mapping):
        return {}
    sources = matcher._weight_sources(weights)
    out = {}
    for name, source in sources.items():
        if isinstance(source, Mapping):
            continue
        out[name] = file_sha256(resolve_weights(name, source))
    return out


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    import gim_plugins

    out = {"gim_plugins": gim_plugins.__version__}
    for package in ("torch", "kornia", "onnx", "onnxruntime", "onnxscript"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            pass
    return out


def write_manifest(directory: Path, *, matcher: Any, graphs: Mapping[str, Any], opset: int, dynamic: bool,
                   size: tuple[int, int] | None, processing: Mapping[str, Any], weights: Any) -> Path:
    """Write ``directory/manifest.json`` for an exported matcher."""
    from gim_plugins.conf import to_plain
    from gim_plugins.types import PIXEL_CONVENTION

    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "matcher": matcher.name,
        "conf": to_plain(matcher.conf),
        "weights": {"id": matcher.weights_id, "state_sha256": _state_sha256(matcher),
                    "files": _weight_files(matcher, weights)},
        "opset": opset,
        "dynamic": dynamic,
        "image_size": list(size) if size else None,
        "pixel_convention": {"name": PIXEL_CONVENTION,
                             "meaning": "keypoints (x, y) of MatchResult: the centre of the top-left pixel is (0, 0); "
                                        "see processing for the convention of each graph's own outputs"},
        "graphs": dict(graphs),
        "processing": dict(processing),
        "versions": _versions(),
    }
    path = directory / MANIFEST_NAME
    path.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return path


def read_manifest(directory: str | os.PathLike[str], matcher: str | None = None, *,
                  verify: bool = True) -> dict[str, Any]:
    """Read and check an export directory's manifest.

    Args:
        directory: the directory ``gim export onnx`` wrote.
        matcher: the matcher name the caller expects (``None``: any).
        verify: also check that every graph file exists and has the recorded sha256.

    Raises:
        ManifestError: no manifest, another format or version, another matcher, or a missing or changed graph file.
    """
    directory = Path(directory)
    path = directory / MANIFEST_NAME
    if not path.is_file():
        raise ManifestError(f"{path} not found; export the graphs first: gim export onnx MATCHER --out {directory}")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{path} is not readable JSON ({exc}); export again with --overwrite") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ManifestError(f"{path} is not a gim-plugins ONNX manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ManifestError(f"{path} has format version {manifest.get('format_version')!r}; this gim-plugins reads "
                            f"version {FORMAT_VERSION}: export again with this version (gim export onnx … --overwrite)")
    if matcher is not None and manifest.get("matcher") != matcher:
        raise ManifestError(f"{directory} holds an export of {manifest.get('matcher')!r}, not {matcher!r}; "
                            f"load it as load_matcher({manifest.get('matcher')!r}, backend='onnxruntime', onnx=...)")
    for role, graph in manifest.get("graphs", {}).items():
        file = directory / graph["file"]
        if not file.is_file():
            raise ManifestError(f"{file} ({role} graph) is missing; export again with --overwrite")
        if verify and file_sha256(file) != graph["sha256"]:
            raise ManifestError(f"{file} ({role} graph) differs from the one the manifest records (sha256); "
                                "export again with --overwrite")
    return manifest
