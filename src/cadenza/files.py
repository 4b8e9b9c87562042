"""Writing output files atomically: a finished file or none, never half of one.

Used by every writer: scores (cadenza.score.io), audio, pictures and sheet music (cadenza.render).
"""

from __future__ import annotations

import contextlib
import glob
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


TEMP_TAG = "cadenza-"  # temporary files are named .STEM.cadenza-PID.RANDOM.tmp.SUFFIX


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


def _remove_orphans(folder: Path, path: Path) -> None:
    """Remove the temporary files of ``path`` left by a writer that was killed (SIGKILL cannot be
    caught: its hidden temporary file stayed beside the output for good), i.e. whose process is gone."""
    with contextlib.suppress(OSError):
        for old in folder.glob(f".{glob.escape(path.stem)}.{TEMP_TAG}*.tmp{glob.escape(path.suffix)}"):
            pid = old.name[len(path.stem) + len(TEMP_TAG) + 2:].split(".", 1)[0]
            if pid.isdigit() and not _alive(int(pid)):
                with contextlib.suppress(OSError):
                    old.unlink()


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, error: type[CadenzaError] = CadenzaError) -> Iterator[str]:
    """Yield a temporary file name beside ``path`` (same suffix); on success it replaces ``path``.

    On any error the temporary file is removed and ``path`` is left as it was; an OSError becomes
    ``error`` ("cannot write PATH: reason").
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    _remove_orphans(folder, path)
    try:
        prefix = f".{path.stem}.{TEMP_TAG}{os.getpid()}."
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=".tmp" + path.suffix)
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
