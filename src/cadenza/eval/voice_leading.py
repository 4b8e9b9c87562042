"""Voice-leading counts of four-part (S A T B) grids, the textbook rules DeepBach and Coconet are judged by.

Everything is counted on the 16th-note grid, the same way for Bach's chorales and for ours, and
reported per 100 beats (quarter notes):

* ``parallel_fifths`` / ``parallel_octaves``: two voices a fifth (or unison/octave) apart, modulo
  the octave, both move to new pitches and are again a fifth (octave) apart;
* ``voice_crossings``: a lower voice starts to sound above the voice next above it;
* ``out_of_range``: notes outside the common SATB ranges (S C4-G5, A G3-D5, T C3-G4, B E2-C4);
* ``spacing``: soprano-alto or alto-tenor start to be more than an octave apart.
"""

from __future__ import annotations

import numpy as np

RANGES = ((60, 79), (55, 74), (48, 67), (40, 60))
COUNTS = ("parallel_fifths", "parallel_octaves", "voice_crossings", "out_of_range", "spacing")


def _starts(flag: np.ndarray) -> int:
    """How many runs of True begin in a boolean series."""
    if not len(flag):
        return 0
    return int(flag[0]) + int((flag[1:] & ~flag[:-1]).sum())


def voice_leading_counts(grid) -> dict[str, int]:
    """Raw counts for one (T, 4) grid of MIDI pitches (-1 = rest)."""
    g = np.asarray(grid, dtype=np.int64)
    out = dict.fromkeys(COUNTS, 0)
    if g.ndim != 2 or len(g) == 0:
        return out
    a, b = g[:-1], g[1:]
    sounding = (a >= 0) & (b >= 0)
    moved = sounding & (a != b)
    for i in range(4):
        for j in range(i + 1, 4):
            both = moved[:, i] & moved[:, j]
            before = (a[:, i] - a[:, j]) % 12
            after = (b[:, i] - b[:, j]) % 12
            out["parallel_fifths"] += int((both & (before == 7) & (after == 7)).sum())
            out["parallel_octaves"] += int((both & (before == 0) & (after == 0)).sum())
    for i in range(3):
        cross = (g[:, i] >= 0) & (g[:, i + 1] >= 0) & (g[:, i + 1] > g[:, i])
        out["voice_crossings"] += _starts(cross)
    for v, (lo, hi) in enumerate(RANGES):
        col = g[:, v]
        onset = np.concatenate([[True], col[1:] != col[:-1]]) & (col >= 0)
        out["out_of_range"] += int((onset & ((col < lo) | (col > hi))).sum())
    for i in range(2):
        wide = (g[:, i] >= 0) & (g[:, i + 1] >= 0) & (g[:, i] - g[:, i + 1] > 12)
        out["spacing"] += _starts(wide)
    return out


def voice_leading_per_100_beats(grids, steps_per_beat: int = 4) -> dict[str, float]:
    """Summed counts over many grids, per 100 beats of music."""
    total = dict.fromkeys(COUNTS, 0)
    beats = 0.0
    for g in grids:
        for k, v in voice_leading_counts(g).items():
            total[k] += v
        beats += len(g) / steps_per_beat
    return {k: 100.0 * v / max(beats, 1e-9) for k, v in total.items()}
