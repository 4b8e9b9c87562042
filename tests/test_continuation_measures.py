"""Tests for cadenza.eval.continuation on tiny hand-made scores whose answers are known (no model)."""

from __future__ import annotations

import math

import pytest
import symusic

from cadenza.eval.continuation import (
    cut,
    density_ratio,
    key_agreement,
    notes_per_beat,
    pc_cosine,
    pc_histogram,
    sounding_tracks,
    track_continuity,
    tracks_merged,
)

TPQ = 480
BAR = 4 * TPQ
C_MAJOR = (60, 62, 64, 65, 67, 69, 71, 72, 64, 67, 60)  # a C major line, tonic-heavy
F_SHARP_MAJOR = tuple(p + 6 for p in C_MAJOR)


def make(*tracks, drums=None, sigs=((0, 4, 4),)):
    """A score with one piano track per list of (start, duration, pitch), optional drum notes."""
    s = symusic.Score(TPQ)
    for t, n, d in sigs:
        s.time_signatures.append(symusic.TimeSignature(t, n, d))
    s.tempos.append(symusic.Tempo(0, qpm=120.0))
    for k, notes in enumerate(tracks):
        tr = symusic.Track(f"piano {k}", 0, False)
        for start, dur, pitch in notes:
            tr.notes.append(symusic.Note(start, dur, pitch, 80))
        s.tracks.append(tr)
    if drums:
        tr = symusic.Track("drums", 0, True)
        for start, dur, pitch in drums:
            tr.notes.append(symusic.Note(start, dur, pitch, 80))
        s.tracks.append(tr)
    return s


def line(pitches, start=0, step=TPQ):
    return [(start + k * step, step, p) for k, p in enumerate(pitches)]


# --------------------------------------------------------------------------------------------- cut
def test_cut_moves_notes_and_keeps_every_track():
    s = make(line([60, 62]), line([48], start=3 * BAR), [])
    c = cut(s, 2 * BAR, 4 * BAR)
    assert len(c.tracks) == 3  # empty tracks stay, so tracks still match by index
    assert [len(t.notes) for t in c.tracks] == [0, 1, 0]
    assert int(c.tracks[1].notes[0].time) == BAR


def test_cut_keeps_a_note_that_sounds_past_the_end():
    c = cut(make([(0, 3 * BAR, 60)]), 0, BAR)
    assert int(c.tracks[0].notes[0].duration) == 3 * BAR


def test_cut_keeps_every_signature_at_the_tick_in_effect():
    # POP909 style: a 1/4 and a 2/4 both at tick 0; cadenza reads the last listed, so both must stay
    s = make(line([60] * 40), sigs=((0, 1, 4), (0, 2, 4), (10 * TPQ, 3, 4)))
    c = cut(s, 4 * TPQ, 20 * TPQ)
    assert [(int(t.time), t.numerator, t.denominator) for t in c.time_signatures] == \
        [(0, 1, 4), (0, 2, 4), (6 * TPQ, 3, 4)]
    assert [int(t.time) for t in c.tempos] == [0]
    assert c.tempos[0].qpm == pytest.approx(120.0)


def test_cut_after_a_change_starts_in_the_new_meter():
    s = make(line([60] * 40), sigs=((0, 4, 4), (BAR, 3, 4)))
    c = cut(s, 2 * BAR, 3 * BAR)
    assert [(int(t.time), t.numerator) for t in c.time_signatures] == [(0, 3)]


# ------------------------------------------------------------------------------------ pitch classes
def test_pc_histogram_weighs_by_duration_and_ignores_drums():
    h = pc_histogram(make([(0, 100, 60), (0, 300, 72), (0, 50, 61)], drums=[(0, 1000, 36)]))
    assert h[0] == 400 and h[1] == 50 and h.sum() == 450


def test_key_agreement():
    prompt = make(line(C_MAJOR))
    assert key_agreement(prompt, make(line(C_MAJOR[::-1]))) == 1.0
    assert key_agreement(prompt, make(line(F_SHARP_MAJOR))) == 0.0
    assert key_agreement(prompt, make([])) == 0.0  # silence does not keep the key
    assert math.isnan(key_agreement(make([], drums=[(0, 100, 36)]), prompt))  # no key to keep


def test_pc_cosine():
    prompt = make(line(C_MAJOR))
    assert pc_cosine(prompt, make(line(C_MAJOR, start=BAR))) == pytest.approx(1.0)
    assert pc_cosine(make(line([60, 64])), make(line([61, 66]))) == pytest.approx(0.0)
    # C and E each half the time vs. C alone: cos = 1/sqrt(2)
    assert pc_cosine(make(line([60, 64])), make(line([60]))) == pytest.approx(2 ** -0.5)
    assert math.isnan(pc_cosine(prompt, make([])))


# ------------------------------------------------------------------------------------------ density
def test_density_ratio_counts_every_note_over_the_span():
    real = make(line([60] * 8, step=TPQ // 2))  # 8 notes in 4 beats
    gen = make(line([60] * 4), drums=[(0, 10, 36)] * 2)  # 4 + 2 drum notes
    assert notes_per_beat(real, 4) == 2.0
    assert density_ratio(gen, real, 4) == pytest.approx(6 / 8)
    assert math.isnan(density_ratio(gen, make([]), 4))


# --------------------------------------------------------------------------------------- the parts
def test_sounding_tracks_counts_held_notes():
    s = make([(0, 2 * BAR, 48)], [(0, TPQ, 72)], [(BAR + TPQ, TPQ, 60)], [])
    assert sounding_tracks(s, BAR, 2 * BAR) == [0, 2]  # track 0 is still held; track 1 ended; 3 is empty


def test_track_continuity_matches_tracks_by_index():
    prompt = make(line([60, 62], start=BAR), line([48], start=BAR), line([72]))  # track 2 quiet in the tail
    both_go_on = make(line([64]), line([43]), [])
    one_goes_on = make(line([64, 65]), [], line([74]))
    assert track_continuity(prompt, both_go_on, BAR, 2 * BAR) == 1.0
    assert track_continuity(prompt, one_goes_on, BAR, 2 * BAR) == 0.5
    assert math.isnan(track_continuity(prompt, both_go_on, 3 * BAR, 4 * BAR))  # nothing sounds there


def test_tracks_merged():
    prompt = make(line([60, 62]), line([48, 50]))
    merged = make(line([64, 65, 43, 45]), [])
    assert tracks_merged(prompt, merged, 0, BAR)
    assert not tracks_merged(prompt, make(line([64]), line([43])), 0, BAR)
    assert not tracks_merged(prompt, make([], []), 0, BAR)  # nothing new: nothing merged
    assert not tracks_merged(make(line([60]), []), merged, 0, BAR)  # one part only: nothing to merge
