"""Is ``[outbox] path`` usable? One answer for ``gcbridge check`` and for the start of ``gcbridge run``.

Usage::

    problem = outbox_location_problem(cfg.outbox.path)              # check: looks, creates nothing
    problem = outbox_location_problem(cfg.outbox.path, create=True)  # run: creates missing directories
    if problem is not None:
        sys.exit(problem)  # '[outbox] path = "/etc/passwd": ... is not an SQLite database ...'

The outbox needs a file it can create (or an SQLite file it created before) in a directory that exists or
can be created, that it may write, and on a filesystem where ``flock`` works: the store locks
``<path>.lock`` so that two processes never share the file, and SQLite's WAL needs working locks too
(network filesystems often lack them). Every answer names the config key and the path.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from pathlib import Path
from typing import Final

__all__ = ["KEY", "OutboxLocationError", "outbox_location_problem"]

KEY: Final = "[outbox] path"
_SQLITE_MAGIC: Final = b"SQLite format 3\x00"


class OutboxLocationError(Exception):
    """``[outbox] path`` cannot hold the outbox; the message is the one line to show."""


def outbox_location_problem(path: Path, *, create: bool = False) -> str | None:
    """``None`` when ``path`` can hold the outbox, else one line naming ``[outbox] path`` and the problem.

    ``create``: make missing parent directories (``gcbridge run``); without it nothing is created and the
    nearest existing parent is tested instead (``gcbridge check``).
    """
    problem = _file_problem(path) or _directory_problem(path.parent, create=create)
    return None if problem is None else f'{KEY} = "{path}": {problem}'


def _file_problem(path: Path) -> str | None:
    if path.is_dir():
        return f"is a directory; name a file inside it, for example {path / 'gcbridge-outbox.db'}"
    if not path.exists():
        return None
    if not path.is_file():
        return "exists and is not a regular file"
    try:
        with path.open("rb") as file:
            head = file.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if head and head != _SQLITE_MAGIC:
        return "is an existing file that is not an SQLite database (not an outbox); choose another path"
    if not os.access(path, os.W_OK):
        return "is not writable by this user"
    return None


def _directory_problem(directory: Path, *, create: bool) -> str | None:
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a directory"
    if create and existing != directory:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return f"cannot create the directory {directory} ({exc.strerror})"
        existing = directory
    return _lock_problem(existing, directory)


def _lock_problem(existing: Path, directory: Path) -> str | None:
    """Create a scratch file in ``existing`` and lock it, as the store will (then remove it)."""
    where = str(directory) if existing == directory else f"{directory} (under {existing})"
    try:
        scratch = tempfile.NamedTemporaryFile(dir=existing, prefix=".gcbridge-check-", delete=False)  # noqa: SIM115
    except OSError as exc:
        return f"cannot create files in {where} ({exc.strerror})"
    try:
        fcntl.flock(scratch.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(scratch.fileno(), fcntl.LOCK_UN)
    except OSError as exc:
        return f"the filesystem of {where} cannot lock files ({exc.strerror}); put the outbox on a local disk"
    finally:
        scratch.close()
        with contextlib.suppress(OSError):
            os.unlink(scratch.name)
    return None
