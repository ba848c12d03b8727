"""ONNX export of GIM's sparse and semi-dense matchers and the ONNX Runtime backend (the ``onnx`` extra).

* :mod:`.onnx_export` — the export step ``main(conf, out)`` behind ``gim export onnx MATCHER --out DIR``;
* :mod:`.recipes` — what each matcher exports (graphs, example inputs, dynamic axes, processing) and which matchers
  cannot be exported, with the operator that stops them;
* :mod:`.graphs` — the traced wrappers around the PyTorch networks;
* :mod:`.manifest` — ``manifest.json`` beside the graphs (inputs/outputs, processing, hashes, versions);
* :mod:`.runtime` — ``load_matcher(NAME, backend="onnxruntime", onnx=DIR)``.

``onnx`` and ``onnxruntime`` are imported only inside this package, and only when used. See docs/onnx.md.
"""
