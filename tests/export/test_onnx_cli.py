"""gim export onnx: refusals (with the operator that stops them), option checks and manifest errors — no tracing."""

from __future__ import annotations

import io
import json

import pytest
import torch

from gim_plugins.cli import main
from gim_plugins.export.manifest import FORMAT, FORMAT_VERSION, ManifestError, file_sha256, read_manifest
from gim_plugins.export.recipes import BLOCKED, ExportRefused, get_recipe
from gim_plugins.matching import load_matcher

pytest.importorskip("onnx", reason="the onnx extra is not installed")
pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")


@pytest.mark.parametrize("name", ["gim_dkm", "gim_roma"])
def test_exception_dense_matchers_are_refused_naming_the_operator(tmp_path, capsys, name):
    status = main(["export", "onnx", name, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert len(err) == 1 and "torch.linalg.inv" in err[0] and name in err[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_feature_the_refusal_names_the_operator_the_exporter_stops_at():
    """The claim of BLOCKED, checked: DKM's and RoMa's GP module alone does not export (matrix inverse)."""
    from gim_plugins.models._arch.gp import GP

    class Wrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gp = GP(gp_dim=16)

        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return self.gp(x, y)

    x, y = torch.randn(1, 8, 4, 4), torch.randn(1, 8, 4, 4)
    with pytest.raises(Exception, match="linalg_inv"):
        torch.onnx.export(Wrapper().eval(), (x, y), io.BytesIO(), dynamo=False, opset_version=18)
    assert all("torch.linalg.inv" in reason for reason in BLOCKED.values())


@pytest.mark.parametrize("name", ["aliked_lightglue", "gim_loftr"])
def test_exception_dynamic_is_refused_where_the_graph_is_fixed_size(tmp_path, capsys, name):
    status = main(["export", "onnx", name, "--out", str(tmp_path / "out"), "--dynamic"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "--dynamic is not possible" in err[0] and "--size" in err[0]


@pytest.mark.parametrize(("args", "message"), [
    (["--opset", "11"], "--opset 11 is not supported"),
    (["--size", "640by480"], "--size must be WIDTHxHEIGHT"),
    (["--size", "16x16"], "both sides ≥ 32 px"),
])
def test_exception_bad_options_are_one_line(tmp_path, capsys, args, message):
    status = main(["export", "onnx", "gim_lightglue", "--out", str(tmp_path / "out"), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and message in err[0]


def test_exception_unknown_matcher():
    with pytest.raises(ExportRefused, match="exportable matchers: aliked_lightglue, gim_lightglue, gim_loftr"):
        get_recipe("root_sift")


def _fake_export(directory, matcher="aliked_lightglue", **changes):
    directory.mkdir(parents=True, exist_ok=True)
    graph = directory / "extractor.onnx"
    graph.write_bytes(b"not really a graph")
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "matcher": matcher, "conf": {},
                "weights": {"state_sha256": "0" * 64}, "image_size": None,
                "graphs": {"extractor": {"file": graph.name, "sha256": file_sha256(graph)}}}
    manifest.update(changes)
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


def test_exception_manifest_problems_are_one_line_user_errors(tmp_path):
    with pytest.raises(ManifestError, match=r"manifest.json not found; export the graphs first: gim export onnx"):
        read_manifest(tmp_path / "nothing")
    with pytest.raises(ManifestError, match=r"holds an export of 'aliked_lightglue', not 'gim_lightglue'"):
        read_manifest(_fake_export(tmp_path / "a"), "gim_lightglue")
    with pytest.raises(ManifestError, match=r"format version 2; this gim-plugins reads version 1"):
        read_manifest(_fake_export(tmp_path / "b", format_version=2))
    changed = _fake_export(tmp_path / "c")
    (changed / "extractor.onnx").write_bytes(b"changed")
    with pytest.raises(ManifestError, match=r"extractor.onnx \(extractor graph\) differs"):
        read_manifest(changed)
    (changed / "extractor.onnx").unlink()
    with pytest.raises(ManifestError, match=r"extractor.onnx \(extractor graph\) is missing"):
        read_manifest(changed)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "manifest.json").write_text("{")
    with pytest.raises(ManifestError, match="not readable JSON"):
        read_manifest(tmp_path / "d")
    assert read_manifest(_fake_export(tmp_path / "e"))["matcher"] == "aliked_lightglue"


def test_exception_load_matcher_backend_arguments(tmp_path):
    with pytest.raises(ValueError, match="needs onnx=DIR"):
        load_matcher("aliked_lightglue", backend="onnxruntime")
    with pytest.raises(ValueError, match="takes no weights"):
        load_matcher("aliked_lightglue", "some.ckpt", backend="onnxruntime", onnx=tmp_path)
    with pytest.raises(ValueError, match="backend must be 'torch' or 'onnxruntime'"):
        load_matcher("aliked_lightglue", backend="tensorrt")
    with pytest.raises(ValueError, match="has no onnxruntime backend"):
        load_matcher("gim_dkm", backend="onnxruntime", onnx=tmp_path)
    with pytest.raises(ManifestError, match="not found"):
        load_matcher("aliked_lightglue", backend="onnxruntime", onnx=tmp_path / "missing")


def test_exception_options_that_differ_from_the_export(tmp_path):
    export = _fake_export(tmp_path / "x", conf={"filter_threshold": 0.1, "flash": True})
    with pytest.raises(KeyError, match=r"filter_threshold=0.5 differs from the exported graphs' filter_threshold=0.1"):
        load_matcher("aliked_lightglue", backend="onnxruntime", onnx=export, filter_threshold=0.5)


def test_feature_export_errors_leave_nothing_half_written(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text("{}")
    status = main(["export", "onnx", "gim_lightglue", "--out", str(out)])
    assert status == 2 and "pass --overwrite" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
