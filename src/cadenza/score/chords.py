"""Chord symbols such as "| Am | F | C G |" turned into a block-chord track.

A small hand-written table rather than music21.harmony.ChordSymbol: music21 reads '-' as a flat
('C-' is C-flat there, a minor chord in lead sheets), rejects some common spellings, and costs
milliseconds per symbol; a table is exact, fast and easy to extend.
"""

from __future__ import annotations

import re
from fractions import Fraction

import symusic

from cadenza.errors import ScoreError
from cadenza.score.build import new_score
from cadenza.score.instruments import parse_instrument

VELOCITY = 70
_ROOT = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_ACC = {"": 0, "#": 1, "♯": 1, "b": -1, "♭": -1}
_ROOT_RE = re.compile(r"([A-G])(#|♯|b|♭)?")

# Intervals above the root, in semitones, for each quality suffix.
_QUALITIES: dict[tuple[int, ...], tuple[str, ...]] = {
    (0, 4, 7): ("", "M", "maj", "major", "Δ"),
    (0, 3, 7): ("m", "min", "minor", "-", "mi"),
    (0, 3, 6): ("dim", "o", "°"),
    (0, 4, 8): ("aug", "+", "#5", "+5"),
    (0, 7): ("5",),
    (0, 2, 7): ("sus2",),
    (0, 5, 7): ("sus4", "sus"),
    (0, 4, 7, 9): ("6", "maj6", "M6"),
    (0, 3, 7, 9): ("m6", "min6", "-6"),
    (0, 4, 7, 10): ("7", "dom7"),
    (0, 4, 7, 11): ("maj7", "M7", "Δ7", "ma7", "j7"),
    (0, 3, 7, 10): ("m7", "min7", "-7", "mi7"),
    (0, 3, 7, 11): ("mM7", "mmaj7", "minmaj7", "m(maj7)", "-maj7", "-M7"),
    (0, 3, 6, 10): ("m7b5", "ø", "ø7", "min7b5", "-7b5", "m7(b5)"),
    (0, 3, 6, 9): ("dim7", "o7", "°7"),
    (0, 4, 8, 10): ("aug7", "+7", "7#5", "7+5"),
    (0, 4, 6, 10): ("7b5",),
    (0, 5, 7, 10): ("7sus4", "7sus"),
    (0, 2, 7, 10): ("7sus2",),
    (0, 4, 7, 14): ("add9", "add2", "2"),
    (0, 3, 7, 14): ("madd9", "m(add9)", "madd2"),
    (0, 4, 7, 9, 14): ("6/9", "69", "6add9"),
    (0, 4, 7, 10, 14): ("9", "dom9"),
    (0, 4, 7, 11, 14): ("maj9", "M9"),
    (0, 3, 7, 10, 14): ("m9", "min9", "-9"),
    (0, 4, 7, 10, 13): ("7b9",),
    (0, 4, 7, 10, 15): ("7#9",),
    (0, 4, 7, 10, 14, 17): ("11",),
    (0, 3, 7, 10, 14, 17): ("m11", "min11"),
    (0, 4, 7, 10, 14, 21): ("13",),
}
_SUFFIX: dict[str, tuple[int, ...]] = {s: iv for iv, names in _QUALITIES.items() for s in names}
_NO_CHORD = {"N.C.", "NC", "N.C", "n.c.", "nc"}  # a silent bar
_REPEAT = "%"  # repeat the previous chord


def _pitch_class(name: str) -> int | None:
    m = _ROOT_RE.fullmatch(name)
    return None if m is None else (_ROOT[m[1]] + _ACC[m[2] or ""]) % 12


def _parse(symbol: str) -> tuple[int, tuple[int, ...], int | None] | None:
    """(root pitch class, intervals, slash-bass pitch class or None), or None if not a chord."""
    m = _ROOT_RE.match(symbol)
    if m is None:
        return None
    root = (_ROOT[m[1]] + _ACC[m[2] or ""]) % 12
    rest = symbol[m.end():]
    if rest in _SUFFIX:  # checked first so that '6/9' is not read as a slash chord
        return root, _SUFFIX[rest], None
    if "/" in rest:
        quality, bass_name = rest.rsplit("/", 1)
        bass = _pitch_class(bass_name)
        if quality in _SUFFIX and bass is not None:
            return root, _SUFFIX[quality], bass
    return None


def chord_pitches(symbol: str, octave: int = 4) -> list[int]:
    """MIDI pitches (ascending) of a chord symbol as played by parse_chords.

    The chord is in root position with its root in `octave` (C4 = 60), plus a bass note one
    octave lower: the slash bass for 'C/E' style symbols, otherwise the root.
    So chord_pitches("C") == [48, 60, 64, 67] and chord_pitches("G/B") == [59, 67, 71, 74].
    Raises ScoreError for an unknown symbol.
    """
    parsed = _parse(symbol.strip()) if isinstance(symbol, str) else None
    if parsed is None:
        raise ScoreError(f"unknown chord symbol {symbol!r}")
    root, intervals, bass = parsed
    base = 12 * (octave + 1) + root
    upper = [base + i for i in intervals]
    low = 12 * octave + (root if bass is None else bass)  # bass in the octave below
    pitches = sorted({low, *upper})
    if not all(0 <= p <= 127 for p in pitches):
        raise ScoreError(f"chord {symbol!r} in octave {octave} is outside the MIDI range")
    return pitches


def parse_chords(text: str, tempo: float = 120, program: int | str = 0, beats_per_chord: float | None = None,
                 time_signature: tuple[int, int] = (4, 4), octave: int = 4) -> symusic.Score:
    """Parse chord symbols into a Score with one block-chord track named "Chords".

    Without bar lines every chord fills one bar; with bar lines ("| C G | Am |") the chords in a
    bar share it equally. beats_per_chord (in beats of the time signature) overrides both.
    "N.C." is a silent chord, "%" repeats the previous chord.
    """
    if not isinstance(text, str):
        raise ScoreError(f"chords must be text, not {type(text).__name__}")
    prog, is_drum = parse_instrument(program)
    score = new_score(tempo, time_signature)
    num, den = time_signature
    tpq = score.ticks_per_quarter
    beat = Fraction(4, int(den))  # one beat in quarter notes
    bar = beat * int(num)
    if beats_per_chord is not None:
        try:
            fixed = Fraction(beats_per_chord).limit_denominator(96) * beat
        except (TypeError, ValueError):
            raise ScoreError(f"beats per chord must be a number, not {beats_per_chord!r}") from None
        if fixed <= 0:
            raise ScoreError(f"beats per chord must be positive, not {beats_per_chord!r}")

    # Group (symbol, position) into bars; plain space-separated symbols are one bar each.
    tokens = [(m.group(), m.start()) for m in re.finditer(r"\||[^\s|]+", text)]
    if "|" in (t for t, _ in tokens):
        bars, current = [], []
        for tok, pos in tokens:
            if tok == "|":
                if current:
                    bars.append(current)
                current = []
            else:
                current.append((tok, pos))
        if current:
            bars.append(current)
    else:
        bars = [[t] for t in tokens]

    track = symusic.Track("Chords", prog, is_drum)
    now, previous, count = Fraction(0), None, 0
    for members in bars:
        for symbol, pos in members:
            length = fixed if beats_per_chord is not None else bar / len(members)
            if symbol == _REPEAT:
                pitches = previous
                if pitches is None:
                    raise ScoreError(f"'%' at position {pos} in {text!r} has no chord before it to repeat")
            elif symbol in _NO_CHORD:
                pitches = []
            else:
                try:
                    pitches = chord_pitches(symbol, octave)
                except ScoreError as e:
                    raise ScoreError(f"{e} at position {pos} in {text!r}") from None
            count += 1
            for p in pitches:
                track.notes.append(symusic.Note(round(now * tpq), round(length * tpq), p, VELOCITY))
            previous = pitches
            now += length
    if not len(track.notes):
        raise ScoreError(f"no chords in {text!r}")
    score.tracks.append(track)
    return score
