"""Typed notes such as "E4 D4 C4 D4 | E4 E4 E4*2" turned into a one-track Score.

Syntax (durations are multiples of a quarter note):
  note     letter A-G, optional accidental (# s ♯ x = sharp / double sharp, b ♭ bb = flat), optional
           octave (C4 = MIDI 60 = middle C; default 4): C4, F#3, Bb, Cs5
  duration suffixes, combinable: /2 (eighth), /3 (triplet eighth), / (= /2), *2 or :2 (half),
           *1.5, trailing dots: C4. = 1.5, C4.. = 1.75
  rest     r or R with the same suffixes: r, R/2, r*2
  chord    [C4 E4 G4]*2 or C4+E4+G4/2; a suffix on the bracket (or on the last member of a '+'
           chord) applies to members that have none; time moves on by the longest member
  bar      | (cosmetic; not checked against the meter)
  limits   a length divided by 0, a note longer than LIMITS.note_seconds, notes lasting past
           LIMITS.score_seconds or more than LIMITS.notes notes (cadenza.limits) are refused
"""

from __future__ import annotations

import functools
import re
from fractions import Fraction

import symusic

from cadenza.errors import ScoreError, shown
from cadenza.limits import LIMITS
from cadenza.score.build import new_score
from cadenza.score.instruments import parse_instrument

VELOCITY = 80
_STEP = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_ACCIDENTAL = {"": 0, "#": 1, "s": 1, "♯": 1, "x": 2, "##": 2, "b": -1, "♭": -1, "bb": -2}
_DUR = r"(?P<dur>(?:[*:]\d+(?:\.\d+)?|/(?:\d+(?:\.\d+)?)?)*)(?P<dots>\.*)"
_NOTE_RE = re.compile(r"(?P<step>[A-Ga-g])(?P<acc>##|bb|#|b|s|x|♯|♭)?(?P<oct>-?\d)?" + _DUR + r"$")
_REST_RE = re.compile(r"[rR]" + _DUR + r"$")
# Tokens: bracket chords (with any suffix), bar lines, or any run of other non-space characters.
_TOKEN_RE = re.compile(r"\[[^\]]*\]?[^\s|\[]*|\|+|[^\s|\[]+")


_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


def pitch_name(pitch: int) -> str:
    """MIDI pitch as a name this module reads back: 60 -> "C4", 70 -> "Bb4"."""
    return f"{_NAMES[pitch % 12]}{pitch // 12 - 1}"


def _quote(text: str) -> str:
    return shown(text, 60, '"')


# Lengths are counted in units of 1/1441440 quarter note (2^5 * 3^2 * 5 * 7 * 11 * 13: every tuplet up
# to 16 stays exact) and positions are whole units: lengths such as /999983 /999979 ... cannot grow a
# running fraction's denominator note by note, and sums stay fast. At 480 ticks per quarter a unit is
# 1/3003 tick, an odd fraction, so rounding to ticks never meets a tie.
_GRID = 1441440
# No note or rest is longer than this at any tempo cadenza takes (at most LIMITS.tempo_max); checked
# while the length is computed, so that 'C4*9*9*9*9' stays a small number.
_MAX_QUARTERS = LIMITS.note_seconds * LIMITS.tempo_max / 60
_MAX_MARKS = 8  # length marks (*2, /3, ...) and dots on one token: real lengths need two or three


@functools.lru_cache(maxsize=4096)
def _units(dur: str, dots: str) -> int:
    """Length of a suffix in 1/_GRID quarter notes (at least 1 unless it is 0); ValueError(why) if bad."""
    marks = re.findall(r"([*:/])(\d+(?:\.\d+)?)?", dur)
    if len(marks) + len(dots) > _MAX_MARKS:
        raise ValueError(f"has more than {_MAX_MARKS} length marks and dots")
    value = Fraction(1)
    for op, num in marks:
        try:
            n = Fraction(num) if num else Fraction(2)
        except ValueError:  # more digits than Python turns into a number (4,300)
            raise ValueError("has a length with too many digits") from None
        if op == "/" and n == 0:
            raise ValueError("divides its length by 0")
        value = value / n if op == "/" else value * n
        if value > _MAX_QUARTERS:
            shown = f"{float(value):,.6g}" if value < 10 ** 300 else "over 1e+300"  # float() would overflow
            raise ValueError(f"is {shown} quarter notes long; cadenza takes at most "
                             f"{_MAX_QUARTERS:,.0f} ({LIMITS.note_seconds:g} s at {LIMITS.tempo_max:g} bpm)")
    value *= 2 - Fraction(1, 2 ** len(dots))  # one dot 1.5, two dots 1.75
    return max(round(value * _GRID), 1) if value else 0


def _duration(dur: str, dots: str, token: str, pos: int, text: str, kind: str = "note") -> int | None:
    """Length in 1/_GRID quarter notes from suffix text, or None when there is no suffix."""
    if not dur and not dots:
        return None
    try:
        return _units(dur, dots)
    except ValueError as e:
        raise ScoreError(f"{_where(token, pos, text, kind)} {e}") from None


def _where(token: str, pos: int, text: str, kind: str = "note") -> str:
    shown = repr(token) if len(token) <= 30 else repr(token[:27] + "...")
    return f"{kind} {shown} at position {pos} in {_quote(text)}"


def _note(token: str, pos: int, text: str) -> tuple[int, int | None]:
    m = _NOTE_RE.match(token)
    if not m:
        raise ScoreError(f"unknown note name {token!r} at position {pos} in {_quote(text)}")
    octave = int(m["oct"]) if m["oct"] is not None else 4
    pitch = 12 * (octave + 1) + _STEP[m["step"].upper()] + _ACCIDENTAL[m["acc"] or ""]
    if not 0 <= pitch <= 127:
        raise ScoreError(f"note {token!r} at position {pos} in {_quote(text)} is outside the MIDI range")
    dur = _duration(m["dur"], m["dots"], token, pos, text)
    if dur is not None and dur <= 0:
        raise ScoreError(f"note {token!r} at position {pos} in {_quote(text)} has zero length")
    return pitch, dur


def _chord(members: list[tuple[str, int]], suffix: int | None, text: str) -> list[tuple[int, int]]:
    parsed = [_note(tok, p, text) for tok, p in members]
    default = suffix if suffix is not None else _GRID
    return [(pitch, dur if dur is not None else default) for pitch, dur in parsed]


def _bracket_chord(token: str, pos: int, text: str) -> list[tuple[int, int]]:
    close = token.find("]")
    if close < 0:
        raise ScoreError(f"chord at position {pos} in {_quote(text)} has no closing ']'")
    suffix_text = token[close + 1:]
    sm = re.fullmatch(_DUR, suffix_text)
    if not sm:
        raise ScoreError(f"bad chord length {suffix_text!r} at position {pos + close + 1} in {_quote(text)}")
    members = [(t.group(), pos + 1 + t.start()) for t in re.finditer(r"\S+", token[1:close])]
    if not members:
        raise ScoreError(f"empty chord at position {pos} in {_quote(text)}")
    return _chord(members, _duration(sm["dur"], sm["dots"], token, pos, text, "chord"), text)


def _plus_chord(token: str, pos: int, text: str) -> list[tuple[int, int]]:
    members, offset = [], 0
    for part in token.split("+"):
        members.append((part, pos + offset))
        offset += len(part) + 1
    last = _NOTE_RE.match(members[-1][0])
    suffix = _duration(last["dur"], last["dots"], token, pos, text, "chord") if last else None
    return _chord(members, suffix, text)


def _event(token: str, pos: int, text: str) -> tuple[list[tuple[int, int]], int]:
    """([(pitch, units)], units time moves on) for one token: a rest, a chord or a note."""
    if token.startswith("["):
        notes = _bracket_chord(token, pos, text)
    elif rm := _REST_RE.match(token):
        dur = _duration(rm["dur"], rm["dots"], token, pos, text, "rest")
        if dur == 0:
            raise ScoreError(f"{_where(token, pos, text, 'rest')} has zero length")
        return [], _GRID if dur is None else dur
    elif "+" in token:
        notes = _plus_chord(token, pos, text)
    else:
        notes = _chord([(token, pos)], None, text)
    return notes, max(dur for _, dur in notes)


def _check_bounds(notes: list, step: int, now: int, count: int, qpm: float, token: str, pos: int,
                  text: str) -> None:
    """The longest note, the running length and the note count against cadenza.limits."""
    seconds = 60 / (qpm * _GRID)  # per unit
    if notes and step * seconds > LIMITS.note_seconds:
        raise ScoreError(f"{_where(token, pos, text)} lasts {step * seconds:,.6g} s at {qpm:g} bpm; cadenza "
                         f"takes notes up to {LIMITS.note_seconds:g} s")
    if now * seconds > LIMITS.score_seconds:
        raise ScoreError(f"the notes last more than {LIMITS.score_seconds:g} s at {qpm:g} bpm by "
                         f"{_where(token, pos, text)}; cadenza takes up to {LIMITS.score_seconds:g} s")
    if count > LIMITS.notes:
        raise ScoreError(f"{_quote(text)} has more than {LIMITS.notes:,} notes, the most cadenza takes")


def _ticks(units: int, tpq: int) -> int:
    """Units of 1/_GRID quarter as ticks, rounded half up in whole numbers."""
    return (2 * units * tpq + _GRID) // (2 * _GRID)


def parse_notes(text: str, tempo: float = 120, program: int | str = 0,
                time_signature: tuple[int, int] = (4, 4)) -> symusic.Score:
    """Parse typed notes into a one-track Score (tpq 480) with the given tempo, program and meter.

    Every malformed token, and any note, length or count past ``cadenza.limits``, is one ScoreError
    naming the token and its position.
    """
    if not isinstance(text, str):
        raise ScoreError(f"notes must be text, not {type(text).__name__}")
    prog, is_drum = parse_instrument(program)
    score = new_score(tempo, time_signature)
    tpq, qpm = score.ticks_per_quarter, float(score.tempos[0].qpm)
    track = symusic.Track("Notes", prog, is_drum)
    now = 0  # in 1/_GRID quarter notes
    for m in _TOKEN_RE.finditer(text):
        token, pos = m.group(), m.start()
        if token.startswith("|"):
            continue
        notes, step = _event(token, pos, text)
        _check_bounds(notes, step, now + step, len(track.notes) + len(notes), qpm, token, pos, text)
        for pitch, dur in notes:
            track.notes.append(symusic.Note(_ticks(now, tpq), max(1, _ticks(dur, tpq)), pitch, VELOCITY))
        now += step
    if not len(track.notes):
        raise ScoreError(f"no notes in {_quote(text)}")
    score.tracks.append(track)
    return score
