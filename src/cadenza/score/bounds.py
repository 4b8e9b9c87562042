"""Bounds on every score read: checked right after reading, before any other work touches it.

Each check raises one ScoreError line naming the file and what is wrong, with the limit from
``cadenza.limits``; the limits marked *force* there are lifted by ``force=True`` (the CLI's ``--force``).
The MIDI header checks run on the raw bytes, before symusic parses them: a 10,000-track file is
refused without building 10,000 tracks, and a division of 0 never reaches a division.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from xml.etree import ElementTree

import numpy as np
import symusic

from cadenza.errors import ScoreError, shown
from cadenza.limits import FORCE, LIMITS, cap
from cadenza.score.build import ticks_to_seconds


def _lift(limit: str) -> str:
    return " (--force lifts this)" if limit in FORCE else ""


def check_count(where: str, count: int, noun: str, limit: str, force: bool) -> None:
    """'<where> has 10,000 tracks; cadenza takes at most 256 (--force lifts this)' past the limit."""
    if count > cap(limit, force):
        raise ScoreError(f"{where} has {count:,} {noun}; cadenza takes at most {getattr(LIMITS, limit):,}"
                         f"{_lift(limit)}")


def check_size(where: str, size: int, what: str, limit: str, force: bool) -> None:
    """'<where> is 30,000,000 bytes; cadenza takes at most 20,000,000 (--force lifts this)'."""
    if size > cap(limit, force):
        raise ScoreError(f"{where} {what} {size:,} bytes; cadenza takes at most {getattr(LIMITS, limit):,}"
                         f"{_lift(limit)}")


# ---------------------------------------------------------------------------------------- raw MIDI

def check_midi_header(data: bytes, name: str, track_chunks: int, force: bool) -> None:
    """Division and track count from the header (and the MTrk chunks actually present)."""
    division = int.from_bytes(data[12:14], "big")
    if division & 0x8000:  # SMPTE frames per second and ticks per frame: symusic cannot read it
        raise ScoreError(f"{name} counts time in SMPTE frames, not ticks per quarter note; cadenza cannot read it")
    _check_tpq(name, division)
    # the header's count and the chunks found can disagree; the chunks are counted up to one past the limit
    declared = int.from_bytes(data[10:12], "big")
    if track_chunks > max(declared, cap("tracks", force)):
        raise ScoreError(f"{name} has more than {LIMITS.tracks:,} tracks; cadenza takes at most {LIMITS.tracks:,}"
                         f"{_lift('tracks')}")
    check_count(name, max(declared, track_chunks), "tracks", "tracks", force)


def _check_tpq(name: str, tpq: int) -> None:
    if tpq <= 0:
        raise ScoreError(f"{name} has {tpq} ticks per quarter note (its time division); it needs at least 1")
    if tpq > LIMITS.ticks_per_quarter_max:
        raise ScoreError(f"{name} has {tpq:,} ticks per quarter note; cadenza takes at most "
                         f"{LIMITS.ticks_per_quarter_max:,}")


# -------------------------------------------------------------------------------------------- .mxl

def check_zip(data: bytes, name: str, force: bool) -> None:
    """Refuse a zip (.mxl) whose entries unzip past LIMITS.unzipped_bytes, reading only its directory.

    The sizes are the ones the zip declares, and they are enough: Python's zipfile (which music21
    uses) never returns more than an entry's declared size, however the data was compressed.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            total = sum(info.file_size for info in z.infolist())
    # NotImplementedError: a zip version zipfile does not know (a version byte above 63; found by fuzzing)
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as e:
        raise ScoreError(f"{name} is not a readable MusicXML file: {e}") from None
    check_size(name, total, "unzips to", "unzipped_bytes", force)


def musicxml_text(data: bytes, name: str) -> bytes:
    """The score document of a MusicXML file: the file itself, or an .mxl's rootfile (its sizes already
    checked by check_zip)."""
    if not zipfile.is_zipfile(io.BytesIO(data)):
        return data
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            names = [n for n in z.namelist() if not n.startswith("META-INF/")]
            if "META-INF/container.xml" in z.namelist():
                root = ElementTree.fromstring(z.read("META-INF/container.xml"))
                names = [e.get("full-path") for e in root.iter() if e.tag.endswith("rootfile")] + names
            return z.read(names[0])
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, KeyError, IndexError, zlib.error,
            EOFError, ElementTree.ParseError, LookupError) as e:  # zlib: corrupt data; Lookup: unknown encoding
        raise ScoreError(f"{name} is not a readable MusicXML file: {e or 'no score inside'}") from None


def check_musicxml(data: bytes, name: str, force: bool) -> None:
    """What makes music21's reader slow or huge, refused before it runs: measures (its reader is
    quadratic in a part's measures), notes, a time signature's beats (it builds each one), and divisions
    and tempos that are not positive numbers. One pass of Python's own XML parser (expat: entity
    expansion is bounded), element by element."""
    parts: dict[str, int] = {}  # measures per part id
    part, notes, timewise = "", 0, False
    try:
        for event, el in ElementTree.iterparse(io.BytesIO(data), events=("start", "end")):
            tag = el.tag.rpartition("}")[2]
            if event == "start":
                timewise |= tag == "score-timewise"
                part = el.get("id", part) if tag == "part" else part
            elif tag == "note":
                notes += 1
            elif tag == "measure" or (tag == "part" and timewise):
                if (tag == "part") == timewise:  # partwise: a measure in a part; timewise: a part in a measure
                    parts[part] = parts.get(part, 0) + 1
                if tag == "measure":
                    el.clear()  # what was checked is not kept
            else:
                _check_musicxml_value(tag, el, name)
    except (ElementTree.ParseError, LookupError, ValueError) as e:  # LookupError: an unknown encoding
        raise ScoreError(f"{name} is not a readable MusicXML file: {e}") from None
    check_count(name, notes, "notes", "notes", force)
    check_count(name, sum(parts.values()), "measures", "measures", force)
    for pid, count in parts.items():
        check_count(f"{name} part {shown(pid, 20)}", count, "measures", "measures_per_part", force)


def _check_musicxml_value(tag: str, el, name: str) -> None:
    if tag == "beats":
        try:
            beats = sum(int(b) for b in (el.text or "").replace("+", " ").split())
        except ValueError:
            beats = -1
        if not 1 <= beats <= LIMITS.beats:
            raise ScoreError(f"{name} has a time signature of {shown(el.text, 20)} beats; cadenza takes 1 to "
                             f"{LIMITS.beats}")
    elif tag in ("beat-type", "divisions", "per-minute") or (tag == "sound" and el.get("tempo") is not None):
        text = el.get("tempo") if tag == "sound" else el.text
        try:
            value = float(text or "")
        except ValueError:
            value = float("nan")
        if not 0 < value < float("inf"):
            what = "tempo" if tag in ("sound", "per-minute") else tag
            raise ScoreError(f"{name} has a {what} of {shown(text, 20)}; it must be a positive number")


# ----------------------------------------------------------------------------------- parsed score

def check_score(score: symusic.Score, name: str, force: bool = False) -> None:
    """Resolution, tracks, notes, tempos, the longest note and the length, in that order."""
    _check_tpq(name, score.ticks_per_quarter)
    check_count(name, len(score.tracks), "tracks", "tracks", force)
    check_count(name, int(score.note_num()), "notes", "notes", force)
    _check_tempos(score, name)
    _check_meters(score, name)
    _check_note_lengths(score, name, force)
    seconds = float(ticks_to_seconds(score, [score.end()])[0])
    if seconds > cap("score_seconds", force):
        raise ScoreError(f"{name} lasts {_duration(seconds)}; cadenza takes scores up to "
                         f"{_duration(LIMITS.score_seconds)}{_lift('score_seconds')}")


def _check_tempos(score: symusic.Score, name: str) -> None:
    for t in score.tempos:
        # from mspq (microseconds per quarter): a MIDI tempo of 0 is infinitely fast, not a ZeroDivisionError
        qpm = 60_000_000 / t.mspq if t.mspq > 0 else float("inf")
        if not LIMITS.tempo_min <= qpm <= LIMITS.tempo_max:
            shown = "an infinite tempo (0 microseconds per quarter note)" if qpm == float("inf") else \
                f"a tempo of {qpm:,.4g} quarter notes per minute"
            raise ScoreError(f"{name} has {shown} at tick {t.time:,}; cadenza takes "
                             f"{LIMITS.tempo_min:g} to {LIMITS.tempo_max:g} quarter notes per minute")


def _check_meters(score: symusic.Score, name: str) -> None:
    """Time signatures of 1 to LIMITS.beats beats of a whole to a 128th note: bars are counted from them
    (an ABC 'M:99999999/1' became 255/1, bars of 1,020 quarter notes; a denominator of 0 or 256 is no
    meter at all)."""
    for ts in score.time_signatures:
        num, den = int(ts.numerator), int(ts.denominator)
        if not (1 <= num <= LIMITS.beats and 1 <= den <= 128 and den & (den - 1) == 0):
            raise ScoreError(f"{name} has a time signature of {num}/{den} at tick {ts.time:,}; cadenza takes 1 to "
                             f"{LIMITS.beats} beats of a whole note to a 128th")


def _check_note_lengths(score: symusic.Score, name: str, force: bool) -> None:
    """The longest note in seconds, at the score's own tempos (render allocates by it)."""
    for k, track in enumerate(score.tracks):
        if not len(track.notes):
            continue
        arr = track.notes.numpy()
        start = arr["time"].astype(np.float64)
        lengths = ticks_to_seconds(score, start + arr["duration"]) - ticks_to_seconds(score, start)
        i = int(np.argmax(lengths))
        if lengths[i] > cap("note_seconds", force):
            at = float(ticks_to_seconds(score, [start[i]])[0])
            raise ScoreError(f"{name} has a note {_duration(float(lengths[i]))} long (track {k + 1}, at "
                             f"{_duration(at)}); cadenza takes notes up to {_duration(LIMITS.note_seconds)}"
                             f"{_lift('note_seconds')}")


def _duration(seconds: float) -> str:
    """Seconds for people, with thousands separators: '600 s', '279,620 s', '0.25 s'."""
    return f"{seconds:,.0f} s" if seconds >= 10 else f"{seconds:.3g} s"
