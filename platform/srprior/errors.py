"""User errors: every `srprior` command prints them as one line (the value or file, what is wrong, the fix) and
exits 2 — never a traceback. Anything else is a bug and keeps its traceback.

A user error is one of the project's validation errors (bad options, configs, data, stores), an argparse error
(every numeric option declares its range through `int_in` / `float_in`), or an OS error that the user causes and
fixes (disk full, permission denied, read-only file system, a name too long).
"""

from __future__ import annotations

import argparse
import errno
import math
import sys
from collections.abc import Callable
from typing import Any

OS_FIXES = {
    errno.ENOSPC: "free disk space or choose another --output-dir",
    errno.EDQUOT: "free disk space (quota) or choose another --output-dir",
    errno.EACCES: "check the folder's permissions or choose another one",
    errno.EPERM: "check the folder's permissions or choose another one",
    errno.EROFS: "the file system is read-only: choose another folder",
    errno.ENAMETOOLONG: "use a shorter name or path",
}


class UserError(Exception):
    """Base of every project error a user causes and fixes (bad option, config, data, store): `run_command`
    prints it as one line. Each module's error subclasses it (and the builtin it always was), so this module
    imports nothing of the project."""


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (argparse prints the whole usage block first)."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _bounded(kind: type, name: str, low: float | None, high: float | None, low_open: bool = False) -> Callable:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {name}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text} is not a finite number")
        if (low is not None and (value <= low if low_open else value < low)) or (high is not None and value > high):
            lo = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
            hi = "" if high is None else f"<= {high:g}"
            bounds = " and ".join(filter(None, (lo, hi)))
            raise argparse.ArgumentTypeError(f"{text} is out of range: must be {name} {bounds}")
        return value

    parse.__name__ = name  # argparse names the type in some messages
    return parse


def int_in(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """argparse type: an integer in [low, high] (either bound optional)."""
    return _bounded(int, "an integer", low, high)


def float_in(low: float | None = None, high: float | None = None, low_open: bool = False) -> Callable[[str], float]:
    """argparse type: a finite number in [low, high] ((low, high] with low_open)."""
    return _bounded(float, "a number", low, high, low_open)


def user_message(exc: BaseException) -> str | None:
    """The one line to print when `exc` is a user error, else None (a bug: let it raise)."""
    if isinstance(exc, OSError) and exc.errno in OS_FIXES:
        where = f" {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}:{where}; {OS_FIXES[exc.errno]}"
    if isinstance(exc, UserError):
        text = str(exc.args[0]) if exc.args else str(exc)
        return " ".join(text.split("\n", 1)[0].split()) if text else type(exc).__name__
    return None


def run_command(prog: str, func: Callable[..., Any], *args: Any) -> int:
    """`func(*args)` as a command: its exit code, or 2 after one line on stderr for a user error."""
    try:
        return int(func(*args) or 0)
    except Exception as exc:
        message = user_message(exc)
        if message is None:
            raise
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2
