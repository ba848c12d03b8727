"""The matcher page in Gradio: inputs generated from the registry, one queued "Match" event, downloads.

Everything the page computes comes from :mod:`gim_plugins.app.core`, :mod:`~gim_plugins.app.cache`,
:mod:`~gim_plugins.app.run` and :mod:`~gim_plugins.app.export`; this module only lays out widgets and turns every
exception into a message in the page (user errors as their one line, anything else as "internal error", with the
traceback in the server's log, never in the browser).

Elements the browser test reads carry fixed ids: ``example``, ``run``, ``status``, ``num-matches``, ``num-inliers``,
``timing``, ``match-picture``, ``warp-picture``, ``downloads``.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from gim_plugins.app.cache import MatcherCache
from gim_plugins.app.core import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_SIDE,
    ROBUST_MODELS,
    OptionSpec,
    available_devices,
    matcher_status,
    matcher_statuses,
    option_specs,
    parse_options,
)
from gim_plugins.errors import UserError, is_user_error, one_line

__all__ = ["MAX_UPLOAD", "DownloadDirs", "Handlers", "build_page", "launch"]

log = logging.getLogger(__name__)

MAX_UPLOAD = "200mb"
"""Largest upload the server accepts at all (the pixel limit applies after, from the header)."""

STAGES = ("decode", "load", "match", "robust fit", "drawing", "downloads")

INTRO = """# GIM matchers
Two images in, their matches out: pick a matcher (GIM's need their weights installed, see `gim weights list`),
adjust its options, and press **Match**. The counts are those of `gim match` with the same settings."""


class DownloadDirs:
    """One directory per request for its downloads, under one temporary root; only the last ``keep`` are kept."""

    def __init__(self, root: str | os.PathLike[str] | None = None, keep: int = 16) -> None:
        if root is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="gim-app-")  # removed at exit
            root = self._tmp.name
        self.root = Path(root)
        self.keep = keep
        self._count = 0
        self._lock = threading.Lock()

    def new(self) -> Path:
        """A fresh directory; the oldest ones beyond ``keep`` are deleted."""
        with self._lock:
            self._count += 1
            path = self.root / f"request-{self._count:06d}"
            path.mkdir(parents=True)
            for old in sorted(self.root.glob("request-*"))[: -self.keep]:
                shutil.rmtree(old, ignore_errors=True)
            return path


def _number_step(default: float) -> float:
    return 10.0 ** math.floor(math.log10(abs(default))) if default else 0.1


def _option_widget(gr: Any, spec: OptionSpec) -> Any:
    if spec.kind == "bool":
        return gr.Checkbox(value=spec.default, label=spec.key)
    if spec.kind == "int":
        return gr.Number(value=spec.default, label=spec.key, precision=0, step=1)
    if spec.kind == "float":
        return gr.Number(value=spec.default, label=spec.key, step=_number_step(spec.default))
    info = None if isinstance(spec.default, str) else "a Python literal: a number, a tuple, None (empty = None)"
    return gr.Textbox(value=spec.initial, label=spec.key, info=info, max_lines=1)


def _status_line(name: str) -> str:
    status = matcher_status(name)
    return f"**{name}**: {status.text}" if status.ready else f"**{name}** cannot run yet: {status.text}"


def _timing_table(timing: dict[str, float]) -> str:
    rows = [f"| {stage} | {timing[stage]:.2f} |" for stage in STAGES if stage in timing]
    total = sum(timing.values())
    return "\n".join(["| stage | seconds |", "|---|---:|", *rows, f"| **total** | **{total:.2f}** |"])


def _message(exc: BaseException) -> str:
    if is_user_error(exc):
        return f"**Error:** {one_line(exc)}"
    log.exception("gim app: internal error")
    return f"**Internal error** ({type(exc).__name__}): {one_line(exc)}. The server's log has the details."


class Handlers:
    """What the page's events call; plain Python, so tests call them without a browser.

    Args:
        cache: where loaded matchers are kept.
        downloads: where each request's downloads are written.
        option_keys: ``(matcher, option key)`` of every option widget, in the order their values reach :meth:`run`.
        max_pixels: uploads with more pixels than this are refused from their header.
    """

    def __init__(self, cache: MatcherCache, downloads: DownloadDirs, option_keys: list[tuple[str, str]],
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.cache = cache
        self.downloads = downloads
        self.option_keys = option_keys
        self.max_pixels = max_pixels

    @staticmethod
    def example() -> tuple[str, str]:
        """The bundled motorcycle pair's two files."""
        from gim_plugins.datasets.motorcycle import paths

        files = paths()
        return str(files["left"]), str(files["right"])

    def run(self, image0: str | None, image1: str | None, matcher: str, robust: str, threshold: float | None,
            resize: bool, max_side: float | None, device: str, weights: str | None,
            *option_values: Any) -> tuple[Any, ...]:
        """One "Match" press: ``(status, matches, inliers, timing table, match picture, warp picture, files)``.

        Never raises: a problem becomes the status message and empty outputs.
        """
        from gim_plugins.app.export import write_downloads
        from gim_plugins.app.run import run_match

        try:
            if not matcher:
                raise UserError("no matcher chosen: pick one in the matcher list")
            weights = (weights or "").strip() or None
            if weights is None and not matcher_status(matcher).ready:
                raise UserError(_status_line(matcher).replace("**", ""))
            if len(option_values) != len(self.option_keys):
                raise ValueError(f"expected {len(self.option_keys)} option values, got {len(option_values)}")
            options = parse_options(matcher, {key: value for (owner, key), value in zip(self.option_keys,
                                                                                         option_values)
                                              if owner == matcher})
            if resize and max_side is None:
                raise UserError("the maximum side needs a value when downscaling is on")
            result = run_match(self.cache, image0, image1, matcher=matcher, options=options, weights=weights,
                               device=device, robust=robust, threshold=threshold,
                               max_side=max_side if resize else None, max_pixels=self.max_pixels)
            start = time.perf_counter()
            written = write_downloads(result, self.downloads.new())
            result.timing["downloads"] = time.perf_counter() - start
        except Exception as exc:
            return _message(exc), "", "", "", None, None, None
        line = (f"**{result.matcher}**: {result.num_matches} matches, {result.num_inliers} inliers "
                f"({result.robust}, {result.threshold:g} px) — weights: {result.weights or 'none'}")
        notes = "".join(f"\n\n{note}" for note in result.notes)
        return (line + notes, str(result.num_matches), str(result.num_inliers), _timing_table(result.timing),
                result.match_picture, result.warp_picture, [str(p) for p in written])


def build_page(
    *,
    cache: MatcherCache | None = None,
    matcher: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    downloads: DownloadDirs | None = None,
) -> Any:
    """Build the page (a ``gradio.Blocks``); :func:`launch` serves it.

    Args:
        cache: where loaded matchers are kept (default: a new :class:`MatcherCache`).
        matcher: the matcher selected when the page opens (default: the best one whose weights are installed).
        max_pixels: uploads with more pixels than this are refused from their header.
        downloads: where each request's downloads are written (default: a temporary directory).

    Raises:
        UserError: an unknown ``matcher``.
    """
    import gradio as gr

    from gim_plugins.matching import default_matcher

    statuses = matcher_statuses()
    names = [s.name for s in statuses]
    if matcher is None:
        matcher = default_matcher()[0]
    if matcher not in names:
        raise UserError(f"unknown matcher {matcher!r}; registered matchers: {', '.join(names)}")
    choices = [(s.name if s.ready else f"{s.name} (weights missing)", s.name) for s in statuses]
    specs = {}
    for name in names:
        try:
            specs[name] = option_specs(name)
        except (KeyError, ImportError, AttributeError, TypeError):  # a broken plugin: its status line says why
            continue
    option_keys = [(name, spec.key) for name, name_specs in specs.items() for spec in name_specs]
    handlers = Handlers(cache if cache is not None else MatcherCache(),
                        downloads if downloads is not None else DownloadDirs(), option_keys, max_pixels)

    with gr.Blocks(title="GIM matchers", analytics_enabled=False) as page:
        gr.Markdown(INTRO)
        with gr.Row():
            image0 = gr.Image(label="image 0", type="filepath", image_mode=None, sources=["upload", "clipboard"],
                              elem_id="image0", height=320)
            image1 = gr.Image(label="image 1", type="filepath", image_mode=None, sources=["upload", "clipboard"],
                              elem_id="image1", height=320)
        example = gr.Button("Example: the Middlebury motorcycle stereo pair", elem_id="example", size="sm")
        with gr.Row():
            choice = gr.Dropdown(choices=choices, value=matcher, label="matcher", elem_id="matcher", scale=1)
            weights_md = gr.Markdown(_status_line(matcher), elem_id="weights-status")
        groups, option_widgets = {}, []
        with gr.Accordion("matcher options (from its default_conf)", open=False):
            for name, name_specs in specs.items():
                with gr.Group(visible=name == matcher) as groups[name]:
                    option_widgets += [_option_widget(gr, spec) for spec in name_specs]
        with gr.Row():
            robust = gr.Radio(list(ROBUST_MODELS), value="fundamental", label="robust model (USAC_MAGSAC)")
            threshold = gr.Number(value=1.0, label="inlier threshold (px)", step=0.5, minimum=0)
            device = gr.Dropdown(available_devices(), value="cpu", label="device")
        with gr.Row():
            resize = gr.Checkbox(value=False, label="downscale before matching (keypoints in original pixels)")
            max_side = gr.Number(value=DEFAULT_MAX_SIDE, label="maximum side (px)", precision=0, minimum=1)
            weights = gr.Textbox(value="", label="weights file (empty: the registered weights)", max_lines=1)
        run = gr.Button("Match", variant="primary", elem_id="run")
        status = gr.Markdown("", elem_id="status")
        with gr.Row():
            num_matches = gr.Textbox("", label="matches", interactive=False, elem_id="num-matches")
            num_inliers = gr.Textbox("", label="inliers", interactive=False, elem_id="num-inliers")
            timing_md = gr.Markdown("", elem_id="timing")
        with gr.Row():
            match_picture = gr.Image(label="inlier matches", format="png", interactive=False, height=360,
                                     buttons=["download", "fullscreen"], elem_id="match-picture")
            warp_picture = gr.Image(label="image 1 warped into image 0 | blend", format="png", interactive=False,
                                    height=360, buttons=["download", "fullscreen"], elem_id="warp-picture")
        files = gr.File(label="downloads: matches (CSV, NPZ) and pictures (PNG)", file_count="multiple",
                        interactive=False, elem_id="downloads")

        def on_matcher(name: str) -> list[Any]:
            return [_status_line(name), *(gr.update(visible=key == name) for key in groups)]

        choice.change(on_matcher, choice, [weights_md, *groups.values()], queue=False)
        example.click(handlers.example, None, [image0, image1], queue=False)
        run.click(handlers.run, [image0, image1, choice, robust, threshold, resize, max_side, device, weights,
                                 *option_widgets],
                  [status, num_matches, num_inliers, timing_md, match_picture, warp_picture, files],
                  concurrency_limit=1, concurrency_id="match")
    return page


def launch(
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    share: bool = False,
    matcher: str | None = None,
    max_models: int = 2,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    queue_size: int = 16,
) -> None:
    """Serve the page until interrupted (Ctrl-C).

    Requests are queued and run one at a time; at most ``queue_size`` wait. Telemetry and Gradio's update check are
    off (``GRADIO_ANALYTICS_ENABLED=False``), and nothing is published unless ``share`` is set.
    """
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from gim_plugins.datasets.motorcycle import paths as motorcycle

    example = motorcycle()
    page = build_page(cache=MatcherCache(max_models), matcher=matcher, max_pixels=max_pixels)
    page.queue(max_size=queue_size, default_concurrency_limit=1)
    page.launch(
        server_name=host, server_port=port, share=share, inbrowser=False, show_error=True, ssr_mode=False,
        mcp_server=False, enable_monitoring=False, run_history=False, max_file_size=MAX_UPLOAD,
        allowed_paths=[str(example["left"]), str(example["right"])],
    )
