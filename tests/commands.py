"""How tests start ``gcbridge`` commands as real processes.

:func:`sigint_ignored` starts a command as a POSIX shell starts a script's background job (``cmd &``): with
SIGINT ignored, a disposition Python and every child inherit. A command that relied on ``KeyboardInterrupt``
would then never stop on Ctrl-C.
"""

from __future__ import annotations

import sys

_EXEC_WITH_SIGINT_IGNORED = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def sigint_ignored(*argv: str) -> list[str]:
    """``argv`` (a program and its arguments) run with SIGINT ignored: the ignore survives ``exec``."""
    return [sys.executable, "-c", _EXEC_WITH_SIGINT_IGNORED, *argv]


def gcbridge_argv(*args: str, ignore_sigint: bool = False) -> list[str]:
    """``python -m gcbridge *args``, optionally started with SIGINT ignored."""
    argv = [sys.executable, "-m", "gcbridge", *args]
    return sigint_ignored(*argv) if ignore_sigint else argv
