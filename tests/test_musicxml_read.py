"""Reading MusicXML (issue 18): music21 -> symusic by cadenza's own linear walk, checked against music21's
MIDI writer on music21's corpus, and the checks that run before music21 reads a file."""

from __future__ import annotations

import time

import music21
import pytest
import symusic
from music21.midi import translate

from cadenza.errors import ScoreError
from cadenza.score import from_music21, read_score
from cadenza.score.bounds import check_musicxml

HEAD = ('<?xml version="1.0" encoding="UTF-8"?><score-partwise version="4.0"><part-list>'
        '<score-part id="P1"><part-name>Flute</part-name></score-part></part-list><part id="P1">')
ATTRS = "<attributes><divisions>2</divisions><time><beats>4</beats><beat-type>4</beat-type></time></attributes>"
NOTE = "<note><pitch><step>{s}</step><octave>4</octave></pitch><duration>{d}</duration>{x}</note>"


def xml(measures: list[str], head: str = HEAD) -> str:
    body = "".join(f'<measure number="{i + 1}">{ATTRS if i == 0 else ""}{m}</measure>' for i, m in enumerate(measures))
    return f"{head}{body}</part></score-partwise>"


def midi_path(stream) -> symusic.Score:
    """music21's own stream -> MIDI writer, read back at 480 ticks per quarter: the peer."""
    return symusic.Score.from_midi(translate.streamToMidiFile(stream).writestr()).resample(480, min_dur=1)


def notes(score: symusic.Score) -> list[list[tuple]]:
    return [sorted((n.time, n.duration, n.pitch, n.velocity) for n in t.notes) for t in score.tracks if len(t.notes)]


@pytest.mark.parametrize("work", ["bach/bwv347.mxl",  # repeats (expanded by both)
                                  "bach/bwv66.6.mxl", "monteverdi/madrigal.4.17.mxl",  # ties without a stop
                                  "palestrina/Kyrie_09.krn"])  # humdrum: the Soprano's program is inside a measure
def test_the_walk_gives_what_music21s_midi_writer_gives(work):
    stream = music21.corpus.parse(work, forceSource=True)
    ours, peer = from_music21(stream), midi_path(stream)
    assert notes(ours) == notes(peer)
    assert [(t.name, t.program, t.is_drum) for t in ours.tracks] == \
        [(t.name, t.program, t.is_drum) for t in peer.tracks if len(t.notes)]
    assert {(t.time, round(t.qpm, 3)) for t in ours.tempos} == {(t.time, round(t.qpm, 3)) for t in peer.tempos}
    assert {(t.time, t.numerator, t.denominator) for t in ours.time_signatures} == \
        {(t.time, t.numerator, t.denominator) for t in peer.time_signatures}


def test_grace_notes_are_left_out_not_stretched():
    """music21's MIDI writer gives a grace note (length 0) an on and an off at one tick, and a reader pairs
    the on with a later off of that pitch: a reel of eighths got a note of 4.25 quarters (in Beethoven's
    op. 18/1, of 36 quarters)."""
    stream = music21.corpus.parse("ryansMammoth/CaptainKelleysReel.abc", forceSource=True)
    assert sum(1 for n in stream.recurse().notes if n.duration.isGrace) == 1
    longest = [max(n.duration for t in s.tracks for n in t.notes) / 480 for s in (from_music21(stream),
                                                                                  midi_path(stream))]
    assert longest == [0.5, 4.25]


def test_a_tie_without_a_stop_joins_the_next_note_of_its_pitch(tmp_path):
    tied = NOTE.format(s="C", d=4, x='<tie type="start"/><notations><tied type="start"/></notations>')
    path = tmp_path / "tie.musicxml"
    path.write_text(xml([NOTE.format(s="E", d=4, x="") + tied, NOTE.format(s="C", d=8, x="")]))
    got = [(n.time, n.duration, n.pitch) for n in read_score(path).tracks[0].notes]
    assert got == [(0, 960, 64), (960, 2880, 60)]


def test_unreadable_repeats_play_as_written():
    """op. 132 has repeats music21 cannot expand ('badly formed repeats'); it was refused, now it is read."""
    stream = music21.corpus.parse("beethoven/opus132.mxl", forceSource=True)
    with pytest.raises(Exception, match="repeat"):
        midi_path(stream)
    assert sum(len(t.notes) for t in from_music21(stream).tracks) > 15_000


def test_reading_does_not_take_music21s_quadratic_paths(tmp_path, monkeypatch):
    """music21's stripTies and MIDI writer are quadratic (a 30,000-note measure took over 20 s, the Grosse Fuge
    29 s); reading never calls them. The speed itself is bench/musicxml_read.py's figure (speed lives in
    benchmarks): measure30000 2.6 s against 57.5 s, grosse_fuge 2.9 s against 31.5 s."""
    def refuse(*a, **k):
        raise AssertionError("a quadratic music21 path was taken")

    monkeypatch.setattr(music21.stream.Stream, "stripTies", refuse)
    monkeypatch.setattr(translate, "streamToMidiFile", refuse)
    path = tmp_path / "m.musicxml"
    tied = NOTE.format(s="C", d=4, x='<tie type="start"/>')
    stop = NOTE.format(s="C", d=8, x='<tie type="stop"/>')
    path.write_text(xml([NOTE.format(s="G", d=1, x="") * 3_000 + tied, stop]))
    score = read_score(path, force=True)
    assert score.note_num() == 3_001 and score.tracks[0].notes[-1].duration == 6 * 480


@pytest.mark.parametrize("edit, says", [
    (lambda x: x.replace("<beats>4</beats>", "<beats>100000</beats>"), "time signature of '100000' beats"),
    (lambda x: x.replace("<beats>4</beats>", "<beats>3+2+99999</beats>"), "time signature of '3+2+99999' beats"),
    (lambda x: x.replace("<beats>4</beats>", "<beats>&#49;0000000</beats>"), "'10000000' beats"),  # a char ref
    (lambda x: x.replace("<beats>4</beats>", "<beats>0</beats>"), "'0' beats"),
    (lambda x: x.replace("<beat-type>4</beat-type>", "<beat-type>0</beat-type>"), "beat-type of '0'"),
    (lambda x: x.replace("<divisions>2</divisions>", "<divisions>0</divisions>"), "divisions of '0'"),
    (lambda x: x.replace("<divisions>2</divisions>", "<divisions>-4</divisions>"), "divisions of '-4'"),
    (lambda x: x.replace('<measure number="1">', '<measure number="1"><direction><sound tempo="0"/></direction>'),
     "tempo of '0'"),
    (lambda x: x.replace('<measure number="1">', '<measure number="1"><direction><sound tempo="nan"/></direction>'),
     "tempo of 'nan'"),
])
def test_bad_musicxml_values_are_one_line_before_music21_reads(tmp_path, edit, says):
    path = tmp_path / "bad.musicxml"
    path.write_text(edit(xml([NOTE.format(s="C", d=8, x="")])))
    with pytest.raises(ScoreError, match=says.replace("+", r"\+")) as e:
        read_score(path)
    assert "\n" not in str(e.value) and "bad.musicxml" in str(e.value)


def test_measures_are_counted_before_music21_reads(tmp_path):
    many = xml(["<note><rest/><duration>8</duration></note>"] * 5_001).encode()
    t0 = time.perf_counter()
    with pytest.raises(ScoreError, match=r"part 'P1' has 5,001 measures; cadenza takes at most 5,000 \(--force"):
        check_musicxml(many, "many.musicxml", force=False)
    assert time.perf_counter() - t0 < 5  # counted, not parsed by music21 (which takes ~9 s for 5,000)
    check_musicxml(many, "many.musicxml", force=True)  # --force lifts it
    rest = '<part id="P1"><note><rest/><duration>8</duration></note></part>'
    timewise = (HEAD.split("<part id")[0].replace("score-partwise", "score-timewise")
                + "".join(f'<measure number="{i}">{rest}</measure>' for i in range(5_001)) + "</score-timewise>")
    with pytest.raises(ScoreError, match="part 'P1' has 5,001 measures"):  # a part in each measure, counted too
        check_musicxml(timewise.encode(), "t.musicxml", force=False)
