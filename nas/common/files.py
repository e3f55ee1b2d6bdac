"""Reading the user's files with one-line errors, and writing files atomically.

Lives in the lowest part so that every part (configs, spaces, dataset caches, weights,
run outputs) reads and writes the same way.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

import yaml

from nas.common.errors import UserError


def fingerprint(text: str) -> str:
    """A short content hash of a space file: the same text, the same fingerprint."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_user_text(path: str | os.PathLike[str]) -> str:
    """A user's text file, or a one-line UserError saying why it cannot be read."""
    path = Path(path)
    try:
        return path.read_text()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read ({exc.__class__.__name__})") from None


def yaml_error(exc: yaml.YAMLError, source: str) -> UserError:
    """One line for malformed YAML, with the line number where PyYAML knows it."""
    mark = getattr(exc, "problem_mark", None)
    where = f" line {mark.line + 1}:" if mark is not None else ""
    return UserError(f"{source}:{where} malformed YAML ({getattr(exc, 'problem', None) or exc})")


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object]) -> Path:
    """Write through a temp file in the same folder, then ``os.replace``: a reader (or a process
    killed mid-write) sees the old complete file or the new complete file, never a partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode()))


def check_writable(path: str | os.PathLike[str], what: str) -> Path:
    """Refuse, before anything is written, an output path that cannot be written: one line that
    starts with ``what`` (``--output``, ``cannot write report``...)."""
    path = Path(path).expanduser()
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise UserError(f"{what} {path}: it is a folder; give a file name")
    if not folder.is_dir():
        raise UserError(f"{what} {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UserError(f"{what} {path}: not writable")
    return path
