"""One chord per bar and the key of a piece: labels, recognition, chord-tone share, key estimation."""

from __future__ import annotations

import pytest

from cadenza.errors import ScoreError
from cadenza.score import parse_chords, parse_notes
from cadenza.score.harmony import (chord_label, chord_symbol, chord_tone_ratio, chord_vocabulary, parse_chord,
                                   recognize_chords)
from cadenza.score.keys import estimate_key
from conftest import make_score

BAR = 1920  # ticks per 4/4 bar at 480 per quarter


def test_vocabulary_and_labels():
    v = chord_vocabulary()
    assert len(v) == 12 * 11 + 1 and v[-1] == "N" and "F#:min7" in v and len(set(v)) == len(v)
    assert chord_label((9, "min7")) == "A:min7" and chord_symbol((9, "min7")) == "Am7" and chord_symbol(None) == "N.C."


@pytest.mark.parametrize("text, chord", [
    ("Am", (9, "min")), ("C", (0, "maj")), ("G7", (7, "7")), ("Bbmaj7", (10, "maj7")), ("F#m7b5", (6, "m7b5")),
    ("C9", (0, "7")), ("Am9", (9, "min7")), ("C6", (0, "maj")), ("Dsus", (2, "sus4")), ("G/B", (7, "maj")),
    ("E5", (4, "maj")), ("B:maj", (11, "maj")), ("A:min7", (9, "min7")), ("Gb:maj/3", (6, "maj")),
    ("D:hdim7", (2, "m7b5")), ("C:sus4(b7)", (0, "sus4")), ("Eb:maj6", (3, "maj")), ("N", None), ("N.C.", None),
])
def test_parse_chord(text, chord):
    assert parse_chord(text) == chord


def test_parse_chord_rejects_nonsense():
    for bad in ("H7", "C:blah", "", "xyz"):
        with pytest.raises(ScoreError):
            parse_chord(bad)


def test_recognizes_the_chord_of_each_bar_from_block_chords():
    s = parse_chords("C Am F G7 Bdim Eaug Dm7")  # one chord per bar
    starts = [k * BAR for k in range(7)]
    assert recognize_chords(s, starts) == [(0, "maj"), (9, "min"), (5, "maj"), (7, "7"), (11, "dim"), (4, "aug"),
                                           (2, "min7")]


def test_recognition_with_melody_passing_tones_and_an_empty_bar():
    # bar 1: C major arpeggio with a passing D; bar 2: nothing; bar 3: A minor with a G passing
    s = make_score([(60, 0, 1, 80), (62, 1, 0.5, 80), (64, 1.5, 1, 80), (67, 2.5, 1.5, 80),
                    (57, 8, 2, 80), (60, 8, 2, 80), (64, 10, 1.5, 80), (67, 11.5, 0.5, 80)])
    assert recognize_chords(s, [0, BAR, 2 * BAR]) == [(0, "maj"), None, (9, "min")]


def test_chord_tone_ratio():
    s = make_score([(60, 0, 2, 80), (64, 2, 1, 80), (62, 3, 1, 80)])  # C, E on C major; D is not
    assert chord_tone_ratio(s, [0], [(0, "maj")]) == pytest.approx(0.75)
    assert chord_tone_ratio(s, [0], [(2, "min")]) == pytest.approx(0.25)  # D F A: only the D
    # a note held across a bar line counts in each bar by its share
    held = make_score([(60, 2, 4, 80)])
    assert chord_tone_ratio(held, [0, BAR], [(0, "maj"), (2, "maj")]) == pytest.approx(0.5)


@pytest.mark.parametrize("notes, key", [
    ("C4 D4 E4 F4 G4 A4 B4 C5*2 G4 E4 C4*2", (0, "major")),
    ("A3 B3 C4 D4 E4 F4 G#4 A4*2 E4 C4 A3*2", (9, "minor")),
    ("G4 A4 B4 C5 D5 E5 F#5 G5*2 D5 B4 G4*2", (7, "major")),
])
def test_estimate_key(notes, key):
    assert estimate_key(parse_notes(notes)) == key


def test_estimate_key_of_nothing():
    assert estimate_key(make_score([])) is None


def test_bar_chords_take_each_bars_first_chord_and_repeat_marks():
    """README: several chords in a bar between '|': the bar's first one is followed; '%' repeats a chord."""
    from cadenza.score.harmony import bar_chords

    assert bar_chords("| Am | F | C G |") == ["Am", "F", "C"]
    assert bar_chords("C % G") == ["C", "C", "G"] and bar_chords("Am F C G") == ["Am", "F", "C", "G"]
