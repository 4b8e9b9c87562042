"""Tests for cadenza.score: file round trips, typed notes, chord symbols, instruments, errors."""

from __future__ import annotations

import os
import sys

import pytest
import symusic

from cadenza.errors import ScoreError
from cadenza.score import (
    GM_PROGRAMS,
    chord_pitches,
    count_notes,
    from_music21,
    instrument_name,
    parse_chords,
    parse_instrument,
    parse_instruments,
    parse_notes,
    read_abc_tunes,
    read_score,
    score_seconds,
    to_music21,
    write_score,
)

# ------------------------------------------------------------------------------------------ helpers


def make_score() -> symusic.Score:
    """Two tracks on the 1/16 grid: a melody with a sharp, a rest and a tie over the bar, and a
    bass with a two-note chord. 3/4 at 100 bpm."""
    s = symusic.Score(480)
    s.tempos.append(symusic.Tempo(0, qpm=100))
    s.time_signatures.append(symusic.TimeSignature(0, 3, 4))
    melody = symusic.Track("Melody", 40, False)
    t = 0
    for pitch, dur in [(72, 480), (74, 240), (75, 240), (77, 960), (79, 120), (78, 120), (76, 240)]:
        melody.notes.append(symusic.Note(t, dur, pitch, 90))
        t += dur
    t += 480  # rest
    for pitch, dur in [(71, 720), (69, 480), (67, 1200)]:  # 720 crosses the bar line
        melody.notes.append(symusic.Note(t, dur, pitch, 90))
        t += dur
    bass = symusic.Track("Bass", 32, False)
    for i, pitch in enumerate([48, 43, 45, 41, 48]):
        bass.notes.append(symusic.Note(i * 1440, 1440, pitch, 80))
    bass.notes.append(symusic.Note(0, 1440, 55, 80))  # chord with the first bass note
    s.tracks.append(melody)
    s.tracks.append(bass)
    return s


def notes_in_quarters(score: symusic.Score) -> list[list[tuple[float, int]]]:
    """Per non-empty track: sorted (onset in quarters, pitch)."""
    tpq = score.ticks_per_quarter
    return [sorted((n.time / tpq, n.pitch) for n in t.notes) for t in score.tracks if len(t.notes)]


def same_music(a: symusic.Score, b: symusic.Score) -> None:
    na, nb = notes_in_quarters(a), notes_in_quarters(b)
    assert count_notes(a) == count_notes(b)
    assert len(na) == len(nb)
    for ta, tb in zip(na, nb):
        assert [p for _, p in ta] == [p for _, p in tb]
        assert all(abs(x - y) <= 1 / 16 for (x, _), (y, _) in zip(ta, tb))


def pitch_classes(symbol: str) -> set[int]:
    return {p % 12 for p in chord_pitches(symbol)}


def assert_one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert msg and "\n" not in msg
    assert "Traceback" not in msg
    return msg


# ----------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("suffix", [".mid", ".midi", ".musicxml", ".mxl", ".abc"])
def test_round_trip(tmp_path, suffix):
    original = make_score()
    first = tmp_path / f"song{suffix}"
    write_score(original, first)
    back = read_score(first)
    same_music(original, back)
    # ... and once more through the written-back score
    second = tmp_path / f"again{suffix}"
    write_score(back, second)
    same_music(original, read_score(second))


def test_round_trip_keeps_programs_tempo_meter(tmp_path):
    for suffix in (".mid", ".musicxml", ".abc"):
        path = tmp_path / f"x{suffix}"
        write_score(make_score(), path)
        back = read_score(path)
        programs = [t.program for t in back.tracks if len(t.notes)]
        assert programs == [40, 32], suffix
        assert round(back.tempos[0].qpm) == 100, suffix
        ts = back.time_signatures[0]
        assert (ts.numerator, ts.denominator) == (3, 4), suffix


def test_music21_conversion():
    score = make_score()
    m21 = to_music21(score)
    assert [p.partName for p in m21.parts] == ["Melody", "Bass"]
    same_music(score, from_music21(m21))


def test_write_leaves_no_temp_files(tmp_path):
    write_score(make_score(), tmp_path / "a.mid")
    write_score(make_score(), tmp_path / "a.mid")  # overwrite
    assert sorted(os.listdir(tmp_path)) == ["a.mid"]


def test_score_seconds_and_count():
    s = parse_notes("C4 D4 E4 F4", tempo=60)
    assert count_notes(s) == 4
    assert score_seconds(s) == pytest.approx(4.0)


# ---------------------------------------------------------------------------------------- ABC


MULTI = """X: 1
T:First Tune
% comment
Y:AB
M:4/4
L:1/8
K:G
GABc d2e2|d4 B4|]


X: 2
T:Second Tune
M:3/4
L:1/4
K:D
"D"A B c|d3|]

X: 3
T:Broken
M:4/4
K:C
"""


def test_read_abc_tunes_from_text_and_file(tmp_path, capfd):
    tunes = read_abc_tunes(MULTI)
    assert [t for t, _ in tunes] == ["First Tune", "Second Tune"]  # tune 3 has no notes
    first = tunes[0][1]
    assert [n.pitch for n in first.tracks[0].notes] == [67, 69, 71, 72, 74, 76, 74, 71]
    assert tunes[1][1].tracks[0].notes[0].pitch == 69
    path = tmp_path / "tunes.abc"
    path.write_text(MULTI)
    assert [t for t, _ in read_abc_tunes(path)] == ["First Tune", "Second Tune"]
    assert [t for t, _ in read_abc_tunes(str(path))] == ["First Tune", "Second Tune"]
    # read_score takes the first tune only
    assert count_notes(read_score(path)) == 8
    out, err = capfd.readouterr()
    assert "Warning" not in out + err and "Ignoring" not in out + err


# ---------------------------------------------------------------------------------- typed notes


def test_parse_notes_durations_rests_bars():
    s = parse_notes("E4 D4 C4/2 r/2 | G4*2 A4:2 | F#4. Bb3 | r*2 C5", tempo=90, program="violin",
                    time_signature=(3, 4))
    track = s.tracks[0]
    assert (track.program, track.is_drum) == (40, False)
    got = [(n.time / 480, n.duration / 480, n.pitch) for n in track.notes]
    assert got == [
        (0, 1, 64), (1, 1, 62), (2, 0.5, 60),
        (3, 2, 67), (5, 2, 69),
        (7, 1.5, 66), (8.5, 1, 58),
        (11.5, 1, 72),
    ]
    assert s.tempos[0].qpm == pytest.approx(90)
    assert (s.time_signatures[0].numerator, s.time_signatures[0].denominator) == (3, 4)


def test_parse_notes_rest_and_chords():
    s = parse_notes("C4 r*2 D4 R/2 E4 [C4 E4 G4]*2 C4+E4+G4/2 Cs4 Db4 c")
    got = [(n.time / 480, n.duration / 480, n.pitch) for n in s.tracks[0].notes]
    assert got == [
        (0, 1, 60), (3, 1, 62), (4.5, 1, 64),
        (5.5, 2, 60), (5.5, 2, 64), (5.5, 2, 67),
        (7.5, 0.5, 60), (7.5, 0.5, 64), (7.5, 0.5, 67),
        (8, 1, 61), (9, 1, 61), (10, 1, 60),
    ]


def test_parse_notes_unknown_note():
    with pytest.raises(ScoreError) as err:
        parse_notes("E4 H4 C4")
    msg = assert_one_line(err)
    assert "'H4'" in msg and "position 3" in msg and "E4 H4 C4" in msg


@pytest.mark.parametrize("text", ["", "r r |", "C4 [E4 G4", "C4 E4/x"])
def test_parse_notes_bad(text):
    with pytest.raises(ScoreError) as err:
        parse_notes(text)
    assert_one_line(err)


# ------------------------------------------------------------------------------------ chords


C, Db, D, Eb, E, F, Gb, G, Ab, A, Bb, B = range(12)


@pytest.mark.parametrize("symbol,pcs", [
    ("C", {C, E, G}), ("Cm", {C, Eb, G}), ("Cmin", {C, Eb, G}), ("C-", {C, Eb, G}),
    ("Cdim", {C, Eb, Gb}), ("Co", {C, Eb, Gb}), ("Caug", {C, E, Ab}), ("C+", {C, E, Ab}),
    ("C7", {C, E, G, Bb}), ("Cmaj7", {C, E, G, B}), ("CM7", {C, E, G, B}), ("Cm7", {C, Eb, G, Bb}),
    ("Cm7b5", {C, Eb, Gb, Bb}), ("Cø7", {C, Eb, Gb, Bb}), ("Cdim7", {C, Eb, Gb, A}),
    ("C6", {C, E, G, A}), ("Cm6", {C, Eb, G, A}), ("Csus2", {C, D, G}), ("Csus4", {C, F, G}),
    ("Cadd9", {C, D, E, G}), ("C9", {C, D, E, G, Bb}),
    ("Bb", {Bb, D, F}), ("F#m", {Gb, A, Db}), ("Ebmaj7", {Eb, G, Bb, D}),
])
def test_chord_families(symbol, pcs):
    assert pitch_classes(symbol) == pcs


def test_chord_voicing_and_slash_bass():
    assert chord_pitches("C") == [48, 60, 64, 67]  # root in octave 3 below, triad at C4
    g_b = chord_pitches("G/B")
    assert g_b[0] % 12 == B and g_b[0] < min(g_b[1:])
    assert {p % 12 for p in g_b} == {G, B, D}
    c_e = chord_pitches("C/E")
    assert c_e[0] % 12 == E


def test_parse_chords_bars_and_plain():
    plain = parse_chords("C G Am F", tempo=100, program="guitar")
    track = plain.tracks[0]
    assert track.name == "Chords" and track.program == 24
    onsets = sorted({n.time for n in track.notes})
    assert onsets == [0, 1920, 3840, 5760]  # one chord per 4/4 bar
    barred = parse_chords("| Am | F | C G |")
    onsets = sorted({n.time for n in barred.tracks[0].notes})
    assert onsets == [0, 1920, 3840, 4800]  # two chords share the last bar
    bass_at_g = min(n.pitch for n in barred.tracks[0].notes if n.time == 4800)
    assert bass_at_g % 12 == G
    fixed = parse_chords("C G", beats_per_chord=2, time_signature=(3, 4))
    assert sorted({n.time for n in fixed.tracks[0].notes}) == [0, 960]


def test_parse_chords_unknown_symbol():
    with pytest.raises(ScoreError) as err:
        parse_chords("C G Hm7 F")
    msg = assert_one_line(err)
    assert "'Hm7'" in msg and "position 4" in msg
    with pytest.raises(ScoreError):
        chord_pitches("Cxyz")


# -------------------------------------------------------------------------------- instruments


@pytest.mark.parametrize("value,expected", [
    (0, (0, False)), ("0", (0, False)), ("41", (41, False)), (127, (127, False)),
    ("Acoustic Grand Piano", (0, False)), ("violin", (40, False)), ("VIOLIN", (40, False)),
    ("acoustic bass", (32, False)), ("string ensemble 1", (48, False)),
    ("Acoustic Guitar (nylon)", (24, False)),
    ("piano", (0, False)), ("bass", (33, False)), ("guitar", (24, False)), ("strings", (48, False)),
    ("flute", (73, False)), ("organ", (19, False)), ("voice", (52, False)), ("choir", (52, False)),
    ("cello", (42, False)), ("sax", (65, False)), ("trumpet", (56, False)),
    ("drums", (0, True)), ("percussion", (0, True)), ("Drum Kit", (0, True)),
])
def test_parse_instrument(value, expected):
    assert parse_instrument(value) == expected


def test_instrument_tables():
    assert len(GM_PROGRAMS) == 128 and GM_PROGRAMS[0] == "Acoustic Grand Piano"
    assert GM_PROGRAMS[127] == "Gunshot"
    assert instrument_name(40) == "Violin"
    assert instrument_name(0, True) == "Drums"
    for i, name in enumerate(GM_PROGRAMS):  # every GM name reads back as itself
        assert parse_instrument(name) == (i, False)
    assert parse_instruments("piano, acoustic bass, drums") == [(0, False), (32, False), (0, True)]
    assert parse_instruments("piano,violin") == [(0, False), (40, False)]


@pytest.mark.parametrize("value", ["violine", "kazooo", "128", -1, "", "piano,,violin"])
def test_parse_instrument_unknown(value):
    with pytest.raises(ScoreError) as err:
        parse_instruments(value) if isinstance(value, str) and "," in value else parse_instrument(value)
    assert_one_line(err)


def test_unknown_instrument_suggests():
    with pytest.raises(ScoreError) as err:
        parse_instrument("violine")
    assert "violin" in str(err.value)


# ------------------------------------------------------------------------------------- bad files


def _midi_bytes() -> bytes:
    return make_score().dumps_midi()


@pytest.mark.parametrize("name,content,needle", [
    ("empty.mid", b"", "is empty"),
    ("text.mid", b"this is not a midi file\n", "is not a MIDI file"),
    ("half.mid", None, "truncated"),
    ("header_only.mid", "header", "truncated"),
    ("song.wav", b"RIFF....", "unknown score format"),
    ("empty.abc", b"   \n", "is empty"),
    ("nonotes.abc", b"X:1\nT:Nothing\nK:C\n", "has no notes"),
    ("bad.musicxml", b"<score-partwise><part>", "MusicXML"),
])
def test_bad_files(tmp_path, name, content, needle):
    if content is None:
        data = _midi_bytes()
        content = data[: len(data) // 2]
    elif content == "header":
        content = _midi_bytes()[:14]
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ScoreError) as err:
        read_score(path)
    msg = assert_one_line(err)
    assert needle in msg and name in msg


def test_missing_file(tmp_path):
    with pytest.raises(ScoreError) as err:
        read_score(tmp_path / "nope.mid")
    assert "not found" in assert_one_line(err)


def test_midi_without_notes(tmp_path):
    s = symusic.Score(480)
    s.tracks.append(symusic.Track("empty", 0, False))
    path = tmp_path / "silent.mid"
    s.dump_midi(path)
    with pytest.raises(ScoreError, match="has no notes"):
        read_score(path)


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="needs a non-root POSIX user")
def test_unwritable_folder(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        for suffix in (".mid", ".abc", ".musicxml"):
            target = folder / f"out{suffix}"
            with pytest.raises(ScoreError) as err:
                write_score(make_score(), target)
            msg = assert_one_line(err)
            assert msg.startswith(f"cannot write {target}")
            assert os.listdir(folder) == []
    finally:
        folder.chmod(0o700)


def test_unwritable_folder_any_user(tmp_path, monkeypatch):
    """Root ignores folder permissions, so also simulate the refusal where the temp file is made."""
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    target = tmp_path / "out.mid"
    with pytest.raises(ScoreError) as err:
        write_score(make_score(), target)
    assert assert_one_line(err) == f"cannot write {target}: Permission denied"
    assert os.listdir(tmp_path) == []


def test_write_errors(tmp_path):
    with pytest.raises(ScoreError, match="does not exist"):
        write_score(make_score(), tmp_path / "no" / "such" / "out.mid")
    with pytest.raises(ScoreError, match="unknown score format"):
        write_score(make_score(), tmp_path / "out.wav")
    assert os.listdir(tmp_path) == []


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def boom(self, path):
        open(path, "wb").write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(make_score()), "dump_midi", boom)
    with pytest.raises(ScoreError, match="No space left"):
        write_score(make_score(), tmp_path / "x.mid")
    assert os.listdir(tmp_path) == []


def test_written_file_has_the_usual_mode(tmp_path):
    import os
    import stat

    import symusic

    s = symusic.Score(480)
    tr = symusic.Track("t", 0, False)
    tr.notes.append(symusic.Note(0, 480, 60, 80))
    s.tracks.append(tr)
    mask = os.umask(0o022)
    try:
        write_score(s, tmp_path / "a.mid")
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "a.mid").stat().st_mode) == 0o644


def test_a_killed_writers_temporary_file_is_removed_by_the_next_write(tmp_path):
    """SIGKILL during a write left a hidden temporary file beside the output for good."""
    import subprocess
    import sys

    code = ("import os, signal; from cadenza.files import atomic_output\n"
            f"with atomic_output({str(tmp_path / 'song.mid')!r}) as tmp:\n"
            "    open(tmp, 'wb').write(b'half')\n    os.kill(os.getpid(), signal.SIGKILL)\n")
    assert subprocess.run([sys.executable, "-c", code]).returncode == -9
    assert len(list(tmp_path.glob(".song.*"))) == 1  # what the killed writer left
    write_score(make_score(), tmp_path / "song.mid")
    assert sorted(os.listdir(tmp_path)) == ["song.mid"]
