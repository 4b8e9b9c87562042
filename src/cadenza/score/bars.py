"""Bar geometry: where each bar starts, following a score's time signatures. The tokenizers, the corpora,
the engine, the tasks, the studio and the metrics all count bars with these two functions."""

from __future__ import annotations

import numpy as np
import symusic


def bar_starts(score: symusic.Score, until: int) -> np.ndarray:
    """Tick of every bar start up to ``until`` (exclusive), following the time signatures (4/4 if none)."""
    return bar_meters(score, until)[0]


def bar_meters(score: symusic.Score, until: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """(tick of every bar start up to ``until``, each bar's meter as (numerator, denominator))."""
    tpq = int(score.tpq)
    # stable sort by time: of several signatures at one tick the last listed wins (as the
    # tokenizer and ``CadenzaModel.generate`` read them)
    sigs = sorted(((int(t.time), int(t.numerator), int(t.denominator)) for t in score.time_signatures),
                  key=lambda x: x[0])
    if not sigs or sigs[0][0] > 0:
        sigs.insert(0, (0, 4, 4))
    starts: list[int] = []
    meters: list[tuple[int, int]] = []
    t = 0
    for j, (_, num, den) in enumerate(sigs):
        length = max(1, round(num * 4 * tpq / den))
        nxt = sigs[j + 1][0] if j + 1 < len(sigs) else None
        while t < until and (nxt is None or t < nxt):
            starts.append(t)
            meters.append((num, den))
            t += length
    if not starts:
        return np.zeros(1, np.int64), [(sigs[0][1], sigs[0][2])]
    return np.asarray(starts, np.int64), meters
