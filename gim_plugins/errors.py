"""The package's user-facing errors and the one place that turns them into exit statuses.

A *user error* is a problem the person running the code can fix: a missing or unreadable file, an unknown matcher or
option, a value out of range, a device that is not there, weights that fail their hash. Such errors carry a one-line
message that names the problem and the fix; the command-line edge (:func:`run_cli`, used by ``gim`` and
``python -m gim_plugins.zeb``) prints that line and exits with status 2, and shows the traceback only with
``--debug``. Everything else is a bug and keeps its traceback.

Library code raises :class:`UserError` (or one of its subclasses, which also derive from the built-in type callers
expect: ``ConfError`` is a ``KeyError``, :class:`InputError` and ``ConfValueError`` are ``ValueError`` types,
``HashMismatchError`` a ``RuntimeError``, …) at the place that finds the problem, and never calls ``sys.exit``. A
plain ``ValueError`` or ``RuntimeError`` is a bug and keeps its traceback: there is no catch-all that guesses.

Besides ``UserError``, two kinds of exceptions from the standard library count as the user's: files that are
missing, unreadable or not files (``FileNotFoundError``, ``IsADirectoryError``, ``PermissionError``, …), and a
storage problem (a full disk, a read-only file system or quota, also when SQLite or HDF5 report it), which gets a line
naming the path and the fix.

Termination: ``SIGTERM`` is turned into :class:`Terminated` (a ``KeyboardInterrupt``), so a terminated command runs
its ``finally`` blocks, keeps its finished work and ends with one line and status 143, like Ctrl-C (130).
"""

from __future__ import annotations

import contextlib
import errno
import signal
import sys
import threading
from collections.abc import Callable, Iterator

__all__ = ["EXIT_INTERRUPTED", "EXIT_TERMINATED", "EXIT_USER_ERROR", "InputError", "MissingDependencyError",
           "Terminated", "UnknownNameError", "UserError", "deferred_interrupts", "is_user_error", "one_line", "run_cli",
           "storage_problem"]

EXIT_USER_ERROR = 2
"""Exit status of a command stopped by a user error (as argparse uses for bad arguments)."""

EXIT_INTERRUPTED = 130
"""Exit status after Ctrl-C (128 + SIGINT), as shells report it."""

EXIT_TERMINATED = 143
"""Exit status after SIGTERM (128 + 15)."""

EXIT_BROKEN_PIPE = 141
"""Exit status when the output pipe closed early (128 + SIGPIPE)."""


class UserError(Exception):
    """A problem the user can fix; its message is one line naming the problem and the fix."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else self.__class__.__name__


class InputError(UserError, ValueError):
    """A value, image or file the user gave that cannot be used as it is (also a ``ValueError``)."""


class UnknownNameError(UserError, KeyError):
    """A name (image, exporter, subset, checkpoint, …) that is not among the known ones (also a ``KeyError``)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else self.__class__.__name__


class MissingDependencyError(UserError, ImportError):
    """An optional package that a feature needs is not installed (the message says what to install)."""


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM (raised by the handler :func:`run_cli` installs)."""


# Built-in exceptions that reach the edge from the standard library or third-party code and are about the user's
# input rather than a bug: files that are missing, unreadable or not files.
_USER_OSERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError, FileExistsError)


_STORAGE_ERRNOS = {errno.ENOSPC: "no space left on the device", errno.EROFS: "the file system is read-only",
                   errno.EDQUOT: "the disk quota is exceeded",
                   errno.EFBIG: "a file would pass this process's file-size limit (ulimit -f)"}
_STORAGE_TEXTS = (("no space left", "no space left on the device"), ("disk is full", "no space left on the device"),
                  ("database or disk is full", "no space left on the device"),
                  ("read-only file system", "the file system is read-only"),
                  ("readonly database", "the output is read-only"), ("disk quota", "the disk quota is exceeded"),
                  ("file too large", "a file would pass this process's file-size limit (ulimit -f)"))


def storage_problem(exc: BaseException) -> str | None:
    """A one-line description of a full or read-only output (OSError, SQLite or HDF5 error), else ``None``."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:  # HDF5 and SQLite wrap the OS error
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _STORAGE_ERRNOS:
            where = f" ({current.filename})" if current.filename else ""
            return f"cannot write{where}: {_STORAGE_ERRNOS[current.errno]}; free some space or write elsewhere"
        text = str(current).lower()
        module = type(current).__module__
        if isinstance(current, OSError) or module.startswith(("sqlite3", "h5py")):
            for needle, what in _STORAGE_TEXTS:
                if needle in text:
                    return f"cannot write: {what} ({one_line(current)}); free some space or write elsewhere"
        current = current.__cause__ or current.__context__
    return None


def is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` is reported as one line with exit status 2 rather than as a traceback."""
    from gim_plugins.registry import MatcherLoadError

    # MatcherLoadError: a broken plugin package; its message names the plugin and the import error.
    return isinstance(exc, (UserError, MatcherLoadError, *_USER_OSERRORS)) or storage_problem(exc) is not None


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (``KeyError`` without its quotes; further lines dropped)."""
    message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
    text = str(message).strip() or type(exc).__name__
    return text.splitlines()[0] if "\n" in text else text


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block ends, then act on them as before.

    For clean-up that must not be cut in half (removing a temporary folder): Python runs signal handlers between any
    two bytecodes, so an interrupt in the middle of ``shutil.rmtree`` would leave half a folder behind. Outside the
    main thread (where handlers cannot be changed) the block runs as is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    hold = lambda signum, frame: received.append(signum)  # noqa: E731
    previous = {sig: signal.signal(sig, hold) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if received:
            handler = previous[signal.Signals(received[0])]
            if callable(handler):
                handler(received[0], None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(received[0])


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(f"received signal {signum}")


def _install_sigterm() -> Callable[[], None]:
    """Make SIGTERM raise :class:`Terminated` in the main thread; returns the function that restores the old one."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    return lambda: signal.signal(signal.SIGTERM, previous)


def run_cli(command: Callable[[], int | None], *, prog: str, debug: bool = False,
            interrupted: str = "interrupted") -> int:
    """Run one command at the command-line edge; returns its exit status.

    User errors print ``PROG: error: <one line>`` and return :data:`EXIT_USER_ERROR` (with ``debug`` they are
    re-raised so the traceback shows); Ctrl-C prints ``PROG: <interrupted>`` and returns :data:`EXIT_INTERRUPTED`,
    SIGTERM ``PROG: terminated: <interrupted>`` and :data:`EXIT_TERMINATED`; anything else propagates with its
    traceback.
    """
    restore = _install_sigterm()
    try:
        return int(command() or 0)
    except Terminated:
        print(f"{prog}: terminated: {interrupted}", file=sys.stderr)
        return EXIT_TERMINATED
    except BrokenPipeError:  # the reader went away (``gim weights list | head``): stop quietly, as cat does
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        print(f"{prog}: {interrupted}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if debug or not is_user_error(exc):
            raise
        storage = storage_problem(exc)
        print(f"{prog}: error: {storage or one_line(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR
    finally:
        restore()
