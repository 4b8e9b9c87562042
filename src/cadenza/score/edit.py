"""Edits as score transforms: each takes a Score and returns a new one (the input is never changed).

Transpose, set the tempo, change a track's instrument, quantize to a grid. The CLI's
``cadenza edit`` and the Python API call these; they are exact by construction (tests check it).
"""

from __future__ import annotations

import re
from fractions import Fraction

import symusic

from cadenza.errors import ScoreError, shown
from cadenza.score.instruments import instrument_name, parse_instrument
from cadenza.score.keys import transpose_sharps

GRIDS = {1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64}  # note values: 1/16 = sixteenths, 1/12 = eighth triplets


def _tick(score: symusic.Score) -> symusic.Score:
    return score.to("tick") if not str(score.ttype).endswith("Tick") else score.copy()


def transpose(score: symusic.Score, semitones: int) -> symusic.Score:
    """Every pitched note moved by ``semitones`` (drums stay); key signatures follow."""
    if int(semitones) != semitones:
        raise ScoreError(f"transpose by whole semitones (got {semitones})")
    semitones = int(semitones)
    out = _tick(score)
    pitched = [t for t in out.tracks if not t.is_drum and len(t.notes)]
    if pitched:
        lo = min(int(t.notes.numpy()["pitch"].min()) for t in pitched)
        hi = max(int(t.notes.numpy()["pitch"].max()) for t in pitched)
        if lo + semitones < 0 or hi + semitones > 127:
            raise ScoreError(f"transposing by {semitones:+d} moves notes outside MIDI's range 0-127 "
                             f"(the piece spans {lo}-{hi})")
    for t in pitched:
        t.shift_pitch(semitones, inplace=True)
    for k in out.key_signatures:
        k.key = transpose_sharps(int(k.key), semitones)
    return out


def set_tempo(score: symusic.Score, bpm: float) -> symusic.Score:
    """The piece at ``bpm`` quarter notes per minute: its first tempo becomes ``bpm`` and later tempo
    changes keep their ratio to it (a ritardando stays a ritardando). Notes keep their beats."""
    if not 10 <= bpm <= 400:
        raise ScoreError(f"tempo must be between 10 and 400 beats per minute (got {bpm:g})")
    out = _tick(score)
    if not len(out.tempos):
        out.tempos.append(symusic.Tempo(0, qpm=float(bpm)))
        return out
    first = sorted(out.tempos, key=lambda t: t.time)[0].qpm
    factor = float(bpm) / first
    tempos = [(t.time, t.qpm * factor) for t in out.tempos]
    out.tempos.clear()
    for time, qpm in tempos:
        out.tempos.append(symusic.Tempo(time, qpm=qpm))
    return out


def parse_program_change(text: str) -> tuple[int, tuple[int, bool]]:
    """'2=cello' -> (track number 2, (program 42, not drums)). Tracks count from 1."""
    m = re.fullmatch(r"\s*(\d+)\s*=\s*(.+?)\s*", text or "")
    if not m:
        raise ScoreError(f"cannot read --program {shown(text)}: use TRACK=INSTRUMENT, e.g. 2=cello "
                         "(tracks count from 1)")
    return int(m[1]), parse_instrument(m[2])


def set_program(score: symusic.Score, track: int, instrument) -> symusic.Score:
    """Track number ``track`` (1-based, as ``cadenza render``/DAWs list them) played by ``instrument``
    (a GM name, number or (program, is_drum))."""
    out = _tick(score)
    if not 1 <= track <= len(out.tracks):
        raise ScoreError(f"there is no track {track}: the piece has {len(out.tracks)} "
                         f"track{'s' * (len(out.tracks) != 1)} (numbered from 1)")
    program, drum = instrument if isinstance(instrument, tuple) else parse_instrument(instrument)
    t = out.tracks[track - 1]
    old = t.name
    t.program, t.is_drum = int(program), bool(drum)
    if not old or old == instrument_name(0, False) or old.lower() in ("t", "track"):
        t.name = instrument_name(program, drum)
    return out


def parse_grid(text: str) -> Fraction:
    """'1/16' -> Fraction(1, 16) of a whole note; also '16' or '1/12' (eighth-note triplets)."""
    m = re.fullmatch(r"\s*(?:1\s*/\s*)?(\d+)\s*", str(text))
    if not m or int(m[1]) not in GRIDS:
        raise ScoreError(f"cannot quantize to {shown(text)}: use 1/N with N one of "
                         f"{', '.join(map(str, sorted(GRIDS)))}")
    return Fraction(1, int(m[1]))


def quantize(score: symusic.Score, grid: str | Fraction = "1/16") -> symusic.Score:
    """Note starts and ends rounded to the nearest grid line (a whole-note fraction); a note keeps at
    least one grid step. Tempo, meter and key changes move to the grid too."""
    g = parse_grid(grid) if not isinstance(grid, Fraction) else grid
    out = _tick(score)
    step = Fraction(4 * out.tpq) * g
    if step.denominator != 1:  # e.g. triplets at 100 ticks per quarter: move to 960, which every grid divides
        out = out.resample(960, min_dur=1)
        step = Fraction(4 * out.tpq) * g
    s = int(step)

    def snap(x: int) -> int:
        return (x + s // 2) // s * s

    for t in out.tracks:
        a = [(snap(n.time), snap(n.time + n.duration), n.pitch, n.velocity) for n in t.notes]
        t.notes.clear()
        for start, end, pitch, vel in a:
            t.notes.append(symusic.Note(start, max(s, end - start), pitch, vel))
        t.notes.sort()
    for events in (out.tempos, out.time_signatures, out.key_signatures):
        for e in events:
            e.time = snap(e.time)
    return out
