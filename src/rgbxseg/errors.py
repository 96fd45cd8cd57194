"""The base of rgbxseg's own errors: a message that says what went wrong and what to do about it.

The command line prints such errors on one line (``--debug`` shows the traceback); so it does with ``ValueError``,
``KeyError``, ``OSError`` and ``ImportError``, which most of the package's checks raise.
"""

from __future__ import annotations

from collections.abc import Sequence


class RgbxsegError(Exception):
    """An error whose message names the cause and the fix (e.g. a training run that had to stop)."""


def some_of(names: Sequence[str], limit: int) -> str:
    """The first ``limit`` of ``names`` for a message, and how many more: ``"a, b, c and 4 more"``."""
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more
