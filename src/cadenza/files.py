"""Writing output files atomically: a finished file or none, never half of one.

Used by every writer: scores (cadenza.score.io), audio, pictures and sheet music (cadenza.render).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from cadenza.errors import CadenzaError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_output(path: str | os.PathLike, suffixes: tuple[str, ...] | None = None, what: str = "file",
                 error: type[CadenzaError] = CadenzaError) -> Path:
    """The output path, checked: a known suffix, an existing folder, not a folder itself
    (``error``: the CadenzaError subclass to raise)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffixes is not None and suffix not in suffixes:
        raise error(f"cannot write {path}: unsupported {what} type {suffix or '(no suffix)'}; "
                           f"use one of {', '.join(suffixes)}")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise error(f"cannot write {path}: folder {folder} does not exist")
    if path.is_dir():
        raise error(f"cannot write {path}: it is a folder")
    return path


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, error: type[CadenzaError] = CadenzaError) -> Iterator[str]:
    """Yield a temporary file name beside ``path`` (same suffix); on success it replaces ``path``.

    On any error the temporary file is removed and ``path`` is left as it was; an OSError becomes
    ``error`` ("cannot write PATH: reason").
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.stem}.", suffix=".tmp" + path.suffix)
        os.close(fd)
    except OSError as e:
        raise error(f"cannot write {path}: {e.strerror or e}") from None
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; an output file gets the usual mode
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError) and not isinstance(e, CadenzaError):
            raise error(f"cannot write {path}: {e.strerror or e}") from None
        raise
