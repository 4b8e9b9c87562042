"""Small helpers shared by the score builders: a fresh Score, counts, length in seconds."""

from __future__ import annotations

import numpy as np
import symusic

from cadenza.errors import ScoreError

TPQ = 480  # ticks per quarter for scores we build; divisible by 2, 3, 4, 5, 8, 16


def new_score(tempo: float = 120, time_signature: tuple[int, int] = (4, 4), tpq: int = TPQ) -> symusic.Score:
    """An empty tick-based Score with one tempo and one time signature at tick 0."""
    try:
        qpm = float(tempo)
    except (TypeError, ValueError):
        raise ScoreError(f"tempo must be a number, not {tempo!r}") from None
    if not 1 <= qpm <= 1000:
        raise ScoreError(f"tempo {tempo!r} is outside 1-1000 quarter notes per minute")
    num, den = _check_time_signature(time_signature)
    score = symusic.Score(tpq)
    score.tempos.append(symusic.Tempo(0, qpm=qpm))
    score.time_signatures.append(symusic.TimeSignature(0, num, den))
    return score


def _check_time_signature(ts) -> tuple[int, int]:
    try:
        num, den = (int(x) for x in ts)
    except (TypeError, ValueError):
        raise ScoreError(f"time signature must be two numbers like (4, 4), not {ts!r}") from None
    if num < 1 or num > 64 or den not in (1, 2, 4, 8, 16, 32):
        raise ScoreError(f"time signature {num}/{den} is not valid")
    return num, den


def bar_ticks(score: symusic.Score) -> int:
    """Length of one bar in ticks, from the first time signature (4/4 if none)."""
    ts = score.time_signatures[0] if len(score.time_signatures) else None
    num, den = (ts.numerator, ts.denominator) if ts is not None else (4, 4)
    return round(num * 4 * score.ticks_per_quarter / den)


def count_notes(score: symusic.Score) -> int:
    """Number of notes over all tracks."""
    return int(score.note_num())


def score_seconds(score: symusic.Score) -> float:
    """End time of the score (last note off or last event) in seconds, honouring tempo changes."""
    if str(score.ttype).endswith("Second"):
        return float(score.end())
    return float(score.to("second").end())


def ticks_to_seconds(score: symusic.Score, ticks) -> np.ndarray:
    """Seconds at each tick of a tick-based score, following its tempo map (120 bpm before the first)."""
    tempos = sorted(((int(t.time), float(t.qpm)) for t in score.tempos), key=lambda x: x[0])
    if not tempos or tempos[0][0] > 0:
        tempos.insert(0, (0, tempos[0][1] if tempos else 120.0))
    t0 = np.array([t for t, _ in tempos], dtype=np.float64)
    per = np.array([60.0 / (q * score.tpq) for _, q in tempos])  # seconds per tick after each change
    s0 = np.concatenate([[0.0], np.cumsum(np.diff(t0) * per[:-1])])
    x = np.asarray(ticks, dtype=np.float64)
    i = np.clip(np.searchsorted(t0, x, side="right") - 1, 0, len(t0) - 1)
    return s0[i] + (x - t0[i]) * per[i]


def at_tpq(score: symusic.Score, tpq: int = TPQ) -> symusic.Score:
    """A tick-based copy of ``score`` at ``tpq`` ticks per quarter (the models' own resolution)."""
    score = score.to("tick")
    return score.resample(tpq, min_dur=1) if score.tpq != tpq else score.copy()
