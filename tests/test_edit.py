"""Edits are exact: transpose, tempo, instrument and quantize, as functions and through the CLI."""

from __future__ import annotations

import pytest
import symusic

from cadenza.cli import main
from cadenza.errors import ScoreError
from cadenza.score import quantize, read_score, set_program, set_tempo, transpose, write_score
from cadenza.score.keys import key_signature
from conftest import make_score


def band() -> symusic.Score:
    s = make_score([(60, 0, 1, 80), (64, 1, 0.5, 70), (67, 1.5, 2.5, 90)], program=0)
    s.key_signatures.append(key_signature("C"))
    drums = symusic.Track("Drums", 0, True)
    drums.notes.extend([symusic.Note(0, 240, 36, 100), symusic.Note(480, 240, 38, 100)])
    s.tracks.append(drums)
    bass = symusic.Track("Bass", 33, False)
    bass.notes.append(symusic.Note(0, 1920, 36, 80))
    s.tracks.append(bass)
    s.tempos.append(symusic.Tempo(1920, qpm=60.0))  # a ritardando to half speed
    return s


def rows(track):
    return [(n.time, n.duration, n.pitch, n.velocity) for n in track.notes]


def test_transpose_moves_pitched_notes_only_and_the_key():
    s = band()
    t = transpose(s, -2)
    assert [p for _, _, p, _ in rows(t.tracks[0])] == [58, 62, 65]
    assert rows(t.tracks[1]) == rows(s.tracks[1])  # drums stay
    assert [p for _, _, p, _ in rows(t.tracks[2])] == [34]
    assert [(a, b, v) for a, b, _, v in rows(t.tracks[0])] == [(a, b, v) for a, b, _, v in rows(s.tracks[0])]
    assert t.key_signatures[0].key == -2  # C -> Bb major: two flats
    assert [n.pitch for n in s.tracks[0].notes] == [60, 64, 67]  # the input is unchanged
    with pytest.raises(ScoreError, match="outside MIDI's range"):
        transpose(s, 100)


def test_tempo_is_exact_and_keeps_tempo_ratios(tmp_path):
    t = set_tempo(band(), 90)
    write_score(t, tmp_path / "t.mid")
    back = read_score(tmp_path / "t.mid")
    qpms = sorted((x.time, round(x.qpm, 2)) for x in back.tempos)
    assert qpms == [(0, 90.0), (1920, 45.0)]
    assert rows(back.tracks[0]) == rows(band().tracks[0])  # notes keep their beats
    with pytest.raises(ScoreError, match="between 10 and 400"):
        set_tempo(band(), 5)


def test_program_change_by_track_number():
    t = set_program(band(), 3, "cello")
    assert t.tracks[2].program == 42 and not t.tracks[2].is_drum and rows(t.tracks[2]) == rows(band().tracks[2])
    assert set_program(band(), 1, "drums").tracks[0].is_drum
    with pytest.raises(ScoreError, match="no track 4"):
        set_program(band(), 4, "cello")
    with pytest.raises(ScoreError, match="kazooo"):
        set_program(band(), 1, "kazooo")


@pytest.mark.parametrize("grid, step", [("1/16", 120), ("1/8", 240), ("1/12", 160), ("16", 120)])
def test_quantize_puts_every_start_and_end_on_the_grid(grid, step):
    s = make_score([(60, 0.07, 0.9, 80), (62, 1.13, 0.02, 80), (64, 2.49, 1.01, 80), (65, 3.3, 0.4, 80)])
    q = quantize(s, grid)
    for n in q.tracks[0].notes:
        assert n.time % step == 0 and n.duration % step == 0 and n.duration >= step
    assert len(q.tracks[0].notes) == 4
    starts = [n.time for n in q.tracks[0].notes]
    assert starts[0] == 0 and starts == sorted(starts)


def test_quantize_other_resolutions_and_bad_grids():
    s = make_score([(60, 1 / 3, 1 / 3, 80)], tpq=100)  # 100 ticks per quarter cannot hold triplet eighths
    q = quantize(s, "1/12")
    assert q.tpq == 960 and q.tracks[0].notes[0].time == 320
    for bad in ("1/7", "x", "1/0", "3/16"):
        with pytest.raises(ScoreError, match="cannot quantize"):
            quantize(s, bad)


def test_cli_edit_writes_exact_edits(tmp_path, capsys):
    write_score(band(), tmp_path / "in.mid")
    code = main(["edit", str(tmp_path / "in.mid"), "--transpose", "-2", "--tempo", "90", "--program", "3=cello",
                 "--quantize", "1/16", "--out", str(tmp_path / "out.mid"), "-q"])
    assert code == 0, capsys.readouterr().err
    out = read_score(tmp_path / "out.mid")
    assert round(sorted(out.tempos, key=lambda t: t.time)[0].qpm, 2) == 90.0
    progs = sorted((t.program, t.is_drum) for t in out.tracks)
    assert (42, False) in progs and (0, True) in progs
    pitched = next(t for t in out.tracks if t.program == 0 and not t.is_drum)
    assert [n.pitch for n in pitched.notes] == [58, 62, 65]
    assert all(n.time % (out.tpq // 4) == 0 for t in out.tracks for n in t.notes)


@pytest.mark.parametrize("args, words", [
    (["--program", "two=cello"], "TRACK=INSTRUMENT"), (["--program", "9=cello"], "no track 9"),
    (["--quantize", "1/7"], "cannot quantize"), ([], "nothing to do"), (["--transpose", "90"], "outside MIDI"),
])
def test_cli_edit_errors_are_one_line(tmp_path, capsys, args, words):
    write_score(band(), tmp_path / "in.mid")
    code = main(["edit", str(tmp_path / "in.mid"), *args, "--out", str(tmp_path / "o.mid"), "-q"])
    err = capsys.readouterr().err
    assert code != 0 and words in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.mid").exists()
