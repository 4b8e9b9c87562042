"""How a continuation carries on from its prompt: key, pitch classes, density and the prompt's parts.

Each measure compares a prompt with one continuation of it (the model's, or the piece's own real
bars that follow), both ``symusic.Score`` in ticks; ``bench/continuation.py`` takes them over
validation pieces. Numpy and symusic only, so they can be tested and used without a model.

>>> import symusic
>>> s = symusic.Score(480)
>>> t = symusic.Track("piano", 0, False)
>>> for k, p in enumerate((60, 64, 67, 72)):
...     t.notes.append(symusic.Note(k * 480, 480, p, 80))
>>> s.tracks.append(t)
>>> round(pc_cosine(s, s), 3)
1.0
"""

from __future__ import annotations

import math

import numpy as np
import symusic

from cadenza.score.keys import estimate_key


def cut(score: symusic.Score, start: int, end: int) -> symusic.Score:
    """The notes starting in [start, end) (whole: a note may sound past ``end``), moved so ``start`` is
    tick 0, every track kept (empty or not, so tracks match by index), and the tempo and time
    signatures in effect at ``start`` placed at tick 0.

    symusic's ``clip`` keeps only the first of several time signatures at one tick, but cadenza reads
    the *last* listed as the meter (as POP909's files, with a 1/4 and a 2/4 both at tick 0, need), so
    the meter events are rebuilt from the score's own list."""
    out = score.clip(start, end, clip_end=False).shift_time(-start)
    for name in ("time_signatures", "tempos"):
        events = sorted(getattr(score, name), key=lambda e: int(e.time))  # stable: listed order kept
        before = [int(e.time) for e in events if int(e.time) <= start]
        at = max(before) if before else None
        kept = [e for e in events if (at is not None and int(e.time) == at) or start < int(e.time) < end]
        dst = getattr(out, name)
        dst.clear()
        for e in kept:
            e = e.copy()
            e.time = max(0, int(e.time) - start)
            dst.append(e)
    return out


def pc_histogram(score: symusic.Score) -> np.ndarray:
    """(12,) note time of each pitch class over the pitched (non-drum) notes; a note weighs at least
    one tick so that zero-length notes still count."""
    hist = np.zeros(12)
    for t in score.tracks:
        if t.is_drum or not len(t.notes):
            continue
        a = t.notes.numpy()
        np.add.at(hist, a["pitch"] % 12, np.maximum(a["duration"], 1).astype(float))
    return hist


def key_agreement(prompt: symusic.Score, continuation: symusic.Score) -> float:
    """1.0 if the continuation's Krumhansl-Schmuckler key (duration-weighted) is the prompt's, else 0.0.

    A continuation with no pitched notes has no key and so disagrees (0.0): saying nothing does not
    keep the key. NaN when the prompt itself has no key (nothing to agree with)."""
    want = estimate_key(prompt)
    if want is None:
        return math.nan
    return float(estimate_key(continuation) == want)


def pc_cosine(prompt: symusic.Score, continuation: symusic.Score) -> float:
    """Cosine similarity of the duration-weighted pitch-class histograms of prompt and continuation
    (0..1: histograms have no negative entries). NaN when either has no pitched notes."""
    a, b = pc_histogram(prompt), pc_histogram(continuation)
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0 or nb == 0:
        return math.nan
    return float(a @ b / (na * nb))


def notes_per_beat(score: symusic.Score, beats: float) -> float:
    """Notes (all tracks, drums included) per quarter-note beat over a span of ``beats`` quarters."""
    return score.note_num() / beats if beats > 0 else math.nan


def density_ratio(generated: symusic.Score, real: symusic.Score, beats: float) -> float:
    """Generated notes per beat / real notes per beat over the same span of ``beats`` quarters
    (1.0: as busy as the piece itself; NaN when the real span has no notes)."""
    real_rate = notes_per_beat(real, beats)
    if not real_rate or math.isnan(real_rate):
        return math.nan
    return notes_per_beat(generated, beats) / real_rate


def sounding_tracks(score: symusic.Score, start: int, end: int) -> list[int]:
    """Indices of the tracks with a note sounding somewhere in [start, end): a note struck before
    ``start`` and still held counts (a sustained pad is playing)."""
    out = []
    for k, t in enumerate(score.tracks):
        if not len(t.notes):
            continue
        a = t.notes.numpy()
        on, off = a["time"].astype(np.int64), a["time"].astype(np.int64) + np.maximum(a["duration"], 1)
        if np.any((on < end) & (off > start)):
            out.append(k)
    return out


def playing_tracks(score: symusic.Score) -> list[int]:
    """Indices of the tracks with at least one note."""
    return [k for k, t in enumerate(score.tracks) if len(t.notes)]


def track_continuity(prompt: symusic.Score, continuation: symusic.Score, tail_start: int, prompt_end: int) -> float:
    """Of the prompt's tracks sounding in its tail [tail_start, prompt_end) (its last bars), the share
    that play at least one note in the continuation. Tracks are matched by index: the continuation's
    first tracks are the prompt's, in order (as ``generate`` returns them, and as a cut of the real
    piece keeps them). NaN when no track sounds in the tail."""
    active = sounding_tracks(prompt, tail_start, prompt_end)
    if not active:
        return math.nan
    playing = set(playing_tracks(continuation))
    return sum(k in playing for k in active) / len(active)


def tracks_merged(prompt: symusic.Score, continuation: symusic.Score, tail_start: int, prompt_end: int) -> bool:
    """True when the prompt had at least two tracks sounding in its tail but every note of the
    continuation (at least one) landed in a single track: the parts were folded into one (e.g. three
    piano tracks whose new notes all went to the first piano)."""
    if len(sounding_tracks(prompt, tail_start, prompt_end)) < 2:
        return False
    return len(playing_tracks(continuation)) == 1
