"""``gim reconstruct``: the command line of :mod:`gim_plugins.reconstruct`.

Registered through the ``gim_plugins.cli`` entry-point group (the ``gim`` command finds it there and never imports
this package itself); it turns arguments into the pipeline's conf, runs :func:`gim_plugins.reconstruct.main`, runs
the requested exporters and prints the summary. Registering imports nothing heavy.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the ``reconstruct`` subcommand to ``gim``'s subparsers."""
    parser = sub.add_parser("reconstruct", help="sparse 3D reconstruction (COLMAP) of a folder of images",
                            description="Match image pairs, write a COLMAP database, verify and map. Rerunning "
                                        "with the same --out resumes: finished pairs and steps are skipped.")
    parser.add_argument("images", type=Path, help="folder of images (searched recursively)")
    parser.add_argument("--matcher", default="aliked_lightglue", help="registered matcher (default: %(default)s)")
    parser.add_argument("--weights", default=None, help="checkpoint file (default: the matcher's registered weights)")
    parser.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE", help="matcher option (repeatable)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--pairs", default="exhaustive",
                        help="exhaustive | sequential:K | sequential:K+loop:L | retrieval:K | a pair file with "
                             "'name0 name1' lines (default: %(default)s)")
    parser.add_argument("--retrieval", default=None,
                        help="image similarity of retrieval:K and loop:L: asmk (default) or vlad on the run's local "
                             "features, or an hloc network (netvlad, megaloc, openibl, dir) whose weights are present")
    parser.add_argument("--shard", default=None, metavar="I/N",
                        help="match only shard I of N (0-based) of the pairs; a later run without --shard merges "
                             "the shards and maps (under torchrun the ranks shard by themselves)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="dense matchers: pairs per forward pass (default: from free GPU memory; 1 on the CPU)")
    parser.add_argument("--engine", choices=("pycolmap", "colmap"), default="pycolmap",
                        help="verification and mapping by pycolmap or by the colmap program (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: IMAGES/../reconstruction)")
    parser.add_argument("--camera-model", default="SIMPLE_RADIAL", help="COLMAP camera model (default: %(default)s)")
    parser.add_argument("--single-camera", action="store_true", help="one camera shared by all images")
    parser.add_argument("--camera-params", default=None,
                        help="comma-separated COLMAP camera parameters (principal point in COLMAP's convention)")
    parser.add_argument("--tracks", choices=("merge", "none"), default="merge",
                        help="dense matchers: merge per-pair keypoints into tracks (default) or not")
    parser.add_argument("--merge-radius", type=float, default=None, help="dense matchers: track merge radius in px")
    parser.add_argument("--min-matches", type=int, default=15, help="pairs with fewer matches are left out")
    parser.add_argument("--export", action="append", default=[], metavar="NAME",
                        help="also export the correspondences (colmap-db, colmap-text, hloc-h5) into OUT/exports/NAME")
    parser.add_argument("--overwrite", action="store_true", help="discard matches stored by another matcher/conf")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--dense", nargs="?", const="auto", default=None, choices=("auto", "mvs", "triangulate"),
                        help="also a dense point cloud OUT/dense/fused.ply: COLMAP MVS (needs CUDA) or dense "
                             "triangulation from the matcher; auto (default) picks what runs here")
    parser.add_argument("--dense-matcher", default=None, help="matcher of the dense step (default: --matcher)")
    parser.add_argument("--dense-conf", action="append", default=[], metavar="KEY=VALUE",
                        help="dense-step option (repeatable), e.g. neighbours=6 or min_consistent_views=2")
    parser.set_defaults(handler=_run)


def build_conf(args: argparse.Namespace) -> dict[str, Any]:
    """The reconstruction conf from parsed arguments."""
    from gim_plugins.conf import parse_conf
    from gim_plugins.errors import UserError

    camera: dict[str, Any] = {"camera_model": args.camera_model, "single_camera": bool(args.single_camera)}
    if args.camera_params:
        try:
            camera["camera_params"] = [float(v) for v in args.camera_params.split(",")]
        except ValueError:
            raise UserError(f"--camera-params expects comma-separated numbers, got {args.camera_params!r}") from None
    track_conf: dict[str, Any] = {"mode": args.tracks}
    if args.merge_radius is not None:
        track_conf["radius"] = args.merge_radius
    extra: dict[str, Any] = {}
    if args.retrieval:
        extra["retrieval"] = {"backend": args.retrieval}
    if args.shard:
        from gim_plugins.world import parse_shard

        try:
            parse_shard(args.shard)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        extra["shard"] = args.shard
    if args.batch_size is not None:
        if args.batch_size < 1:
            raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
        extra["batch_size"] = args.batch_size
    return {**extra, "matcher": args.matcher, "matcher_conf": parse_conf(args.conf), "weights": args.weights,
            "device": args.device, "pairs": args.pairs, "engine": args.engine, "camera": camera,
            "tracks": track_conf, "min_matches": args.min_matches, "overwrite": bool(args.overwrite),
            "progress": not args.no_progress}


def build_dense_conf(args: argparse.Namespace) -> dict[str, Any] | None:
    """The dense step's conf from parsed arguments (``None`` without ``--dense``)."""
    from gim_plugins.conf import parse_conf

    if args.dense is None:
        if args.dense_matcher or args.dense_conf:
            from gim_plugins.errors import UserError

            raise UserError("--dense-matcher and --dense-conf need --dense")
        return None
    return {**parse_conf(args.dense_conf, option="--dense-conf"), "method": args.dense, "matcher": args.dense_matcher}


def _run(args: argparse.Namespace) -> int:
    from gim_plugins.colmap_ext.exporters import export
    from gim_plugins.reconstruct import main
    from gim_plugins.reconstruct.common import ReconstructPaths
    from gim_plugins.reconstruct.correspondences import load_correspondences

    out = args.out or args.images.resolve().parent / "reconstruction"
    paths = ReconstructPaths(args.images, out)
    conf = build_conf(args)
    summary_path = main(conf, paths, dense=build_dense_conf(args))
    if summary_path.suffix == ".sqlite":
        print(f"matched this shard's pairs into {summary_path}; run without --shard to merge and map")
        return 0
    summary = json.loads(summary_path.read_text())
    if args.export:
        correspondences = load_correspondences(conf, paths)
        for name in args.export:
            target = out / "exports" / name
            if name == "colmap-db":
                target = export(name, correspondences, target / "database.db", camera=conf["camera"],
                                overwrite=True)
            else:
                target = export(name, correspondences, target)
            print(f"exported {name}: {target}")
    match = summary.get("match", {})
    tracks = summary.get("database", {}).get("correspondences", {})
    share = 100 * summary["registered_share"]
    print(f"images: {summary['images']}, registered: {summary['registered']} ({share:.0f} %)")
    print(f"points: {summary['points']}, mean track length: {summary['mean_track_length']:.2f}, "
          f"mean reprojection error: {summary['mean_reprojection_error']:.2f} px")
    print(f"pairs: {match.get('pairs')}, verified: {summary.get('database', {}).get('verified_pairs')}, "
          f"keypoints/image: {tracks.get('mean_keypoints', 0):.0f}, matched now: {match.get('matched_now')}, "
          f"extractions now: {match.get('extracted_now')}")
    print(f"model: {summary['model']}")
    if args.dense is not None:
        dense = json.loads((out / "dense" / "summary.json").read_text())
        method = dense["method"] + (f" ({dense.get('engine') or dense.get('matcher')}"
                                    f"{', sparse-derived' if dense.get('sparse_derived') else ''})")
        print(f"dense: {dense['fused_points']} points by {method}: {dense['fused']}")
        for warning in dense.get("warnings", []):
            print(f"warning: {warning}")
    for warning in summary.get("warnings", []):
        print(f"warning: {warning}")
    return 0
