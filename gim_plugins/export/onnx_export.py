"""The export step: a matcher → ONNX graphs + ``manifest.json`` in one directory (``gim export onnx``).

``main(conf, out)`` builds the matcher with its weights, traces each graph of its recipe (:mod:`.recipes`), checks
every graph with ``onnx.checker``, loads it in ONNX Runtime and runs it once on the example inputs (so a graph that
needs a custom operator fails here, not in a user's program), then writes the manifest. Everything is written into
a temporary directory beside ``out`` and moved into place at the end: an export is complete or absent. A rerun into
an existing export directory needs ``overwrite``.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gim_plugins.errors import UserError
from gim_plugins.export.manifest import MANIFEST_NAME, graph_entry, write_manifest
from gim_plugins.export.recipes import ExportRefused, GraphSpec, get_recipe

__all__ = ["DEFAULT_OPSET", "DEFAULT_SIZE", "main"]

log = logging.getLogger(__name__)

DEFAULT_OPSET = 18
"""The opset of the exported graphs (GridSample needs ≥ 16; 18 is the oldest the dynamo exporter writes)."""
DEFAULT_SIZE = (480, 640)
"""``(h, w)`` of the fixed-size graphs when ``size`` is not given."""
SUPPORTED_OPSETS = range(18, 21)


def main(conf: Mapping[str, Any], out: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Export a matcher to ``out``; returns the path of ``manifest.json``.

    Args:
        conf: ``matcher`` (registered name), and optionally ``weights`` (as :func:`load_matcher` takes them),
            ``pretrained`` (False: random weights, for tests), ``matcher_conf`` (options of the matcher),
            ``opset``, ``size`` (``(h, w)`` of fixed-size image inputs) and ``dynamic`` (image height and width as
            dynamic axes where the network allows it).
        out: the export directory (created; must not hold an export unless ``overwrite``).
        overwrite: replace an existing export.

    Raises:
        ExportRefused: the matcher (or ``dynamic`` for it) cannot be exported; the message says which operator or
            what stops it.
        UserError: a bad option, an existing export without ``overwrite``, or the onnx extra not installed.
    """
    name = str(conf["matcher"])
    recipe = get_recipe(name)
    opset = int(conf.get("opset") or DEFAULT_OPSET)
    if opset not in SUPPORTED_OPSETS:
        raise UserError(f"--opset {opset} is not supported; use {SUPPORTED_OPSETS.start}–{SUPPORTED_OPSETS.stop - 1}")
    dynamic = bool(conf.get("dynamic", False))
    if dynamic and recipe.dynamic_refusal:
        raise ExportRefused(f"{name}: --dynamic is not possible: {recipe.dynamic_refusal}")
    size = tuple(conf.get("size") or DEFAULT_SIZE)
    if len(size) != 2 or min(size) < 32:
        raise UserError(f"--size must be WIDTHxHEIGHT with both sides ≥ 32 px, got {size}")
    out = Path(out)
    if (out / MANIFEST_NAME).exists() and not overwrite:
        raise UserError(f"{out} already holds an ONNX export; pass --overwrite to replace it")
    _require_onnx()

    matcher = _build_matcher(name, conf, recipe.fixed_conf)
    specs = recipe.graphs(matcher, (int(size[0]), int(size[1])), dynamic)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    staging.chmod(0o755)  # mkdtemp's 0o700 would make the export private to its writer
    try:
        graphs = {}
        for spec in specs:
            path = staging / f"{spec.role}.onnx"
            _export_graph(spec, path, opset)
            graphs[spec.role] = graph_entry(path, spec.exporter)
        fixed_size = None if dynamic else (int(size[0]), int(size[1]))
        write_manifest(staging, matcher=matcher, graphs=graphs, opset=opset, dynamic=dynamic, size=fixed_size,
                       processing=recipe.processing(matcher, fixed_size), weights=conf.get("weights"))
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    log.info("exported %s to %s", name, out)
    return out / MANIFEST_NAME


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise UserError(f"ONNX export needs the onnx extra ({exc.name} is missing): "
                        "pip install 'gim-plugins[onnx]'") from exc


def _build_matcher(name: str, conf: Mapping[str, Any], fixed: Mapping[str, Any]) -> Any:
    from gim_plugins.matching import load_matcher

    options = {**dict(conf.get("matcher_conf") or {}), **fixed}
    pretrained = bool(conf.get("pretrained", True))
    weights = conf.get("weights") if pretrained else None
    return load_matcher(name, weights=weights, pretrained=pretrained, **options)


def _export_graph(spec: GraphSpec, path: Path, opset: int) -> None:
    """Trace one graph to ``path``, check it with ``onnx.checker`` and run it once in ONNX Runtime."""
    import onnx
    import torch

    spec.module.eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the tracers' notes on constant shapes are expected and documented
        if spec.exporter == "dynamo":
            _export_dynamo(spec, path, opset)
        else:
            torch.onnx.export(spec.module, spec.inputs, str(path), dynamo=False, opset_version=opset,
                              input_names=list(spec.input_names), output_names=list(spec.output_names),
                              dynamic_axes=spec.dynamic_axes or None, do_constant_folding=True)
    _pin_static_output_dims(path, spec, _smoke_run(spec, path))
    onnx.checker.check_model(str(path), full_check=True)
    _smoke_run(spec, path)


def _pin_static_output_dims(path: Path, spec: GraphSpec, outputs: list[Any]) -> None:
    """Write the size of every output axis that is not declared dynamic into the graph's output shape.

    With dynamic image axes, the TorchScript exporter leaves axes symbolic that are fixed by construction
    (SuperPoint's 256 descriptor channels come out as ``Transposedescriptors_dim_1``); the manifest reads shapes from
    the graph, so they are pinned to the traced run's sizes here. Axes named in ``spec.dynamic_axes`` stay symbolic.
    """
    import onnx

    model = onnx.load(str(path))
    changed = False
    for output, value in zip(model.graph.output, outputs):
        declared = spec.dynamic_axes.get(output.name, {})
        for axis, dim in enumerate(output.type.tensor_type.shape.dim):
            if axis not in declared and not dim.HasField("dim_value"):
                dim.dim_value = int(value.shape[axis])  # setting the value clears the oneof's dim_param
                changed = True
    if changed:
        onnx.save(model, str(path))


def _export_dynamo(spec: GraphSpec, path: Path, opset: int) -> None:
    import torch

    dims: dict[str, Any] = {}
    shapes = []
    for name in spec.input_names:
        axes = spec.dynamic_axes.get(name)
        shapes.append({axis: dims.setdefault(label, torch.export.Dim(label)) for axis, label in axes.items()}
                      if axes else None)
    with _quiet(), _quiet_logger("torch.onnx"):
        program = torch.onnx.export(spec.module, spec.inputs, dynamo=True, opset_version=opset,
                                    input_names=list(spec.input_names), output_names=list(spec.output_names),
                                    dynamic_shapes=tuple(shapes), external_data=False)
        assert program is not None
        program.save(str(path))


class _quiet:
    """Silence the dynamo exporter's progress lines, printed to stdout."""

    def __enter__(self) -> None:
        import contextlib

        self._redirect = contextlib.redirect_stdout(io.StringIO())
        self._redirect.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._redirect.__exit__(*exc)  # type: ignore[arg-type]


class _quiet_logger:
    """Raise a logger's level for a block (the dynamo exporter warns about every torchvision operator it skips)."""

    def __init__(self, name: str) -> None:
        self._logger = logging.getLogger(name)

    def __enter__(self) -> None:
        self._level = self._logger.level
        self._logger.setLevel(logging.ERROR)

    def __exit__(self, *exc: object) -> None:
        self._logger.setLevel(self._level)


def _smoke_run(spec: GraphSpec, path: Path) -> list[Any]:
    """Run the graph once on the example inputs in ONNX Runtime; its outputs."""
    from gim_plugins.export.runtime import create_session

    session = create_session(path)
    feeds = {name: tensor.numpy() for name, tensor in zip(spec.input_names, spec.inputs)}
    try:
        return list(session.run(None, feeds))
    except Exception as exc:  # an exported graph that cannot run is a bug of the recipe
        raise RuntimeError(f"{path.name}: the exported graph fails in ONNX Runtime: {exc}") from exc


def refuse_message(name: str) -> str | None:
    """The one-line reason ``name`` cannot be exported, or ``None`` if it can."""
    try:
        get_recipe(name)
    except ExportRefused as exc:
        return str(exc)
    return None
