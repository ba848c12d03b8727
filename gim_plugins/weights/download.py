"""Resumable HTTP(S) download of one file (standard library only; tqdm for the progress bar when asked)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gim_plugins.weights.hashes import FetchError

__all__ = ["download"]

log = logging.getLogger(__name__)
_CHUNK = 1 << 20


def download(
    url: str,
    part: Path,
    *,
    expected_size: int | None = None,
    progress: bool = True,
    retries: int = 3,
    timeout: float = 60.0,
    opener: Callable[..., Any] | None = None,
) -> Path:
    """Download ``url`` into ``part``, resuming from its current length with an HTTP ``Range`` request.

    A dropped connection is retried ``retries`` times, each time continuing where it stopped. A server that ignores
    ``Range`` (answers 200) restarts the file. A web page served instead of a binary (``text/html``) is an error.
    """
    import urllib.error
    import urllib.request

    open_url = opener or urllib.request.urlopen
    part.parent.mkdir(parents=True, exist_ok=True)
    attempt = 0
    while True:
        have = part.stat().st_size if part.exists() else 0
        if expected_size is not None and have == expected_size:
            return part
        if expected_size is not None and have > expected_size:
            part.unlink()
            have = 0
        request = urllib.request.Request(url, headers={"User-Agent": "gim-plugins", **({"Range": f"bytes={have}-"}
                                                                                        if have else {})})
        try:
            with open_url(request, timeout=timeout) as response:
                code = getattr(response, "status", 200)
                if code == 416 and have:  # nothing left to send
                    return part
                if "text/html" in (response.headers.get("Content-Type") or ""):
                    raise FetchError("the server returned a web page instead of the file (login or quota page?)")
                append = code == 206
                if not append:
                    have = 0
                length = response.headers.get("Content-Length")
                total = have + int(length) if length is not None else expected_size
                _copy_stream(response, part, append=append, start=have, total=total, progress=progress,
                             label=part.name.removesuffix(".part"))
            if total is not None and part.stat().st_size < total:
                raise ConnectionError(f"connection closed after {part.stat().st_size} of {total} bytes")
            return part
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:
                return part
            raise FetchError(f"HTTP {exc.code} {exc.reason}") from None
        except (ConnectionError, TimeoutError, urllib.error.URLError, OSError) as exc:
            attempt += 1
            if attempt > retries:
                raise FetchError(f"download failed after {retries} retries: {exc}") from None
            log.warning("download of %s interrupted (%s); resuming (%d/%d)", url, exc, attempt, retries)
            time.sleep(min(2.0**attempt, 10.0) * 0.1)


def _copy_stream(response: Any, part: Path, *, append: bool, start: int, total: int | None, progress: bool,
                 label: str) -> None:
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024, desc=label, leave=False)
    try:
        with open(part, "ab" if append else "wb") as out:
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                if bar is not None:
                    bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
