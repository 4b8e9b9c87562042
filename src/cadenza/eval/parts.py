"""How each part of a piece plays: the measures of issue 17, per track and per instrument family.

A part is one track. For each: ``notes_per_onset`` (notes / distinct onset times: 1.0 for a line,
3-4 for block chords), ``pitch_in_range`` (share of notes inside the instrument's range,
``cadenza.score.roles``), ``notes_per_beat`` (notes / quarter notes of the whole piece),
``bars_playing_share`` (bars in which a note of the part sounds), ``longest_silence_bars`` (the
longest run of bars in which it does not), ``duplicates`` (notes that repeat another note of the track
at the same onset and pitch). Bars follow the score's time signatures; the piece runs from bar 1 to
the bar of the last note-off over all tracks.

``family_stats`` averages the per-track figures over the tracks of each family, so a generated piece
and a real piece of the same style can be set side by side (``bench/parts.py``).
"""

from __future__ import annotations

import numpy as np
import symusic

from cadenza.score.bars import bar_starts
from cadenza.score.roles import family_of, range_of

MEASURES = ("notes_per_onset", "pitch_in_range", "notes_per_beat", "bars_playing_share", "longest_silence_bars")


def _ticks(score: symusic.Score) -> symusic.Score:
    return score if str(score.ttype).endswith("Tick") else score.to("tick")


def _longest_run(flags: np.ndarray) -> int:
    """Length of the longest run of True in a 1-D bool array."""
    best = run = 0
    for f in flags:
        run = run + 1 if f else 0
        best = max(best, run)
    return best


def runs(flags: np.ndarray) -> tuple[list[int], list[int]]:
    """(lengths of the runs of True, lengths of the runs of False), in order, of a 1-D bool array."""
    on: list[int] = []
    off: list[int] = []
    k = 0
    while k < len(flags):
        j = k
        while j < len(flags) and flags[j] == flags[k]:
            j += 1
        (on if flags[k] else off).append(j - k)
        k = j
    return on, off


def track_stats(track: symusic.Track, starts: np.ndarray, beats: float) -> dict:
    """The measures of one track, given the piece's bar starts (ticks; the last entry is the end) and
    its length in quarter notes."""
    a = track.notes.numpy()
    n = len(a["time"])
    fam = family_of(int(track.program), bool(track.is_drum))
    out = {"family": fam, "program": -1 if track.is_drum else int(track.program), "notes": n}
    if n == 0:
        n_bars = len(starts) - 1
        return out | {"notes_per_onset": float("nan"), "pitch_in_range": float("nan"), "notes_per_beat": 0.0,
                      "bars_playing_share": 0.0, "longest_silence_bars": n_bars, "duplicates": 0,
                      "playing": np.zeros(n_bars, bool)}
    lo, hi = range_of(int(track.program), bool(track.is_drum))
    onsets = np.unique(a["time"])
    pairs = np.unique(np.stack([a["time"], a["pitch"]]), axis=1).shape[1]
    n_bars = len(starts) - 1
    # a bar plays where any note of the track sounds in it: [first bar of onset, bar of note-off]
    first = np.searchsorted(starts, a["time"], side="right") - 1
    last = np.searchsorted(starts, a["time"] + np.maximum(a["duration"], 1) - 1, side="right") - 1
    playing = np.zeros(n_bars, bool)
    for f, l in zip(first, last):
        playing[max(f, 0):min(l, n_bars - 1) + 1] = True
    return out | {
        "notes_per_onset": n / len(onsets),
        "pitch_in_range": float(np.mean((a["pitch"] >= lo) & (a["pitch"] <= hi))),
        "notes_per_beat": n / max(beats, 1e-9),
        "bars_playing_share": float(playing.mean()) if n_bars else 0.0,
        "longest_silence_bars": _longest_run(~playing),
        "duplicates": int(n - pairs),
        "playing": playing,  # per bar: does a note of the track sound in it
    }


def part_stats(score: symusic.Score, from_bar: int = 0, to_bar: int | None = None) -> list[dict]:
    """The measures of every track (tracks with no notes included: a part asked for that never plays
    is a silent part, not a missing one), over bars ``from_bar`` .. ``to_bar`` - 1 (0-based)."""
    tick = _ticks(score)
    end = max(int(tick.end()), 1)
    full = bar_starts(tick, end + 64 * tick.tpq)  # bar starts past the end: the last bar closes
    n_bars = int(np.searchsorted(full, end - 1, side="right"))  # bars up to the one of the last note-off
    to_bar = n_bars if to_bar is None else min(to_bar, n_bars)
    starts = full[from_bar:to_bar + 1]
    beats = (starts[-1] - starts[0]) / tick.tpq if len(starts) > 1 else 0.0
    out = []
    for t in tick.tracks:
        clipped = t.clip(int(starts[0]), int(starts[-1]), clip_end=False) if len(starts) > 1 else t
        out.append(track_stats(clipped, starts, beats))
    return out


def family_stats(stats: list[dict]) -> dict[str, dict[str, float]]:
    """{family: {measure: mean over that family's tracks}} (NaN-aware; ``parts``: how many tracks)."""
    by: dict[str, list[dict]] = {}
    for s in stats:
        by.setdefault(s["family"], []).append(s)
    out = {}
    for fam, rows in by.items():
        out[fam] = {m: float(np.nanmean([r[m] for r in rows])) if any(np.isfinite(r[m]) for r in rows)
                    else float("nan") for m in MEASURES}
        out[fam]["parts"] = len(rows)
        out[fam]["duplicates"] = int(sum(r["duplicates"] for r in rows))
    return out
