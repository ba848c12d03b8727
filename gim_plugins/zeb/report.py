"""Loop 2 of ZEB: AUC tables, plots and the identifier check, from GIM-format dump files.

Works on any directory of dump files — ours, GIM's committed ones, or both side by side. Per method (``weight
version`` of the file names) and subset: the rows are de-duplicated by identifier keeping the first occurrence, the
pose error is ``max(R_err, t_err)`` with failures at 180°, and the AUC is ``analysis.py``'s formula at 5°, 10°, 20°
(:func:`gim_plugins.zeb.metrics.pose_auc`). The mean is the unweighted mean over the subsets present (what GIM's
``zeb.xlsx`` computes over the 12). Subsets appear in the README's column order. When the method was run by
:mod:`.runner`, its cost — pairs per second, match time and peak memory — comes from the run store next to the
dumps.

Each method belongs to the protocol named by its version suffix (:func:`gim_plugins.zeb.protocols.for_version`), and
each protocol gets its own tables, in the protocols' order, with that protocol's AUC rounding: methods run with
glue-factory's protocol (``+gluefactory``) are kept out of the GIM tables, and their tables add glue-factory's own
summary number, the AUC pooled over all pairs of all subsets present ("All pairs"). ``check`` compares identifiers
within each protocol only.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gim_plugins.atomic import atomic_path
from gim_plugins.zeb.dataset import SUBSETS, get_subset
from gim_plugins.zeb.dumps import DumpName, find_dumps, read_dump, unique_rows
from gim_plugins.zeb.metrics import AUC_THRESHOLDS, pose_auc, pose_errors
from gim_plugins.zeb.protocols import Protocol, all_protocols, for_version, get_protocol
from gim_plugins.zeb.store import MethodStore

__all__ = ["CheckResult", "MethodCost", "MethodResult", "SubsetResult", "check", "collect", "format_report",
           "plot"]


@dataclass(frozen=True)
class SubsetResult:
    """One method on one subset.

    Attributes:
        scene: the subset's dump name (``GL3D``, ``Multi-FoV``).
        pairs: unique identifiers.
        failures: pairs whose pose failed (non-finite errors).
        auc: AUC per threshold, as fractions (``{5.0: 0.635, …}``).
        errors: per-pair pose errors in degrees (failures at 180), for plots.
    """

    scene: str
    pairs: int
    failures: int
    auc: dict[float, float]
    errors: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class MethodCost:
    """What the run store recorded for a method (over the subsets shown).

    Attributes:
        pairs: pairs with a record.
        pairs_per_second: pairs / total wall time per pair (image wait + match + pose), one process.
        match_ms: mean matcher time per pair in milliseconds.
        peak_rss_mb: the largest peak resident memory of the processes.
        peak_cuda_mb: torch's peak CUDA allocation (``None`` on CPU).
        device: the device type of the run.
    """

    pairs: int
    pairs_per_second: float
    match_ms: float
    peak_rss_mb: float
    peak_cuda_mb: float | None
    device: str | None


@dataclass
class MethodResult:
    """All subsets of one method."""

    weight: str
    version: str
    subsets: dict[str, SubsetResult]
    cost: MethodCost | None = None

    @property
    def name(self) -> str:
        return f"{self.weight} {self.version}"

    @property
    def protocol(self) -> str:
        """The name of the protocol that produced it (from the version token): ``"gim"``, ``"gluefactory"``."""
        return self.rules.name

    @property
    def rules(self) -> Protocol:
        """That protocol (:mod:`gim_plugins.zeb.protocols`)."""
        return for_version(self.version)

    def mean(self, threshold: float) -> float:
        return float(np.mean([r.auc[threshold] for r in self.subsets.values()]))

    def pooled(self, threshold: float) -> float:
        """The AUC over all pairs of all subsets together (glue-factory's summary; the protocol's rounding)."""
        errors = np.concatenate([r.errors for r in self.subsets.values()])
        return pose_auc(errors, [threshold], self.rules.auc_decimals)[0]


def _scene_order(scene: str) -> tuple[int, str]:
    for position, subset in enumerate(SUBSETS):
        if scene == subset.dump_name:
            return position, scene
    return len(SUBSETS), scene


def _subset_result(path: Path, scene: str, thresholds: Sequence[float], decimals: int | None = None) -> SubsetResult:
    rows = unique_rows(read_dump(path))
    if not rows:
        raise ValueError(f"{path}: the dump has no rows")
    R = np.array([row.R_err for row in rows])
    t = np.array([row.t_err for row in rows])
    errors = pose_errors(R, t)
    aucs = pose_auc(errors, thresholds, decimals)
    failures = int(np.count_nonzero(~(np.isfinite(R) & np.isfinite(t))))
    return SubsetResult(scene, len(rows), failures, dict(zip(thresholds, aucs)), errors)


def _cost(dump_dir: Path, weight: str, version: str, scenes: Iterable[str]) -> MethodCost | None:
    store = MethodStore(dump_dir, weight, version)
    sidecar = store.read_sidecar()
    if sidecar is None:
        return None
    records = []
    for scene in scenes:
        try:
            key = get_subset(scene).key
        except KeyError:
            continue
        records += store.selected_records(key)
    if not records:
        return None
    total = sum(sum(r.seconds.values()) for r in records)
    cuda = [r.peak_memory_mb["cuda"] for r in records if "cuda" in r.peak_memory_mb]
    return MethodCost(
        pairs=len(records),
        pairs_per_second=len(records) / total if total > 0 else math.inf,
        match_ms=1000 * float(np.mean([r.seconds.get("match", 0.0) for r in records])),
        peak_rss_mb=max(r.peak_memory_mb.get("rss", 0.0) for r in records),
        peak_cuda_mb=max(cuda) if cuda else None,
        device=sidecar.get("fingerprint", {}).get("device"),
    )


def collect(dump_dir: str | os.PathLike[str], methods: Sequence[str] | None = None,
            thresholds: Sequence[float] = AUC_THRESHOLDS) -> list[MethodResult]:
    """Evaluate every dump in ``dump_dir``.

    Args:
        dump_dir: folder with ``[T] … .txt`` dump files.
        methods: keep only these (``weight`` or ``"weight version"``); default all.
        thresholds: AUC thresholds in degrees.

    Raises:
        FileNotFoundError: no dump files (of the requested methods).
    """
    dump_dir = Path(dump_dir)
    grouped: dict[tuple[str, str], dict[str, Path]] = {}
    for path, name in find_dumps(dump_dir).items():
        if methods and not {name.weight, name.method} & set(methods):
            continue
        grouped.setdefault((name.weight, name.version), {})[name.scene] = path
    if not grouped:
        which = f" of {', '.join(methods)}" if methods else ""
        raise FileNotFoundError(f"no ZEB dump files{which} in {dump_dir} (expected '[T] weight scene version.txt')")
    results = []
    for (weight, version), files in sorted(grouped.items()):
        scenes = sorted(files, key=_scene_order)
        decimals = for_version(version).auc_decimals
        subsets = {scene: _subset_result(files[scene], scene, thresholds, decimals) for scene in scenes}
        results.append(MethodResult(weight, version, subsets, _cost(dump_dir, weight, version, scenes)))
    return results


def _scenes(results: Sequence[MethodResult]) -> list[str]:
    return sorted({scene for r in results for scene in r.subsets}, key=_scene_order)


def _abbr(scene: str) -> str:
    try:
        return get_subset(scene).abbr
    except KeyError:
        return scene


def _cost_cells(cost: MethodCost | None) -> list[str]:
    if cost is None:
        return ["—"] * 4
    cuda = f"{cost.peak_cuda_mb:.0f}" if cost.peak_cuda_mb is not None else "—"
    return [f"{cost.pairs_per_second:.2f}", f"{cost.match_ms:.0f}", f"{cost.peak_rss_mb:.0f}", cuda]


def _auc_tables(results: Sequence[MethodResult], thresholds: Sequence[float], pooled: bool) -> list[str]:
    scenes = _scenes(results)
    out = []
    for threshold in thresholds:
        out.append(f"AUC@{threshold:g}° (%)\n")
        first = "| Method | All pairs | Mean | " if pooled else "| Method | Mean | "
        out.append(first + " | ".join(_abbr(s) for s in scenes) + " |")
        out.append("|---" * (len(scenes) + 2 + pooled) + "|")
        for r in results:
            cells = [f"{100 * r.subsets[s].auc[threshold]:.1f}" if s in r.subsets else "—" for s in scenes]
            partial = "" if set(r.subsets) == set(scenes) else f" ({len(r.subsets)} subsets)"
            head = f"| {r.name} | " + (f"{100 * r.pooled(threshold):.1f} | " if pooled else "")
            out.append(head + f"{100 * r.mean(threshold):.1f}{partial} | " + " | ".join(cells) + " |")
        out.append("")
    return out


def _markdown(results: Sequence[MethodResult], thresholds: Sequence[float]) -> str:
    scenes = _scenes(results)
    out: list[str] = []
    for protocol in all_protocols():
        members = [r for r in results if r.rules is protocol]
        if members:
            out += [protocol.report_note] if protocol.report_note else []
            out += _auc_tables(members, thresholds, pooled=protocol.pooled_summary)
    out.append("Pairs, pose failures and cost (cost from the run store; — for dumps not produced here)\n")
    out.append("| Method | pairs | failures | pairs/s | match ms/pair | peak RSS MB | peak CUDA MB |")
    out.append("|---|---|---|---|---|---|---|")
    for r in results:
        pairs = sum(s.pairs for s in r.subsets.values())
        failures = sum(s.failures for s in r.subsets.values())
        out.append(f"| {r.name} | {pairs} | {failures} | " + " | ".join(_cost_cells(r.cost)) + " |")
    legend = ", ".join(f"{_abbr(s)} = {s}" for s in scenes)
    out.append(f"\n{legend}.")
    return "\n".join(out) + "\n"


def _as_dict(results: Sequence[MethodResult], thresholds: Sequence[float]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for r in results:
        data[r.name] = {
            "weight": r.weight,
            "version": r.version,
            "protocol": r.protocol,
            "mean": {f"auc@{t:g}": r.mean(t) for t in thresholds},
            **({"pooled": {f"auc@{t:g}": r.pooled(t) for t in thresholds}} if r.rules.pooled_summary else {}),
            "subsets": {s.scene: {"pairs": s.pairs, "failures": s.failures,
                                  **{f"auc@{t:g}": s.auc[t] for t in thresholds}} for s in r.subsets.values()},
            "cost": None if r.cost is None else {
                "pairs": r.cost.pairs, "pairs_per_second": r.cost.pairs_per_second, "match_ms": r.cost.match_ms,
                "peak_rss_mb": r.cost.peak_rss_mb, "peak_cuda_mb": r.cost.peak_cuda_mb, "device": r.cost.device},
        }
    return data


def _csv(results: Sequence[MethodResult], thresholds: Sequence[float]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["method", "subset", "pairs", "failures", *(f"auc@{t:g}" for t in thresholds), "pairs_per_second",
                     "match_ms", "peak_rss_mb", "peak_cuda_mb"])
    for r in results:
        cost = r.cost
        extra = ["", "", "", ""] if cost is None else [
            f"{cost.pairs_per_second:.4f}", f"{cost.match_ms:.1f}", f"{cost.peak_rss_mb:.1f}",
            "" if cost.peak_cuda_mb is None else f"{cost.peak_cuda_mb:.1f}"]
        for s in r.subsets.values():
            writer.writerow([r.name, s.scene, s.pairs, s.failures, *(f"{s.auc[t]:.6f}" for t in thresholds), *extra])
        pairs, failures = sum(s.pairs for s in r.subsets.values()), sum(s.failures for s in r.subsets.values())
        writer.writerow([r.name, "mean", pairs, failures, *(f"{r.mean(t):.6f}" for t in thresholds), *extra])
        if r.rules.pooled_summary:
            writer.writerow([r.name, "all_pairs", pairs, failures, *(f"{r.pooled(t):.6f}" for t in thresholds),
                             *extra])
    return buffer.getvalue()


def format_report(results: Sequence[MethodResult], fmt: str = "md",
                  thresholds: Sequence[float] = AUC_THRESHOLDS) -> str:
    """The results as a Markdown table (``md``), ``csv`` (fractions) or ``json`` (fractions, with the cost)."""
    if fmt == "md":
        return _markdown(results, thresholds)
    if fmt == "csv":
        return _csv(results, thresholds)
    if fmt == "json":
        return json.dumps(_as_dict(results, thresholds), indent=2) + "\n"
    raise ValueError(f"unknown report format {fmt!r}; use md, csv or json")


def plot(results: Sequence[MethodResult], out_dir: str | os.PathLike[str], max_error: float = 30.0) -> list[Path]:
    """Write ``auc_curves.png`` (mean and per-subset AUC@τ for τ up to ``max_error``) and ``error_cdf.png`` (share
    of pairs with pose error ≤ x, per subset) into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scenes = _scenes(results)
    taus = np.linspace(0.5, max_error, 60)
    grid = np.linspace(0.0, max_error, 301)

    def auc_curves(panel: str) -> Iterator[tuple[np.ndarray, np.ndarray, str]]:
        for r in results:
            if panel == "Mean":
                yield taus, 100 * np.mean([pose_auc(s.errors, taus) for s in r.subsets.values()], axis=0), r.name
            elif panel in r.subsets:
                yield taus, 100 * np.array(pose_auc(r.subsets[panel].errors, taus)), r.name

    def error_cdfs(scene: str) -> Iterator[tuple[np.ndarray, np.ndarray, str]]:
        for r in results:
            if scene in r.subsets:
                errors = np.sort(r.subsets[scene].errors)
                yield grid, 100 * np.searchsorted(errors, grid, side="right") / len(errors), r.name

    return [_panel_figure(["Mean", *scenes], auc_curves, "threshold τ (°)", "AUC@τ (%)", out_dir / "auc_curves.png"),
            _panel_figure(scenes, error_cdfs, "pose error max(R, t) (°)", "pairs ≤ error (%)",
                          out_dir / "error_cdf.png")]


def _panel_figure(panels: Sequence[str], curves: Callable[[str], Iterable[tuple[np.ndarray, np.ndarray, str]]],
                  xlabel: str, ylabel: str, path: Path) -> Path:
    """One small plot per panel (up to 4 a row), each with the ``(x, y, label)`` curves of ``curves(panel)``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    cols = min(4, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.9 * rows), squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        for x, y, label in curves(panel):
            ax.plot(x, y, label=label)
        ax.set_title(panel, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def _save(fig: Any, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return path


# ------------------------------------------------------------------------------------------------------ check


@dataclass(frozen=True)
class CheckResult:
    """Identifier parity of one subset across the methods' dumps.

    Attributes:
        scene: the subset's dump name.
        files: the dump files compared (the first is the reference).
        status: ``"same"`` (all identifier lists equal, ≥ 2 files), ``"different"``, or ``"single"`` (one file:
            nothing to compare, which is not reported as a pass).
        problems: what differs (missing/extra identifiers per file, order, duplicates).
    """

    scene: str
    files: list[str]
    status: str
    problems: list[str]

    def line(self) -> str:
        head = {"same": "same", "different": "DIFFERENT", "single": "only one dump, nothing to compare"}[self.status]
        return f"{self.scene}: {head} ({len(self.files)} file(s))" + "".join(f"\n  {p}" for p in self.problems)


def _diff(reference: list[str], other: list[str], name: str, ref_name: str) -> list[str]:
    ref_set, other_set = set(reference), set(other)
    problems = []
    missing, extra = sorted(ref_set - other_set), sorted(other_set - ref_set)
    if missing:
        problems.append(f"{name}: {len(missing)} identifier(s) of {ref_name} missing, e.g. {missing[0]}")
    if extra:
        problems.append(f"{name}: {len(extra)} identifier(s) not in {ref_name}, e.g. {extra[0]}")
    if not missing and not extra and reference != other:
        problems.append(f"{name}: same identifiers as {ref_name} but in another order or multiplicity")
    return problems


def check(dump_dir: str | os.PathLike[str]) -> list[CheckResult]:
    """Compare the identifier columns of all dumps of each subset (what GIM's ``check.py`` meant to do, for all
    subsets by their dump names). Also flags duplicate identifiers within a file."""
    order = {protocol.name: position for position, protocol in enumerate(all_protocols())}
    groups: dict[tuple[str, str], list[tuple[Path, DumpName]]] = {}
    for path, name in find_dumps(dump_dir).items():  # protocols select different pairs: compare within one only
        groups.setdefault((for_version(name.version).name, name.scene), []).append((path, name))
    if not groups:
        raise FileNotFoundError(f"no ZEB dump files in {dump_dir}")
    results = []
    for protocol, scene in sorted(groups, key=lambda key: (order[key[0]], _scene_order(key[1]))):
        files = groups[protocol, scene]
        identifiers = {path.name: [row.identifier for row in read_dump(path)] for path, _ in files}
        problems = []
        for file, ids in identifiers.items():
            if len(set(ids)) != len(ids):
                problems.append(f"{file}: {len(ids) - len(set(ids))} duplicate identifier row(s)")
        names = list(identifiers)
        for other in names[1:]:
            problems += _diff(identifiers[names[0]], identifiers[other], other, names[0])
        status = "single" if len(files) == 1 else ("different" if problems else "same")
        if len(files) == 1 and problems:
            status = "different"
        label = get_protocol(protocol).label(scene)
        results.append(CheckResult(label, names, status, problems))
    return results
