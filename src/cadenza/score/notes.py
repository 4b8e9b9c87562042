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
"""

from __future__ import annotations

import re
from fractions import Fraction

import symusic

from cadenza.errors import ScoreError
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
    return f'"{text}"' if len(text) <= 60 else f'"{text[:57]}..."'


def _duration(dur: str, dots: str) -> Fraction | None:
    """Quarter-note length from suffix text, or None when there is no suffix."""
    if not dur and not dots:
        return None
    value = Fraction(1)
    for op, num in re.findall(r"([*:/])(\d+(?:\.\d+)?)?", dur):
        n = Fraction(num) if num else Fraction(2)
        value = value / n if op == "/" else value * n
    value *= 2 - Fraction(1, 2 ** len(dots))  # one dot 1.5, two dots 1.75
    return value


def _note(token: str, pos: int, text: str) -> tuple[int, Fraction | None]:
    m = _NOTE_RE.match(token)
    if not m:
        raise ScoreError(f"unknown note name {token!r} at position {pos} in {_quote(text)}")
    octave = int(m["oct"]) if m["oct"] is not None else 4
    pitch = 12 * (octave + 1) + _STEP[m["step"].upper()] + _ACCIDENTAL[m["acc"] or ""]
    if not 0 <= pitch <= 127:
        raise ScoreError(f"note {token!r} at position {pos} in {_quote(text)} is outside the MIDI range")
    dur = _duration(m["dur"], m["dots"])
    if dur is not None and dur <= 0:
        raise ScoreError(f"note {token!r} at position {pos} in {_quote(text)} has zero length")
    return pitch, dur


def _chord(members: list[tuple[str, int]], suffix: Fraction | None, text: str) -> list[tuple[int, Fraction]]:
    parsed = [_note(tok, p, text) for tok, p in members]
    default = suffix if suffix is not None else Fraction(1)
    return [(pitch, dur if dur is not None else default) for pitch, dur in parsed]


def parse_notes(text: str, tempo: float = 120, program: int | str = 0,
                time_signature: tuple[int, int] = (4, 4)) -> symusic.Score:
    """Parse typed notes into a one-track Score (tpq 480) with the given tempo, program and meter."""
    if not isinstance(text, str):
        raise ScoreError(f"notes must be text, not {type(text).__name__}")
    prog, is_drum = parse_instrument(program)
    score = new_score(tempo, time_signature)
    tpq = score.ticks_per_quarter
    track = symusic.Track("Notes", prog, is_drum)
    now = Fraction(0)  # in quarter notes
    for m in _TOKEN_RE.finditer(text):
        token, pos = m.group(), m.start()
        if token.startswith("|"):
            continue
        if token.startswith("["):
            close = token.find("]")
            if close < 0:
                raise ScoreError(f"chord at position {pos} in {_quote(text)} has no closing ']'")
            suffix_text = token[close + 1:]
            sm = re.fullmatch(_DUR, suffix_text)
            if not sm:
                raise ScoreError(f"bad chord length {suffix_text!r} at position {pos + close + 1} in {_quote(text)}")
            inner = token[1:close]
            members = [(t.group(), pos + 1 + t.start()) for t in re.finditer(r"\S+", inner)]
            if not members:
                raise ScoreError(f"empty chord at position {pos} in {_quote(text)}")
            notes = _chord(members, _duration(sm["dur"], sm["dots"]), text)
        elif _REST_RE.match(token):
            rm = _REST_RE.match(token)
            now += _duration(rm["dur"], rm["dots"]) or Fraction(1)
            continue
        elif "+" in token:
            members, offset = [], 0
            for part in token.split("+"):
                members.append((part, pos + offset))
                offset += len(part) + 1
            last = _NOTE_RE.match(members[-1][0])
            suffix = _duration(last["dur"], last["dots"]) if last else None
            notes = _chord(members, suffix, text)
        else:
            notes = _chord([(token, pos)], None, text)
        for pitch, dur in notes:
            track.notes.append(symusic.Note(round(now * tpq), max(1, round(dur * tpq)), pitch, VELOCITY))
        now += max(dur for _, dur in notes)
    if not len(track.notes):
        raise ScoreError(f"no notes in {_quote(text)}")
    score.tracks.append(track)
    return score
