"""The machine line benchmarks print: CPU model from cpuinfo, else the platform's processor; always the core count."""

from __future__ import annotations

import os
from pathlib import Path

from gim_plugins.machine import cpu_name


def test_feature_model_name_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: Example\nmodel name\t: Example CPU 9000 @ 3.0GHz\nflags\t: fpu\n")
    assert cpu_name(str(cpuinfo)) == f"Example CPU 9000 @ 3.0GHz, {os.cpu_count()} cores"


def test_exception_unreadable_cpuinfo_falls_back_to_the_platform(tmp_path: Path) -> None:
    import platform

    expected = platform.processor() or platform.machine()
    assert cpu_name(str(tmp_path / "missing")) == f"{expected}, {os.cpu_count()} cores"
    no_model = tmp_path / "arm"
    no_model.write_text("processor\t: 0\nFeatures\t: fp asimd bf16\n")
    assert cpu_name(str(no_model)) == f"{expected}, {os.cpu_count()} cores"
