"""Reading and writing score files; every failure becomes a one-line ScoreError."""

from __future__ import annotations

import os
import re
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import symusic

from cadenza.errors import ScoreError
from cadenza.files import atomic_output, check_output
from cadenza.score.abc import score_to_abc
from cadenza.score.build import count_notes

MIDI_SUFFIXES = (".mid", ".midi")
ABC_SUFFIXES = (".abc",)
XML_SUFFIXES = (".musicxml", ".mxl", ".xml")
SUFFIXES = MIDI_SUFFIXES + ABC_SUFFIXES + XML_SUFFIXES

# ABC header fields that abc2midi (inside symusic) understands; others (Y:, E:, ...) make it print
# warnings, so such lines are dropped before parsing.
_ABC_FIELDS = set("ABCDFGHIKLMmNOPQRrSsTUVWwXZ")
_FIELD_RE = re.compile(r"^([A-Za-z]):")
_abc_lock = threading.Lock()


def _one_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        known = ", ".join(SUFFIXES)
        raise ScoreError(f"{path.name}: unknown score format {suffix or '(no suffix)'!r}; use one of {known}")
    return suffix


# ---------------------------------------------------------------------------------------------- read

def read_score(path: str | os.PathLike) -> symusic.Score:
    """Read a .mid/.midi, .abc (first tune) or .musicxml/.mxl/.xml file as a tick-based Score."""
    path = Path(path)
    suffix = _suffix(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ScoreError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ScoreError(f"{path}: is a folder, not a score file") from None
    except OSError as e:
        raise ScoreError(f"cannot read {path}: {e.strerror or _one_line(e)}") from None
    if not data.strip():
        raise ScoreError(f"{path.name} is empty")
    if suffix in MIDI_SUFFIXES:
        score = _read_midi(data, path.name)
    elif suffix in ABC_SUFFIXES:
        tunes = _split_tunes(_decode(data, path.name))
        if not tunes:
            raise ScoreError(f"{path.name} has no ABC tune (no 'X:' line and no notes)")
        score = _abc_to_score(tunes[0][1], path.name)
    else:
        score = _read_musicxml(path)
    if count_notes(score) == 0:
        raise ScoreError(f"{path.name} has no notes")
    return score


def _read_midi(data: bytes, name: str) -> symusic.Score:
    if not data.startswith(b"MThd"):
        raise ScoreError(f"{name} is not a MIDI file (it does not start with 'MThd')")
    problem = _midi_structure_problem(data)
    if problem:
        raise ScoreError(f"{name} is truncated or corrupt: {problem}")
    try:
        return symusic.Score.from_midi(data)
    except Exception as e:  # symusic raises RuntimeError with C++ text such as 'Invalid chunk length'
        raise ScoreError(f"{name} is truncated or corrupt: {_one_line(e).removesuffix(': iostream error')}") from None


def _midi_structure_problem(data: bytes) -> str | None:
    """Walk the chunks ourselves: symusic quietly accepts a file cut right after its header
    (returning an empty score), which would then be reported as 'has no notes'."""
    if len(data) < 14:
        return "the header is incomplete"
    header_len = int.from_bytes(data[4:8], "big")
    declared = int.from_bytes(data[10:12], "big")
    pos, found = 8 + header_len, 0
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos + 4:pos + 8], "big")
        if pos + 8 + length > len(data):
            return f"chunk {found + 1} needs {length} bytes but only {len(data) - pos - 8} remain"
        found += data[pos:pos + 4] == b"MTrk"
        pos += 8 + length
    if found < declared:
        return f"the header announces {declared} tracks but {found} are complete"
    return None


def _read_musicxml(path: Path) -> symusic.Score:
    import music21  # imported here: slow to import and only needed for MusicXML

    from cadenza.score.convert import from_music21

    try:
        stream = music21.converter.parse(str(path), format="musicxml")
    except Exception as e:  # music21 raises many exception kinds for bad XML
        raise ScoreError(f"{path.name} is not a readable MusicXML file: {_one_line(e)}") from None
    try:
        return from_music21(stream)
    except ScoreError as e:
        raise ScoreError(f"{path.name}: {e}") from None


def _decode(data: bytes, name: str) -> str:
    for encoding in ("utf-8", "latin-1"):  # old ABC collections are often latin-1
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise ScoreError(f"{name} is not a text file")  # unreachable: latin-1 decodes anything


def _split_tunes(text: str) -> list[tuple[str, str]]:
    """[(title, tune text)] for each 'X:' tune; text with no X: line counts as one tune."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    starts = [i for i, ln in enumerate(lines) if ln.startswith("X:")]
    if not starts:
        if not re.search(r"^K:", text, re.M) and not text.strip():
            return []
        lines, starts = ["X:1", *lines], [0]
    tunes = []
    for k, start in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else len(lines)
        body = [ln for ln in lines[start:end] if not _unknown_field(ln)]
        titles = [ln[2:].strip() for ln in body if ln.startswith("T:")]
        number = body[0][2:].strip()
        tunes.append((titles[0] if titles and titles[0] else f"tune {number}", "\n".join(body) + "\n"))
    return tunes


def _unknown_field(line: str) -> bool:
    m = _FIELD_RE.match(line)
    return bool(m) and m.group(1) not in _ABC_FIELDS


@contextmanager
def _quiet():
    """Silence abc2midi, which symusic runs as a child process writing to our stdout/stderr."""
    with _abc_lock:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = [os.dup(1), os.dup(2)]
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in (*saved, devnull):
                os.close(fd)


# Ticks to snap ABC timings to: abc2midi shifts notes by a tick or so; 1/48 quarter keeps triplets.
_ABC_GRID = 48


def _abc_to_score(tune: str, where: str) -> symusic.Score:
    try:
        with _quiet():
            score = symusic.Score.from_abc(tune)
    except Exception as e:
        raise ScoreError(f"{where} is not a readable ABC tune: {_one_line(e)}") from None
    return _snap(score, score.ticks_per_quarter // _ABC_GRID or 1)


def _snap(score: symusic.Score, grid: int) -> symusic.Score:
    """Round note starts and ends to `grid` ticks (removes abc2midi's articulation offsets)."""
    for track in score.tracks:
        for n in track.notes:
            start = round(n.time / grid) * grid
            end = round((n.time + n.duration) / grid) * grid
            n.time, n.duration = start, max(grid, end - start)
    return score


def read_abc_tunes(source: str | os.PathLike) -> list[tuple[str, symusic.Score]]:
    """(title, Score) for every tune of a multi-tune ABC file or text.

    `source` is a path, or ABC text (any str containing a newline or 'X:'). Tunes that fail to
    parse or have no notes are skipped.
    """
    if isinstance(source, os.PathLike) or (isinstance(source, str) and "\n" not in source and "X:" not in source):
        path = Path(source)
        try:
            text = _decode(path.read_bytes(), path.name)
        except FileNotFoundError:
            raise ScoreError(f"{path}: file not found") from None
        except OSError as e:
            raise ScoreError(f"cannot read {path}: {e.strerror or _one_line(e)}") from None
        where = path.name
    elif isinstance(source, str):
        text, where = source, "ABC text"
    else:
        raise ScoreError(f"ABC source must be a path or text, not {type(source).__name__}")
    result = []
    for title, tune in _split_tunes(text):
        try:
            score = _abc_to_score(tune, where)
        except ScoreError:
            continue
        if score.note_num() > 0:
            result.append((title, score))
    return result


# --------------------------------------------------------------------------------------------- write

def write_score(score: symusic.Score, path: str | os.PathLike) -> Path:
    """Write the score by suffix (.mid/.midi, .abc, .musicxml/.xml/.mxl), atomically. Returns the path."""
    path = Path(path)
    suffix = _suffix(path)
    if not isinstance(score, symusic.Score):
        raise ScoreError(f"cannot write {path}: expected a symusic Score, not {type(score).__name__}")
    check_output(path, error=ScoreError)
    try:
        # a temporary file in the same folder (os.replace is atomic), with the real suffix for music21
        with atomic_output(path, error=ScoreError) as tmp:
            if suffix in MIDI_SUFFIXES:
                score.dump_midi(tmp)
            elif suffix in ABC_SUFFIXES:
                Path(tmp).write_text(score_to_abc(score, title=path.stem), encoding="utf-8")
            else:
                _write_musicxml(score, tmp, compressed=suffix == ".mxl", title=path.stem)
    except ScoreError:
        raise
    except Exception as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else _one_line(e)
        raise ScoreError(f"cannot write {path}: {reason}") from None
    return path


def _write_musicxml(score: symusic.Score, tmp: str, compressed: bool, title: str) -> None:
    import music21

    from cadenza.score.convert import to_music21

    m21 = to_music21(score)
    m21.metadata = music21.metadata.Metadata(title=title)
    m21.write("mxl" if compressed else "musicxml", fp=tmp)
