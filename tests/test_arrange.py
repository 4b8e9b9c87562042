"""Arranging and infilling keep given material note for note (a tiny random model with every control:
the invariants hold by construction, whatever the model writes)."""

from __future__ import annotations

import pytest
import symusic
import torch

from cadenza.errors import CadenzaError
from cadenza.model import ModelConfig, Transformer, save_model_folder
from cadenza.score import parse_chords
from cadenza.tasks import load_model
from cadenza.tasks.arrange import arrange, infill
from cadenza.tokenizers import RemiSpec, RemiTokenizer
from cadenza.tokenizers.remi import T_BAR
from conftest import make_score

BAR = 1920


@pytest.fixture(scope="module")
def cm(tmp_path_factory):
    tok = RemiTokenizer(RemiSpec(controls=["key", "instruments", "chords", "infill"]))
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=tok.vocab_size, d_model=32, n_layers=2, n_heads=4, d_ff=64,
                                    max_seq_len=512))
    path = tmp_path_factory.mktemp("models") / "tiny-arrange"
    save_model_folder(path, model, {"name": "tiny-arrange", "family": "remi-lm", "tokenizer": tok.to_config(),
                                    "styles": tok.styles, "license": "test", "default_style": "pop"})
    return load_model(path)


def song() -> symusic.Score:
    s = parse_chords("C Am F G C Am F G")  # piano, 8 bars
    mel = make_score([(72 + (k * 5) % 7, 2 * k, 1.5, 90) for k in range(16)], program=73)  # flute melody
    s.tracks.append(mel.tracks[0])
    return s


def rows(track):
    return sorted((n.time, n.duration, n.pitch, n.velocity) for n in track.notes)


def test_arrange_keeps_every_given_note_and_adds_only_the_asked_instruments(cm):
    s = song()
    for seed in (0, 1):
        out = arrange(cm, s, ["acoustic bass", "drums"], seed=seed)
        assert rows(out.tracks[0]) == rows(s.tracks[0]) and rows(out.tracks[1]) == rows(s.tracks[1])
        assert (out.tracks[0].program, out.tracks[1].program) == (0, 73)
        new = out.tracks[2:]
        assert {(t.program, t.is_drum) for t in new} <= {(32, False), (0, True)}
        assert all(n.time < 8 * BAR for t in new for n in t.notes)


def test_infill_changes_only_the_region_and_tracks(cm):
    s = song()
    a, b = 2 * BAR, 4 * BAR  # bars 3-4
    for seed in (0, 1, 2):
        out = infill(cm, s, 3, 4, tracks=[0], seed=seed)  # piano only
        assert rows(out.tracks[1]) == rows(s.tracks[1])  # the melody: everywhere unchanged
        outside = lambda tr: [r for r in rows(tr) if not a <= r[0] < b]  # noqa: E731
        assert outside(out.tracks[0]) == outside(s.tracks[0])
        assert all(a <= n.time < b and n.time + n.duration <= b for t in out.tracks[2:] for n in t.notes)
        inside = [r for r in rows(out.tracks[0]) if a <= r[0] < b]
        assert all(r[0] + r[1] <= b for r in inside)
    # every track, at the start of the piece
    out = infill(cm, s, 1, 2, seed=3)
    for k in (0, 1):
        assert [r for r in rows(out.tracks[k]) if r[0] >= 2 * BAR] == [r for r in rows(s.tracks[k]) if r[0] >= 2 * BAR]


def test_arrange_and_infill_say_what_is_wrong(cm, tiny_model_dir):
    plain = load_model(tiny_model_dir)
    with pytest.raises(CadenzaError, match="trained without the instruments, infill controls"):
        arrange(plain, song(), ["bass"])
    with pytest.raises(CadenzaError, match="outside the piece"):
        infill(cm, song(), 20, 21)
    with pytest.raises(CadenzaError, match="no track 5"):
        infill(cm, song(), 1, 2, tracks=[4])
    with pytest.raises(CadenzaError, match="instruments to add"):
        arrange(cm, song(), [])
    with pytest.raises(CadenzaError, match="kazooo"):
        arrange(cm, song(), ["kazooo"])


def test_cli_arrange_and_infill(cm, tmp_path, capsys, monkeypatch):
    from cadenza.cli import main
    from cadenza.score import read_score, write_score

    write_score(song(), tmp_path / "in.mid")
    assert main(["arrange", str(tmp_path / "in.mid"), "--add", "bass,drums", "--model", str(cm.path), "--seed", "1",
                 "--out", str(tmp_path / "full.mid"), "-q"]) == 0
    full = read_score(tmp_path / "full.mid")
    orig = read_score(tmp_path / "in.mid")
    for k in (0, 1):
        assert rows(full.tracks[k]) == rows(orig.tracks[k])
    assert main(["infill", str(tmp_path / "in.mid"), "--bars", "3-4", "--tracks", "piano", "--model", str(cm.path),
                 "--out", str(tmp_path / "fixed.mid"), "-q"]) == 0
    fixed = read_score(tmp_path / "fixed.mid")
    assert rows(fixed.tracks[1]) == rows(orig.tracks[1])
    capsys.readouterr()
    for args, words in [(["infill", str(tmp_path / "in.mid"), "--bars", "x"], "cannot read --bars"),
                        (["infill", str(tmp_path / "in.mid"), "--bars", "1-2", "--tracks", "tuba"], "no track plays tuba"),
                        (["arrange", str(tmp_path / "in.mid"), "--add", "bass", "--model", "small"],
                         "trained without")]:
        code = main([*args, "--out", str(tmp_path / "x.mid"), "-q"] + (["--model", str(cm.path)] if "tuba" in args
                                                                       or "x" in args else []))
        err = capsys.readouterr().err
        assert code != 0 and words in err, (args, err)
    # no --model, a default model without the controls (the small one was the default): a model that
    # has them is used, and said
    monkeypatch.setattr("cadenza.tasks.compose.DEFAULT_MODEL", "small")
    monkeypatch.setenv("CADENZA_MODELS", str(cm.path.parent))
    assert main(["arrange", str(tmp_path / "in.mid"), "--add", "bass", "--seed", "2",
                 "--out", str(tmp_path / "auto.mid")]) == 0
    err = capsys.readouterr().err
    assert "using model '" in err and "has no instruments/infill control" in err
    assert rows(read_score(tmp_path / "auto.mid").tracks[0]) == rows(orig.tracks[0])


def test_generate_follows_key_chords_and_instruments(cm):
    from cadenza.engine import generate as engine_generate

    tok = cm.tokenizer
    chords = ["Am", "F", "C", "G7"]
    for prompt in (None, song()):
        r = cm._prepare(prompt, None, None, None, "pop", ["flute", "piano"], 100, None, 1.0, 0, 0.95, 1.0, 4, 1,
                        "off", "A minor", chords)
        # the engine keeps to the key and leans to the given chords' tones
        assert r["sampling"].key == (9, "minor") and r["sampling"].follow_chords
        res = engine_generate(cm.model, tok, r["ids"], sampling=r["sampling"], stop=r["stop"],
                              constraints=r["constraints"])
        seq = res.ids[0]
        c = tok.controls_of(seq)
        assert c["key"] == (9, "minor") and c["instruments"] == [0, 73]
        new_chords = c["chords"][-4:]
        assert new_chords == [(9, "min"), (5, "maj"), (0, "maj"), (7, "7")]
        assert tok.check(seq) == []
        n_prompt_bars = sum(1 for t in r["ids"] if tok.type_of[t] == T_BAR)
        assert sum(1 for t in seq if tok.type_of[t] == T_BAR) == (n_prompt_bars if prompt else 0) + 4
    score = cm.generate(chords=chords, key="A minor", instruments=["flute"], tempo=100, seed=2)
    assert {t.program for t in score.tracks if len(t.notes)} <= {73}
    assert round(score.tempos[0].qpm) == 100


def test_plain_models_refuse_key_and_chords(tiny_model_dir):
    plain = load_model(tiny_model_dir)
    with pytest.raises(CadenzaError, match="no key control"):
        plain.generate(key="D minor", bars=1)
    with pytest.raises(CadenzaError, match="cannot follow chords"):
        plain.generate(chords=["C"], bars=1)


def test_cli_generate_over_chords_with_key(cm, tiny_model_dir, tmp_path, capsys, monkeypatch):
    from cadenza.cli import main
    from cadenza.score import read_score

    out = tmp_path / "over.mid"
    assert main(["generate", "--model", str(cm.path), "--chords", "| Am | F | C | G |", "--repeat", "2",
                 "--key", "A minor", "--instruments", "flute,piano", "--seed", "1", "--out", str(out), "-q"]) == 0
    s = read_score(out)
    assert s.note_num() > 0 and {t.program for t in s.tracks if len(t.notes)} <= {0, 73}
    from cadenza.score.bars import bar_starts
    assert max(n.time for t in s.tracks for n in t.notes) < bar_starts(s, 9 * 1920)[8]  # 8 bars: 4 chords x 2
    # a plain model plays the repeated progression as its seed: one block chord a bar, 4 bars (it gave 2 bars
    # of quarter-note chords), with or without bar lines
    for text in ("Am F", "| Am | F |"):
        assert main(["generate", "--model", str(tiny_model_dir), "--chords", text, "--repeat", "2", "--bars", "1",
                     "--out", str(tmp_path / "seed.mid"), "-q"]) == 0
        track = next(t for t in read_score(tmp_path / "seed.mid").tracks if t.name == "Chords")
        held = [n for n in track.notes if n.duration == 1920 and n.time % 1920 == 0]  # the seed (the model adds)
        assert sorted({n.time for n in held}) == [0, 1920, 3840, 5760], text
        assert [{n.pitch % 12 for n in held if n.time == t} for t in (0, 1920)] == [{0, 4, 9}, {0, 5, 9}]
    capsys.readouterr()
    for args, words in [(["--repeat", "2"], "give --chords"), (["--chords", "| Am | Xq7 |"], "bar 2"),
                        (["--key", "H major"], "unknown key")]:
        code = main(["generate", "--model", str(cm.path), *args, "--out", str(tmp_path / "x.mid"), "-q"])
        assert code != 0 and words in capsys.readouterr().err, args
    # no --model, a default without the key control: a key asked for is written by a model with it
    monkeypatch.setattr("cadenza.tasks.compose.DEFAULT_MODEL", "small")
    monkeypatch.setenv("CADENZA_MODELS", str(cm.path.parent))
    assert main(["generate", "--key", "D minor", "--bars", "2", "--seed", "1", "--out", str(tmp_path / "k.mid")]) == 0
    assert "using model '" in capsys.readouterr().err


def _tempos_and_meters(path):
    """The tempo and time-signature events of a written MIDI file, read back with mido (not symusic,
    which wrote it)."""
    import mido

    mid = mido.MidiFile(str(path))
    tempos = [m.tempo for tr in mid.tracks for m in tr if m.type == "set_tempo"]  # microseconds per quarter
    meters = [(m.numerator, m.denominator) for tr in mid.tracks for m in tr if m.type == "time_signature"]
    return tempos, meters


@pytest.mark.parametrize("tempo,meter", [(100, "3/4"), (72, "6/8"), (133, "4/4")])
def test_tempo_and_meter_are_exact_in_the_written_file(cm, tmp_path, tempo, meter):
    from cadenza.cli import main

    out = tmp_path / "song.mid"
    for seed in (0, 1):
        assert main(["generate", "--model", str(cm.path), "--style", "pop", "--instruments",
                     "piano,acoustic bass,drums,strings", "--tempo", str(tempo), "--key", "D minor", "--meter", meter,
                     "--bars", "6", "--seed", str(seed), "--out", str(out), "-q"]) == 0
        tempos, meters = _tempos_and_meters(out)
        # MIDI stores whole microseconds per quarter: exact means the nearest one to the tempo asked for
        assert tempos and set(tempos) == {round(60e6 / tempo)}, tempos
        assert meters and set(meters) == {tuple(int(x) for x in meter.split("/"))}, meters
    # arranging and infilling keep the input's own tempo map and meter
    s = song()
    s.tempos.clear()
    s.tempos.append(symusic.Tempo(0, qpm=87.0))
    s.tempos.append(symusic.Tempo(4 * BAR, qpm=70.0))
    src = tmp_path / "in.mid"
    s.dump_midi(str(src))
    want, _ = _tempos_and_meters(src)
    for args in (["arrange", str(src), "--add", "bass,drums"], ["infill", str(src), "--bars", "3-4"]):
        assert main([*args, "--model", str(cm.path), "--seed", "0", "--out", str(out), "-q"]) == 0
        tempos, meters = _tempos_and_meters(out)
        assert tempos == want == [round(60e6 / 87), round(60e6 / 70)] and set(meters) == {(4, 4)}, args


def _prepared(cm, **kw):
    args = dict(prompt=None, bars=None, seconds=None, max_tokens=None, style=None, instruments=None, tempo=None,
                time_signature=None, temperature=1.0, top_k=0, top_p=0.95, repetition_penalty=1.0, seed=0,
                variations=1)
    return cm._prepare(**{**args, **kw})


def test_lengths_and_the_chord_track_as_the_readme_says(cm):
    """README: 16 bars by default, the progression's with chords; a longer --bars cycles the progression;
    the chords also sound as block chords in a track of their own on the first instrument asked for that
    plays chords (piano when none is asked for), and in none when no instrument asked for plays chords."""
    assert _prepared(cm)["stop"].bars == 16
    assert _prepared(cm, chords=["Am", "F", "C"])["stop"].bars == 3
    cycled = _prepared(cm, chords=["Am", "F"], bars=6)
    assert cycled["stop"].bars == 6
    assert [root for root, _ in cycled["constraints"]["chords"].values()] == [9, 5, 9, 5, 9, 5]
    program = lambda inst: (_prepared(cm, chords=["Am", "F"], instruments=inst)["chord_track"] or [None] * 4)[3]  # noqa: E731
    assert (program(["flute", "acoustic guitar", "piano"]), program(None), program(["flute"])) == (24, 0, None)
