"""The session-wide ONNX exports of this folder's tests (defined in ``onnx_fixtures``)."""

from onnx_fixtures import aliked_export, glg_export, loftr_export  # noqa: F401
