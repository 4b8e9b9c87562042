"""Rule-made drum parts for training pieces that have none.

None of the corpora we may train on (../shared/data and the music21 corpus) has a drum track, yet
users ask for "piano, bass, drums". So that a model learns what the ``drums`` instrument is, some
pop pieces get a drum part written by these rules before tokenizing: a groove chosen per piece
(rock, half-time, ballad, four-on-the-floor, shuffle-free 3/4 and 6/8 variants) following the
piece's own bars and meter, a crash where an 8-bar phrase starts, a fill in the bar before it, and
silence before the first note. The model can only be as good a drummer as these rules: the model
card says so. Hand-written because no library writes drum parts; it is a data augmentation, not
something users call.
"""

from __future__ import annotations

import numpy as np
import symusic

KICK, SNARE, SIDE, HAT, OPEN_HAT, PEDAL_HAT, CRASH, RIDE = 36, 38, 37, 42, 46, 44, 49, 51
TOMS = (50, 47, 45, 43)  # high to low

# grooves for a 4-beat bar on a 16th grid: (instrument, 16th steps, velocity)
GROOVES_4 = {
    "rock": [(KICK, (0, 8, 10), 100), (SNARE, (4, 12), 96), (HAT, tuple(range(0, 16, 2)), 70)],
    "halftime": [(KICK, (0, 6), 100), (SNARE, (8,), 100), (HAT, tuple(range(0, 16, 2)), 66)],
    "ballad": [(KICK, (0, 10), 90), (SIDE, (4, 12), 80), (HAT, (0, 4, 8, 12), 60)],
    "disco": [(KICK, (0, 4, 8, 12), 104), (SNARE, (4, 12), 92), (OPEN_HAT, (2, 6, 10, 14), 74),
              (HAT, (0, 4, 8, 12), 56)],
    "ride": [(KICK, (0, 7, 8), 96), (SNARE, (4, 12), 90), (RIDE, tuple(range(0, 16, 2)), 68)],
}
# three beats (3/4) and compound duple (6/8) on a 16th / 8th grid
GROOVE_3 = [(KICK, (0,), 96), (SNARE, (4, 8), 80), (HAT, (0, 2, 4, 6, 8, 10), 62)]
GROOVE_68 = [(KICK, (0,), 96), (SNARE, (3,), 88), (HAT, (0, 1, 2, 3, 4, 5), 62)]


def _bar_list(score: symusic.Score, end: int) -> list[tuple[int, int, int, int]]:
    """(start, length, numerator, denominator) of each bar up to ``end`` ticks."""
    from cadenza.score.bars import bar_meters

    starts, meters = bar_meters(score, end)
    tpq = int(score.tpq)
    return [(int(s), max(1, round(num * 4 * tpq / den)), num, den) for s, (num, den) in zip(starts, meters)]


def drum_track(score: symusic.Score, rng: np.random.Generator) -> symusic.Track | None:
    """A drum track for ``score`` (in ticks), or None where the meter has no groove here."""
    notes = [n for t in score.tracks if not t.is_drum for n in t.notes]
    if not notes:
        return None
    first = min(int(n.time) for n in notes)
    end = max(int(n.time + n.duration) for n in notes)
    bars = _bar_list(score, end)
    groove4 = GROOVES_4[str(rng.choice(sorted(GROOVES_4)))]
    tr = symusic.Track("Drums", 0, True)
    start_bar = next((k for k, (s, ln, _, _) in enumerate(bars) if s + ln > first), 0)
    for k, (s, ln, num, den) in enumerate(bars):
        if k < start_bar:
            continue
        if (num, den) in ((4, 4), (2, 2)):
            pattern, steps = groove4, 16
        elif (num, den) == (2, 4):
            pattern, steps = [(i, tuple(x for x in st if x < 8), v) for i, st, v in groove4], 8
        elif (num, den) == (3, 4):
            pattern, steps = GROOVE_3, 12
        elif (num, den) == (6, 8):
            pattern, steps = GROOVE_68, 6
        else:
            continue
        step = ln / (16 if (num, den) in ((4, 4), (2, 2)) else 8 if (num, den) == (2, 4) else steps)
        dur = max(1, int(step))
        phrase = (k - start_bar) % 8
        hits: list[tuple[int, int, int]] = []
        if phrase == 7 and steps >= 12:  # a fill into the next phrase: the last beat(s) on snare and toms
            cut = steps * 3 // 4
            for i, st, v in pattern:
                hits += [(i, x, v) for x in st if x < cut]
            for j, x in enumerate(range(cut, steps)):
                hits.append((SNARE if j % 2 == 0 else TOMS[min(j // 2, 3)], x, 84 + 4 * j))
        else:
            for i, st, v in pattern:
                hits += [(i, x, v) for x in st]
            if phrase == 0:  # a crash opens every 8-bar phrase
                hits.append((CRASH, 0, 100))
        for i, x, v in hits:
            accent = 8 if x == 0 else 0
            vel = int(np.clip(v + accent + rng.integers(-6, 7), 1, 127))
            tr.notes.append(symusic.Note(int(s + round(x * step)), dur, i, vel))
    tr.notes.sort()
    return tr if len(tr.notes) else None


def with_drums(score: symusic.Score, rng: np.random.Generator) -> symusic.Score:
    """A copy of ``score`` with a rule-made drum track added (unchanged if it has drums already)."""
    if any(t.is_drum and len(t.notes) for t in score.tracks):
        return score
    s = score if str(score.ttype).endswith("Tick") else score.to("tick")
    tr = drum_track(s, rng)
    if tr is None:
        return score
    out = s.copy()
    out.tracks.append(tr)
    return out
