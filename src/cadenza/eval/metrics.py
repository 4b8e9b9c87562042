"""Objective measures of symbolic music, compatible with MusPy's definitions (``muspy.metrics``).

Hand-written with numpy only (no torch, no muspy), on ``symusic.Score``. A score in seconds or
quarters is converted to ticks first; ``score.tpq`` is the resolution (MusPy's
``music.resolution``: time steps per quarter note). Every function returns ``float('nan')`` for a
score with no (non-drum, where drums are ignored) notes.

Definitions follow MusPy 0.5 (Dong et al., "MusPy: A Toolkit for Symbolic Music Generation",
ISMIR 2020), ``muspy/metrics/metrics.py``:

- ``pitch_range``: highest minus lowest pitch; drums ignored. (MusPy returns 0 with no notes;
  here NaN, like the others.)
- ``pitch_class_entropy``: Shannon entropy (bits) of the normalized pitch-class histogram of
  note counts; drums ignored.
- ``scale_consistency``: the largest pitch-in-scale rate (notes counted, not durations) over
  the 24 major and natural-minor scales; drums ignored (Mogren 2016, C-RNN-GAN).
- ``empty_beat_rate``: ratio of empty beats to beats, beat = one quarter note (``tpq`` ticks);
  the song length is the last note-off over all tracks (drums included, as in MusPy).
- ``polyphony``: average number of distinct pitches sounding at once over the time steps (ticks)
  where at least one pitch sounds; drums ignored.

``loop_rate`` is not a MusPy metric; it is this project's measure of the "looping" failure of
autoregressive samplers (see ``loop_rate``).
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import symusic

from cadenza.score.bars import bar_starts
from cadenza.score.keys import scale_of

# C major and C natural minor as pitch-class masks (as MusPy's ``_get_scale``); rolled by root.
# the 12 major then the 12 natural-minor scales as pitch-class masks (24, 12), from score.keys
SCALES = np.array([[pc in scale_of(root, mode) for pc in range(12)] for mode in ("major", "minor")
                   for root in range(12)])

__all__ = ["scale_consistency", "pitch_class_entropy", "pitch_range", "empty_beat_rate", "polyphony",
           "loop_rate", "all_metrics", "SCALES"]


def _ticks(score: symusic.Score) -> symusic.Score:
    return score if str(score.ttype).endswith("Tick") else score.to("tick")


def _notes(score: symusic.Score, drums: bool = False) -> dict[str, np.ndarray]:
    """All notes as arrays ``time``, ``duration``, ``pitch``, ``program`` (``-1`` for drums)."""
    parts: dict[str, list[np.ndarray]] = {"time": [], "duration": [], "pitch": [], "program": []}
    for tr in score.tracks:
        if (tr.is_drum and not drums) or len(tr.notes) == 0:
            continue
        a = tr.notes.numpy()
        parts["time"].append(a["time"].astype(np.int64))
        parts["duration"].append(a["duration"].astype(np.int64))
        parts["pitch"].append(a["pitch"].astype(np.int64))
        parts["program"].append(np.full(len(a["time"]), -1 if tr.is_drum else int(tr.program), np.int64))
    return {k: (np.concatenate(v) if v else np.zeros(0, np.int64)) for k, v in parts.items()}


def pitch_range(score: symusic.Score) -> float:
    """Highest minus lowest pitch of the non-drum notes (``muspy.metrics.pitch_range``).

    MusPy returns 0 for a score without notes; this returns NaN, so empty scores do not pull a
    mean down.
    """
    p = _notes(_ticks(score))["pitch"]
    if len(p) == 0:
        return math.nan
    return float(p.max() - p.min())


def pitch_class_entropy(score: symusic.Score) -> float:
    """Entropy in bits of the pitch-class histogram (``muspy.metrics.pitch_class_entropy``).

    ``-sum_i P(pc=i) log2 P(pc=i)`` over the 12 pitch classes, where ``P`` counts notes (not
    durations) of the non-drum tracks. 0 for a single pitch class, log2(12) ~ 3.585 for a
    uniform chromatic histogram.
    """
    p = _notes(_ticks(score))["pitch"]
    if len(p) == 0:
        return math.nan
    prob = np.bincount(p % 12, minlength=12) / len(p)
    prob = prob[prob > 0]
    return float(-(prob * np.log2(prob)).sum()) + 0.0


def scale_consistency(score: symusic.Score) -> float:
    """Largest pitch-in-scale rate over all major and minor scales (``muspy.metrics.scale_consistency``).

    ``max over root in 0..11, mode in {major, natural minor}`` of ``#(notes in scale) / #(notes)``,
    notes of non-drum tracks counted once each regardless of duration (MusPy's
    ``pitch_in_scale_rate``; used by Mogren 2016, C-RNN-GAN). A C major scale gives 1.0; the 12
    chromatic notes give 7/12.
    """
    p = _notes(_ticks(score))["pitch"]
    if len(p) == 0:
        return math.nan
    hist = np.bincount(p % 12, minlength=12)
    return float((SCALES @ hist).max() / len(p))


def empty_beat_rate(score: symusic.Score) -> float:
    """Ratio of empty beats (no note sounding) to all beats (``muspy.metrics.empty_beat_rate``).

    As MusPy: a beat is ``tpq`` ticks; the length is the last note-off over all tracks and
    there are ``length // tpq + 1`` beats; a note marks beats ``start // tpq`` through
    ``end // tpq`` inclusive (so a note ending exactly on a beat also marks that beat); drum
    tracks count. Returns NaN when there are no notes (MusPy: when the length is zero).
    """
    s = _ticks(score)
    n = _notes(s, drums=True)
    if len(n["time"]) == 0:
        return math.nan
    res = int(s.tpq)
    end = n["time"] + n["duration"]
    length = int(end.max())
    if length < 1:
        return math.nan
    n_beats = length // res + 1
    # mark beats [start // res, end // res] with a difference array
    diff = np.zeros(n_beats + 1, np.int64)
    np.add.at(diff, n["time"] // res, 1)
    np.add.at(diff, end // res + 1, -1)
    covered = np.cumsum(diff[:-1]) > 0
    return float(1.0 - covered.sum() / n_beats)


def _union_length(starts: np.ndarray, ends: np.ndarray) -> int:
    """Total length of the union of half-open intervals ``[start, end)``."""
    if len(starts) == 0:
        return 0
    order = np.argsort(starts, kind="stable")
    s, e = starts[order], ends[order]
    run_end = np.maximum.accumulate(e)
    # an interval opens a new run when it starts after every earlier interval has ended
    new = np.ones(len(s), bool)
    new[1:] = s[1:] > run_end[:-1]
    run_id = np.cumsum(new) - 1
    run_start = s[new]
    run_stop = np.zeros(run_id[-1] + 1, np.int64)
    np.maximum.at(run_stop, run_id, run_end)
    return int(np.clip(run_stop - run_start, 0, None).sum())


def polyphony(score: symusic.Score) -> float:
    """Average number of pitches sounding at once where at least one sounds (``muspy.metrics.polyphony``).

    MusPy builds a binary (ticks x 128) piano roll of the non-drum notes (so two notes of the
    same pitch overlapping count once) and returns ``roll.sum() / #(ticks with any pitch on)``.
    Computed here from interval unions, which gives exactly the same number without the roll:
    the numerator is the sum over pitches of the union length of that pitch's notes, the
    denominator the union length of all notes. A monophonic line gives 1.0, a held triad 3.0.
    """
    n = _notes(_ticks(score))
    if len(n["time"]) == 0:
        return math.nan
    start, end = n["time"], n["time"] + np.maximum(n["duration"], 0)
    denom = _union_length(start, end)
    if denom < 1:
        return math.nan
    num = sum(_union_length(start[n["pitch"] == p], end[n["pitch"] == p]) for p in np.unique(n["pitch"]))
    return float(num / denom)


def loop_rate(score: symusic.Score, grid: int = 16) -> float:
    """Fraction of bars (after the first) that repeat exactly one of the previous 1, 2 or 4 bars.

    Not a MusPy metric: the "looping" failure of autoregressive samplers
    (guide/benchmarks.md, section 3). Bars follow the score's time signatures from tick 0
    (4/4 if it has none), up to the bar of the last note onset. A bar's content is the multiset
    of ``(onset in the bar, pitch, duration, program)`` of the notes starting in it, drums
    included (program -1), with onset and duration quantized to a 1/``grid`` note grid
    (a sixteenth note by default; a nonzero duration is at least one step). Bar ``i >= 1``
    counts as a loop when its content equals that of bar ``i-1``, ``i-2`` or ``i-4`` (those that
    exist); an empty bar (a rest) never counts as a loop but stays in the denominator
    ``#bars - 1``. NaN with no notes or fewer than two bars.
    """
    s = _ticks(score)
    n = _notes(s, drums=True)
    if len(n["time"]) == 0:
        return math.nan
    step = 4 * int(s.tpq) / grid
    starts = bar_starts(s, int(n["time"].max()) + 1)
    if len(starts) < 2:
        return math.nan
    bar = np.searchsorted(starts, n["time"], side="right") - 1
    onset = np.rint((n["time"] - starts[bar]) / step).astype(np.int64)
    dur = np.rint(n["duration"] / step).astype(np.int64)
    dur = np.where((dur == 0) & (n["duration"] > 0), 1, dur)
    content: list[Counter] = [Counter() for _ in starts]
    for b, o, p, d, g in zip(bar.tolist(), onset.tolist(), n["pitch"].tolist(), dur.tolist(),
                             n["program"].tolist()):
        content[b][(o, p, d, g)] += 1
    loops = 0
    for i in range(1, len(content)):
        if content[i] and any(i - k >= 0 and content[i] == content[i - k] for k in (1, 2, 4)):
            loops += 1
    return loops / (len(content) - 1)


def all_metrics(score: symusic.Score) -> dict[str, float]:
    """Every measure of this module for one score, by name."""
    return {f.__name__: f(score) for f in (pitch_class_entropy, scale_consistency, pitch_range,
                                           empty_beat_rate, polyphony, loop_rate)}
