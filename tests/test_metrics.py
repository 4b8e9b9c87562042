"""Tests for cadenza.eval.metrics on hand-built scores whose answers are known."""

from __future__ import annotations

import math

import numpy as np

import pytest
import symusic

from cadenza.eval import (
    all_metrics,
    empty_beat_rate,
    loop_rate,
    pitch_class_entropy,
    pitch_range,
    polyphony,
    scale_consistency,
)

TPQ = 480
BAR = 4 * TPQ


def make(notes, tpq=TPQ, ts=(4, 4), program=0, drums=()):
    """A score of one piano track from (start, duration, pitch) triples, plus optional drum notes."""
    s = symusic.Score(tpq)
    s.time_signatures.append(symusic.TimeSignature(0, *ts))
    s.tempos.append(symusic.Tempo(0, qpm=120.0))
    t = symusic.Track("piano", program, False)
    for start, dur, pitch in notes:
        t.notes.append(symusic.Note(start, dur, pitch, 80))
    s.tracks.append(t)
    if drums:
        d = symusic.Track("drums", 0, True)
        for start, dur, pitch in drums:
            d.notes.append(symusic.Note(start, dur, pitch, 80))
        s.tracks.append(d)
    return s


def melody(pitches, step=TPQ, start=0):
    return [(start + i * step, step, p) for i, p in enumerate(pitches)]


C_MAJOR = [60, 62, 64, 65, 67, 69, 71, 72]


def test_scale_consistency_c_major_scale():
    assert scale_consistency(make(melody(C_MAJOR))) == 1.0


def test_scale_consistency_chromatic():
    assert scale_consistency(make(melody(range(60, 72)))) == pytest.approx(7 / 12)


def test_scale_consistency_counts_notes_not_durations_and_ignores_drums():
    # 7 short in-scale notes and one long F#: 7/8 by count whatever the durations
    notes = melody([60, 62, 64, 65, 67, 69, 71], step=60) + [(420, 10 * TPQ, 66)]
    s = make(notes, drums=[(0, 120, 37), (0, 120, 39), (0, 120, 42)])
    assert scale_consistency(s) == pytest.approx(7 / 8)


def test_scale_consistency_minor_key():
    # A harmonic-minor melody: G# is out of every natural minor/major scale holding the rest
    a_minor = [57, 59, 60, 62, 64, 65, 68, 69]
    assert scale_consistency(make(melody(a_minor))) == pytest.approx(7 / 8)
    # D natural minor is the same set as F major: 1.0
    assert scale_consistency(make(melody([62, 64, 65, 67, 69, 70, 72, 74]))) == 1.0


def test_pitch_class_entropy():
    assert pitch_class_entropy(make(melody(range(60, 72)))) == pytest.approx(math.log2(12))
    assert pitch_class_entropy(make(melody([60, 72, 48]))) == 0.0
    # C twice, six other classes once: -(1/4 log2 1/4 + 6/8 log2 1/8) = 0.5 + 2.25
    assert pitch_class_entropy(make(melody(C_MAJOR))) == pytest.approx(2.75)


def test_pitch_range_ignores_drums():
    assert pitch_range(make(melody(C_MAJOR), drums=[(0, 10, 35), (0, 10, 81)])) == 12.0
    assert pitch_range(make(melody([64]))) == 0.0


def test_empty_beat_rate():
    # notes in beat 0 and beat 4; length 2160 ticks -> 5 beats, 3 empty
    s = make([(0, 240, 60), (4 * TPQ, 240, 62)])
    assert empty_beat_rate(s) == pytest.approx(3 / 5)
    # MusPy marks the beat a note ends in (end // tpq), so a note ending on a beat covers it too
    assert empty_beat_rate(make([(0, TPQ, 60)])) == 0.0


def test_polyphony():
    assert polyphony(make(melody(C_MAJOR))) == 1.0
    triad = [(0, TPQ, 60), (0, TPQ, 64), (0, TPQ, 67)]
    assert polyphony(make(triad)) == 3.0
    # triad for a beat, then one note for a beat: (3 * 480 + 480) / 960
    assert polyphony(make(triad + [(TPQ, TPQ, 62)])) == 2.0
    # a gap is not counted; overlapping notes of one pitch count once (binary piano roll)
    assert polyphony(make([(0, TPQ, 60), (0, TPQ, 60), (3 * TPQ, TPQ, 62)])) == 1.0


def test_polyphony_matches_piano_roll_definition():
    notes = [(0, 700, 60), (100, 300, 64), (350, 900, 60), (1200, 50, 67), (1300, 10, 70), (2000, 480, 72)]
    s = make(notes)
    length = max(a + d for a, d, _ in notes)
    roll = [[False] * 128 for _ in range(length)]
    for a, d, p in notes:
        for t in range(a, a + d):
            roll[t][p] = True
    total = sum(sum(r) for r in roll)
    active = sum(1 for r in roll if any(r))
    assert polyphony(s) == pytest.approx(total / active)


def test_loop_rate_repeated_bar():
    bar = [(0, TPQ, 60), (TPQ, TPQ, 64), (2 * TPQ, 2 * TPQ, 67)]
    notes = [(a + k * BAR, d, p) for k in range(4) for a, d, p in bar]
    assert loop_rate(make(notes)) == 1.0


def test_loop_rate_distinct_bars():
    notes = [(k * BAR + j * TPQ, TPQ, 60 + k + 2 * j) for k in range(4) for j in range(4)]
    assert loop_rate(make(notes)) == 0.0


def test_loop_rate_two_bar_pattern_and_quantization():
    a = [(0, TPQ, 60), (TPQ, TPQ, 62)]
    b = [(0, 2 * TPQ, 65)]
    notes = []
    for k, pat in enumerate([a, b, a, b]):
        # jitter of a few ticks is below the sixteenth grid and does not break the repeat
        notes += [(x + k * BAR + (k % 2) * 3, d, p) for x, d, p in pat]
    assert loop_rate(make(notes)) == pytest.approx(2 / 3)


def test_loop_rate_follows_time_signature():
    bar = [(0, TPQ, 60), (TPQ, TPQ, 64), (2 * TPQ, TPQ, 67)]
    notes = [(a + k * 3 * TPQ, d, p) for k in range(4) for a, d, p in bar]
    assert loop_rate(make(notes, ts=(3, 4))) == 1.0
    assert loop_rate(make(notes, ts=(4, 4))) < 1.0


def test_loop_rate_empty_bars_are_not_loops():
    bar = [(0, TPQ, 60), (TPQ, TPQ, 64)]
    notes = bar + [(a + 3 * BAR, d, p) for a, d, p in bar]  # bar, rest, rest, bar
    assert loop_rate(make(notes)) == 0.0


def test_empty_and_single_bar():
    empty = make([])
    for v in all_metrics(empty).values():
        assert math.isnan(v)
    assert math.isnan(loop_rate(make(melody([60, 62]))))  # one bar: nothing to compare
    assert math.isnan(scale_consistency(make([], drums=[(0, 100, 36)])))


def test_other_tpq_and_seconds_scores():
    s = make([(a // 4, d // 4, p) for a, d, p in melody(C_MAJOR)], tpq=120)
    assert scale_consistency(s) == 1.0
    assert polyphony(s) == 1.0
    sec = make(melody(C_MAJOR)).to("second")
    assert scale_consistency(sec) == 1.0
    assert pitch_range(sec) == 12.0


def test_voice_leading_counts_textbook_cases():
    from cadenza.eval.voice_leading import voice_leading_counts, voice_leading_per_100_beats

    # C major to D major, every voice up a tone: S-T and S-B move in fifths, T-B in octaves
    c = voice_leading_counts([[67, 64, 60, 48], [69, 66, 62, 50]])
    assert c["parallel_fifths"] == 2 and c["parallel_octaves"] == 1
    # contrary motion into an octave is fine; a held voice never makes parallels
    assert voice_leading_counts([[72, 64, 55, 48], [71, 64, 55, 50]])["parallel_octaves"] == 0
    # crossing: alto above soprano for two steps counts once; out of range: a bass note below E2
    c = voice_leading_counts([[64, 67, 55, 38], [64, 67, 55, 38], [67, 64, 55, 40]])
    assert c["voice_crossings"] == 1 and c["out_of_range"] == 1
    # spacing: soprano more than an octave above the alto
    assert voice_leading_counts([[79, 64, 55, 48]])["spacing"] == 1
    per = voice_leading_per_100_beats([np.array([[67, 64, 60, 48], [69, 66, 62, 50]] * 2)])
    assert per["parallel_octaves"] > 0 and set(per) >= {"parallel_fifths", "spacing"}
