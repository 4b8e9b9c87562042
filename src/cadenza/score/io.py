"""Reading and writing score files; every failure becomes a one-line ScoreError."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import warnings
import zipfile
from io import BytesIO
from pathlib import Path

import symusic

from cadenza.errors import ScoreError
from cadenza.files import atomic_output, check_output
from cadenza.limits import LIMITS, cap
from cadenza.score.abc import score_to_abc
from cadenza.score.bounds import (check_midi_header, check_musicxml, check_score, check_size, check_zip,
                                   musicxml_text)
from cadenza.score.build import count_notes

MIDI_SUFFIXES = (".mid", ".midi")
ABC_SUFFIXES = (".abc",)
XML_SUFFIXES = (".musicxml", ".mxl", ".xml")
SUFFIXES = MIDI_SUFFIXES + ABC_SUFFIXES + XML_SUFFIXES

# ABC header fields that abc2midi (inside symusic) understands; others (Y:, E:, ...) make it print
# warnings, so such lines are dropped before parsing.
_ABC_FIELDS = set("ABCDFGHIKLMmNOPQRrSsTUVWwXZ")
_FIELD_RE = re.compile(r"^([A-Za-z]):")


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

def read_score(path: str | os.PathLike, force: bool = False) -> symusic.Score:
    """Read a .mid/.midi, .abc (first tune) or .musicxml/.mxl/.xml file as a tick-based Score.

    The input limits of ``cadenza.limits`` are checked as the file is read, before any other work;
    ``force=True`` (the CLI's ``--force``) lifts the ones marked *force* there.
    """
    path = Path(path)
    suffix = _suffix(path)
    data = _read_bytes(path, force)
    if not data.strip():
        raise ScoreError(f"{path.name} is empty")
    if suffix in MIDI_SUFFIXES:
        score = _read_midi(data, path.name, force)
    elif suffix in ABC_SUFFIXES:
        text = _decode(data, path.name)
        _refuse_file_directives(text, path.name)
        tunes = _split_tunes(text)
        if not tunes:
            raise ScoreError(f"{path.name} has no ABC tune (no 'X:' line and no notes)")
        score = _abc_to_score(tunes[0][1], path.name, force)
    else:
        score = _read_musicxml(path, data, force)
    if count_notes(score) == 0:
        raise ScoreError(f"{path.name} has no notes")
    return score


def _read_bytes(path: Path, force: bool) -> bytes:
    """The file's bytes, never reading more than one byte past LIMITS.file_bytes (unless forced)."""
    try:
        with open(path, "rb") as f:
            check_size(path.name, os.fstat(f.fileno()).st_size, "is", "file_bytes", force)
            data = f.read() if force else f.read(LIMITS.file_bytes + 1)
    except FileNotFoundError:
        raise ScoreError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ScoreError(f"{path}: is a folder, not a score file") from None
    except OSError as e:
        raise ScoreError(f"cannot read {path}: {e.strerror or _one_line(e)}") from None
    # a device or a file that grew while we read it: its size said nothing
    check_size(path.name, len(data), "is at least", "file_bytes", force)
    return data


def _read_midi(data: bytes, name: str, force: bool) -> symusic.Score:
    if not data.startswith(b"MThd"):
        raise ScoreError(f"{name} is not a MIDI file (it does not start with 'MThd')")
    problem, tracks = _midi_structure(data, cap("tracks", force))
    if problem:
        raise ScoreError(f"{name} is truncated or corrupt: {problem}")
    check_midi_header(data, name, tracks, force)  # division and track count, before symusic parses
    try:
        score = symusic.Score.from_midi(data)
    except Exception as e:  # symusic raises RuntimeError with C++ text such as 'Invalid chunk length'
        raise ScoreError(f"{name} is truncated or corrupt: {_one_line(e).removesuffix(': iostream error')}") from None
    check_score(score, name, force)
    return score


def _midi_structure(data: bytes, max_tracks: float) -> tuple[str | None, int]:
    """(problem or None, MTrk chunks found). We walk the chunks ourselves: symusic quietly accepts a
    file cut right after its header (returning an empty score), which would then be reported as
    'has no notes'. The walk stops past `max_tracks` chunks: that file is refused for its tracks."""
    if len(data) < 14:
        return "the header is incomplete", 0
    header_len = int.from_bytes(data[4:8], "big")
    declared = int.from_bytes(data[10:12], "big")
    pos, found = 8 + header_len, 0
    while pos + 8 <= len(data) and found <= max_tracks:
        length = int.from_bytes(data[pos + 4:pos + 8], "big")
        if pos + 8 + length > len(data):
            return f"chunk {found + 1} needs {length} bytes but only {len(data) - pos - 8} remain", found
        found += data[pos:pos + 4] == b"MTrk"
        pos += 8 + length
    if found < declared and found <= max_tracks:
        return f"the header announces {declared} tracks but {found} are complete", found
    return None, found


def _read_musicxml(path: Path, data: bytes, force: bool) -> symusic.Score:
    # a zip (.mxl; or any zip, wherever its directory sits): size its entries before music21 unzips one
    if path.suffix.lower() == ".mxl" or zipfile.is_zipfile(BytesIO(data)):
        check_zip(data, path.name, force)
    check_musicxml(musicxml_text(data, path.name), path.name, force)
    import music21  # imported here: slow to import and only needed for MusicXML

    from cadenza.score.convert import from_music21

    try:
        # forceSource: music21 would otherwise load a pickle from its scratch folder (unpickling what
        # anyone who can write there left) and write one there for every file read
        with warnings.catch_warnings():  # music21's MusicXMLWarning lines would come before cadenza's one line
            warnings.simplefilter("ignore")
            stream = music21.converter.parse(str(path), format="musicxml", forceSource=True)
    except Exception as e:  # music21 raises many exception kinds for bad XML
        raise ScoreError(f"{path.name} is not a readable MusicXML file: {_one_line(e)}") from None
    try:
        score = from_music21(stream)
    except ScoreError as e:
        raise ScoreError(f"{path.name}: {e}") from None
    check_score(score, path.name, force)
    return score


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


# abc2midi reads another file for two directives: '%%abc-include FILE' and '%%MIDI ptstress FILE' (its
# manual and its source; an I: field, an inline [I:...] field or a +: continuation can carry either). ABC
# must never reach outside itself (an upload's '%%abc-include /etc/passwd' became pitches), so a directive
# or field line naming either, in any spelling containing the word, is refused.
_DIRECTIVE_RE = re.compile(r"%%|I:|^\s*\+:", re.IGNORECASE)
_READS_FILE_RE = re.compile(r"include|ptstress", re.IGNORECASE)


def _refuse_file_directives(text: str, name: str) -> None:
    """One ScoreError naming the file and line of the first directive that would read a file."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")  # the same lines abc2midi gets (_split_tunes)
    for number, line in enumerate(text.split("\n"), 1):
        if _DIRECTIVE_RE.search(line) and _READS_FILE_RE.search(line):
            shown = line.strip() if len(line.strip()) <= 60 else line.strip()[:57] + "..."
            raise ScoreError(f"{name} line {number}: {shown!r} would make abc2midi read another file; "
                             f"cadenza takes ABC that stands alone")


# abc2midi (the converter symusic's Score.from_abc runs) is bounded: a pathological tune is stopped
# after ABC_SECONDS of wall time and cannot map more than ABC_MEMORY bytes or write a MIDI file larger
# than LIMITS.file_bytes. Real tunes take milliseconds: the 1,034 Nottingham tunes took 5.3 ms each this
# way against 2.6 ms through Score.from_abc (which also starts one abc2midi per tune; the extra is the
# sh that sets the limits), and came out identical.
ABC_SECONDS = 20.0
ABC_MEMORY = 1 << 30
# ulimit: -v in KiB (the address space, RLIMIT_AS), -f in 512-byte blocks; where the system refuses
# -v (macOS), the time limit still holds. sh, not preexec_fn: that is unsafe in a threaded server.
_BOUNDED = f'ulimit -v {ABC_MEMORY // 1024} 2>/dev/null; ulimit -f {LIMITS.file_bytes // 512} && exec "$0" "$@"'


def _abc_to_midi(tune: str, where: str) -> bytes:
    """The MIDI abc2midi makes of one tune, run as symusic runs it ('in.abc -o out.mid -silent'), but
    bounded, in a fresh empty folder, and with its messages sent nowhere instead of our stdout."""
    exe = os.environ.get("SYMUSIC_ABC2MIDI", "")  # symusic sets it on import to its bundled binary
    with tempfile.TemporaryDirectory(prefix="cadenza-abc-") as tmp:
        Path(tmp, "tune.abc").write_text(tune, encoding="utf-8")
        args = [exe, "tune.abc", "-o", "tune.mid", "-silent"]
        if os.name == "posix":
            args = ["/bin/sh", "-c", _BOUNDED, *args]
        try:
            proc = subprocess.run(args, cwd=tmp, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, timeout=ABC_SECONDS, check=False)
        except subprocess.TimeoutExpired:  # run() has killed it
            raise ScoreError(f"{where}: the ABC tune took longer than {ABC_SECONDS:g} s to convert; "
                             f"cadenza stopped abc2midi") from None
        except OSError as e:
            raise ScoreError(f"cannot run abc2midi for {where}: {e.strerror or _one_line(e)}") from None
        out = Path(tmp, "tune.mid")
        if not out.is_file() or out.stat().st_size == 0:
            died = f" (it stopped with code {proc.returncode})" if proc.returncode else ""
            raise ScoreError(f"{where} is not a readable ABC tune: abc2midi made no MIDI of it{died}")
        return out.read_bytes()


# Ticks to snap ABC timings to: abc2midi shifts notes by a tick or so; 1/48 quarter keeps triplets.
_ABC_GRID = 48


def _abc_to_score(tune: str, where: str, force: bool = False) -> symusic.Score:
    data = _abc_to_midi(tune, where)
    try:
        score = symusic.Score.from_midi(data)
    except Exception as e:
        raise ScoreError(f"{where} is not a readable ABC tune: {_one_line(e)}") from None
    check_score(score, where, force)
    return _snap(score, score.ticks_per_quarter // _ABC_GRID or 1)


def _snap(score: symusic.Score, grid: int) -> symusic.Score:
    """Round note starts and ends to `grid` ticks (removes abc2midi's articulation offsets)."""
    for track in score.tracks:
        for n in track.notes:
            start = round(n.time / grid) * grid
            end = round((n.time + n.duration) / grid) * grid
            n.time, n.duration = start, max(grid, end - start)
    return score


def read_abc_tunes(source: str | os.PathLike, force: bool = False) -> list[tuple[str, symusic.Score]]:
    """(title, Score) for every tune of a multi-tune ABC file or text.

    `source` is a path, or ABC text (any str containing a newline or 'X:'). Tunes that fail to
    parse, break a limit of ``cadenza.limits`` or have no notes are skipped; a file or text with a
    directive that would read another file is refused whole. ``force`` is read_score's.
    """
    if isinstance(source, os.PathLike) or (isinstance(source, str) and "\n" not in source and "X:" not in source):
        path = Path(source)
        text, where = _decode(_read_bytes(path, force), path.name), path.name
    elif isinstance(source, str):
        text, where = source, "ABC text"
        check_size(where, len(text), "is at least", "file_bytes", force)
    else:
        raise ScoreError(f"ABC source must be a path or text, not {type(source).__name__}")
    _refuse_file_directives(text, where)
    result = []
    for title, tune in _split_tunes(text):
        try:
            score = _abc_to_score(tune, where, force)
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
