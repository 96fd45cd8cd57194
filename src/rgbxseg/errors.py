"""The base of rgbxseg's own errors: a message that says what went wrong and what to do about it.

The command line prints such errors on one line (``--debug`` shows the traceback); so it does with ``ValueError``,
``KeyError``, ``OSError`` and ``ImportError``, which most of the package's checks raise.
"""

from __future__ import annotations


class RgbxsegError(Exception):
    """An error whose message names the cause and the fix (e.g. a training run that had to stop)."""
