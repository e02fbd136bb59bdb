"""The one exception type that reaches users as a single clear line."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input or environment, phrased as problem plus fix.

    The command line prints its message as one line on stderr and exits non-zero;
    anything else escaping is a bug and prints a traceback only with ``--debug``.
    """


class ArgumentError(UserError, ValueError):
    """A bad argument of a public function, worded with its Python keyword names (``names``).

    The command line shows the flag of each name instead (``max_length=1`` becomes
    ``--max-length 1``), so one check serves both callers. It is a ``ValueError`` too, so code
    catching that (a training loop around ``token_stats``) keeps working.
    """

    def __init__(self, message: str, *names: str) -> None:
        super().__init__(message)
        self.names = names


def type_name(value: object) -> str:
    """How a message names what it got: ``None``, or the type and a short repr."""
    import os

    if value is None:
        return "None"
    if isinstance(value, os.PathLike):  # a path in full: it says which file was meant
        return f"{type(value).__name__} {os.fspath(value)!r}"
    shown = repr(value)
    if "\n" in shown:  # a module's repr is its whole tree: its type says enough
        return f"a {type(value).__name__}"
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    return f"{type(value).__name__} {shown}"


def check_int(value: object, name: str, minimum: int | None, *, optional: bool = False) -> None:
    """``value`` is an integer >= ``minimum`` (any integer when ``minimum`` is None; None itself
    when ``optional``), else an :class:`ArgumentError` naming ``name``."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        none = " or None" if optional else ""
        raise ArgumentError(f"{name} must be an integer{none}, got {type_name(value)}", name)
    if minimum is not None and value < minimum:
        raise ArgumentError(f"{name} must be at least {minimum}, got {value}", name)


def check_str(value: object, name: str, *, optional: bool = False) -> None:
    """``value`` is a non-empty string (or None when ``optional``), else an
    :class:`ArgumentError` naming ``name``."""
    if value is None and optional:
        return
    if not isinstance(value, str) or not value:
        none = " or None" if optional else ""
        got = "an empty string" if value == "" else type_name(value)
        raise ArgumentError(f"{name} must be a non-empty string{none}, got {got}", name)


def check_bool(value: object, name: str) -> None:
    """``value`` is True or False, else an :class:`ArgumentError` naming ``name``."""
    if not isinstance(value, bool):
        raise ArgumentError(f"{name} must be True or False, got {type_name(value)}", name)


def as_path_text(value: object, name: str) -> str:
    """A path argument (``str`` or ``os.PathLike``) as text, else an :class:`ArgumentError`."""
    import os

    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise ArgumentError(f"{name} must be a str or os.PathLike, got {type_name(value)}", name)
    return value
