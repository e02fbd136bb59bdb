"""The one exception type that reaches users as a single clear line."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input or environment, phrased as problem plus fix.

    The command line prints its message as one line on stderr and exits non-zero;
    anything else escaping is a bug and prints a traceback only with ``--debug``.
    """
