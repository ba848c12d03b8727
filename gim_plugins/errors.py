"""The package's user-facing errors and the one place that turns them into exit statuses.

A *user error* is a problem the person running the code can fix: a missing or unreadable file, an unknown matcher or
option, a value out of range, a device that is not there, weights that fail their hash. Such errors carry a one-line
message that names the problem and the fix; the command-line edge (:func:`run_cli`, used by ``gim`` and
``python -m gim_plugins.zeb``) prints that line and exits with status 2, and shows the traceback only with
``--debug``. Everything else is a bug and keeps its traceback.

Library code raises :class:`UserError` (or one of its subclasses, which also derive from the built-in type callers
expect: ``ConfError`` is a ``KeyError``, ``HashMismatchError`` a ``RuntimeError``, …) and never calls ``sys.exit``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

__all__ = ["EXIT_INTERRUPTED", "EXIT_USER_ERROR", "UserError", "is_user_error", "one_line", "run_cli"]

EXIT_USER_ERROR = 2
"""Exit status of a command stopped by a user error (as argparse uses for bad arguments)."""

EXIT_INTERRUPTED = 130
"""Exit status after Ctrl-C (128 + SIGINT), as shells report it."""


class UserError(Exception):
    """A problem the user can fix; its message is one line naming the problem and the fix."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else self.__class__.__name__


# Built-in exceptions that reach the edge from the standard library or third-party code and are about the user's
# input rather than a bug: files that are missing, unreadable or not files.
_USER_OSERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError, FileExistsError)


def is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` is reported as one line with exit status 2 rather than as a traceback."""
    from gim_plugins.registry import MatcherLoadError

    # MatcherLoadError: a broken plugin package; its message names the plugin and the import error.
    return isinstance(exc, (UserError, MatcherLoadError, *_USER_OSERRORS)) or _legacy_user_error(exc)


def _legacy_user_error(exc: BaseException) -> bool:
    """Exceptions the commands have always reported as user errors, until every check raises ``UserError``."""
    return isinstance(exc, (ValueError, KeyError, RuntimeError, OSError))


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (``KeyError`` without its quotes; further lines dropped)."""
    message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
    text = str(message).strip() or type(exc).__name__
    return text.splitlines()[0] if "\n" in text else text


def run_cli(command: Callable[[], int | None], *, prog: str, debug: bool = False,
            interrupted: str = "interrupted") -> int:
    """Run one command at the command-line edge; returns its exit status.

    User errors print ``PROG: error: <one line>`` and return :data:`EXIT_USER_ERROR` (with ``debug`` they are
    re-raised so the traceback shows); Ctrl-C prints ``PROG: <interrupted>`` and returns :data:`EXIT_INTERRUPTED`;
    anything else propagates with its traceback.
    """
    try:
        return int(command() or 0)
    except KeyboardInterrupt:
        print(f"{prog}: {interrupted}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if debug or not is_user_error(exc):
            raise
        print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR
