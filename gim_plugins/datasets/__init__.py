"""Offline real data with ground truth, bundled by scikit-image (no downloads, nothing committed to this repository)."""
