"""Harmonizing and editing chorales: what is given stays given, only the asked region changes."""

from __future__ import annotations

import music21
import pytest
import symusic
import torch

from cadenza.cli import main
from cadenza.engine.fill import fill
from cadenza.errors import CadenzaError
from cadenza.model import ModelConfig, Transformer, save_model_folder
from cadenza.score import parse_notes, read_score, write_score
from cadenza.tasks.harmonize import Harmonizer
from cadenza.tokenizers.grid import GridTokenizer

from conftest import make_score

TUNE = "G4 G4 D5 D5 | E5 E5 D5*2 | C5 C5 B4 B4 | A4 A4 G4*2 | " * 4  # 16 bars, repeated notes


@pytest.fixture(scope="module")
def grid_model_dir(tmp_path_factory):
    """A random-weight chorale-grid model with a short context (so windows slide)."""
    tok = GridTokenizer()
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=tok.vocab_size, d_model=32, n_layers=2, n_heads=4, d_ff=64,
                                    max_seq_len=256))
    path = tmp_path_factory.mktemp("models") / "tiny-chorale"
    save_model_folder(path, model, {"name": "tiny-chorale", "family": "chorale-grid",
                                    "tokenizer": tok.to_config(), "styles": [], "license": "test"}, card="# t\n")
    return path


@pytest.fixture(scope="module")
def harm(grid_model_dir):
    return Harmonizer.load(grid_model_dir)


def _notes(track):
    return [(n.start, n.duration, n.pitch) for n in track.notes]


def test_soprano_is_the_melody_note_for_note(harm):
    melody = parse_notes(TUNE, tempo=80)
    res = harm.harmonize(melody, seed=1, particles=4)
    sc = res.scores[0]
    assert [t.name for t in sc.tracks] == ["Soprano", "Alto", "Tenor", "Bass"]
    assert _notes(sc.tracks[0]) == _notes(melody.tracks[0])  # repeated G4 G4 stay two notes
    assert all(len(t.notes) for t in sc.tracks)
    assert res.transposed == 0 and not res.notes
    # the same seed gives the same chorale
    again = harm.harmonize(melody, seed=1, particles=4).scores[0]
    assert [_notes(t) for t in again.tracks] == [_notes(t) for t in sc.tracks]


def test_low_melody_is_transposed_with_a_note(harm):
    melody = parse_notes("G2 A2 B2 C3 | D3/2 D3/2", tempo=80)
    res = harm.harmonize(melody, seed=0, particles=2)
    assert res.transposed == 24 and "transposed up 2 octaves" in res.notes[0]
    assert [p + 24 for _, _, p in _notes(melody.tracks[0])] == [p for _, _, p in _notes(res.scores[0].tracks[0])]


def test_regenerate_changes_only_the_region_and_keep_holds(harm, tmp_path):
    first = harm.harmonize(parse_notes(TUNE, tempo=80), seed=2, particles=4).scores[0]
    path = write_score(first, tmp_path / "c.musicxml")
    chorale = read_score(path)
    edited = harm.harmonize(chorale, regenerate="5-8", keep="bass:5-6", seed=3, particles=4).scores[0]
    step = chorale.tpq // 4
    bar = 16 * step
    lo, hi = 4 * bar, 8 * bar
    changed = 0
    for v, (before, after) in enumerate(zip(chorale.tracks, edited.tracks)):
        outside_b = [n for n in _notes(before) if n[0] + n[1] <= lo or n[0] >= hi]
        outside_a = [n for n in _notes(after) if n[0] + n[1] <= lo or n[0] >= hi]
        assert outside_b == outside_a, f"voice {v} changed outside bars 5-8"
        if v in (0, 3):  # the soprano and the kept bass stay whole
            kept_hi = hi if v == 0 else 6 * bar
            assert [n for n in _notes(before) if n[0] < kept_hi] == [n for n in _notes(after) if n[0] < kept_hi]
        changed += _notes(before) != _notes(after)
    assert changed >= 1  # something inside the region was rewritten


def test_fill_knows_the_future():
    """x is free, y after it is fixed; the model says y follows x exactly. Sampling x from the prefix
    alone gets it wrong half the time; the filter must always pick the x that explains y."""
    torch.manual_seed(0)
    V, A, B, YA, YB = 8, 3, 4, 5, 6
    m = Transformer(ModelConfig(vocab_size=V, d_model=32, n_layers=2, n_heads=4, d_ff=64, max_seq_len=16))
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    data = torch.tensor([[1, A, YA], [1, B, YB]] * 8)
    for _ in range(150):
        loss = torch.nn.functional.cross_entropy(m(data[:, :-1]).reshape(-1, V), data[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    masks = torch.zeros(2, V, dtype=torch.bool)
    masks[0] = True
    masks[1, [A, B]] = True
    from cadenza.engine.sampling import SamplingConfig

    res = fill(m, [1, 0, YB], [False, True, False], masks, [0, 1, 0], particles=8, groups=20,
               sampling=SamplingConfig(top_p=1.0, repetition_penalty=1.0, seed=0))
    assert [ids[1] for ids in res.ids] == [B] * 20
    assert all(ids[2] == YB for ids in res.ids)


def test_cli_harmonize_writes_four_named_parts(grid_model_dir, tmp_path, capsys):
    out = tmp_path / "c.musicxml"
    assert main(["harmonize", "--notes", "G4 G4 D5 D5 | E5 E5 D5/2", "--key", "G", "--model", str(grid_model_dir),
                 "--particles", "2", "--seed", "0", "--out", str(out), "--out", str(tmp_path / "c.mid"), "-q"]) == 0
    parsed = music21.converter.parse(str(out))
    assert [p.partName for p in parsed.parts] == ["Soprano", "Alto", "Tenor", "Bass"]
    assert parsed.parts[0].recurse().getElementsByClass("KeySignature")[0].sharps == 1
    assert len(symusic.Score(str(tmp_path / "c.mid")).tracks) == 4
    assert main(["harmonize", "--notes", "G4 D5 | E5 D5/2", "--model", str(grid_model_dir), "--particles", "2",
                 "--variations", "2", "--out", str(tmp_path / "take.mid"), "-q"]) == 0
    assert (tmp_path / "take-1.mid").exists() and (tmp_path / "take-2.mid").exists()


@pytest.mark.parametrize("args, message", [
    (["--notes", "[C4 E4 G4] D4 E4"], "has chords: two notes sound together at bar 1 beat 1"),
    (["--notes", "C4 D4 | E4 F4", "--regenerate", "alto:1"], "--regenerate needs a four-part chorale"),
    (["CHORALE", "--regenerate", "20-24"], "is outside the piece, which has 4 bars"),
    (["CHORALE", "--keep", "viola:1-2"], "unknown voice 'viola'"),
    (["CHORALE", "--regenerate", "2-1"], "is empty"),
    (["EMPTY"], "has no notes"),
    (["--notes", "C4 D4", "--key", "H"], "unknown key 'H'"),
    (["--notes", "C4 D4", "--model", "default"], "harmonizing needs a chorale-grid model"),
])
def test_bad_input_gets_one_line(harm, grid_model_dir, tmp_path, capsys, args, message):
    chorale = harm.harmonize(parse_notes("G4 G4 D5 D5 | E5 E5 D5*2 | C5 B4 A4 G4 | D5*4", tempo=80),
                             particles=2, seed=0).scores[0]
    write_score(chorale, tmp_path / "chorale.mid")
    empty = symusic.Score(480)
    empty.tracks.append(symusic.Track("x", 0, False))
    empty.dump_midi(str(tmp_path / "empty.mid"))
    args = [{"CHORALE": str(tmp_path / "chorale.mid"), "EMPTY": str(tmp_path / "empty.mid")}.get(x, x) for x in args]
    if "--model" not in args:
        args += ["--model", str(grid_model_dir)]
    out = tmp_path / "o.mid"
    assert main(["harmonize", *args, "--particles", "2", "--out", str(out), "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not out.exists()


def test_harmonizer_refuses_a_melody_the_grid_cannot_place():
    with pytest.raises(CadenzaError, match="no notes"):
        from cadenza.tasks.harmonize import _melody_notes

        _melody_notes(make_score([]), "x")


def test_no_parallel_fifths_or_octaves_unless_asked(harm):
    """The voice-leading rule holds even for a random model (which writes parallels freely)."""
    from cadenza.eval.voice_leading import voice_leading_counts

    melody = parse_notes(TUNE, tempo=80)
    ruled = harm.harmonize(melody, seed=4, particles=4).grids[0]
    free = harm.harmonize(melody, seed=4, particles=4, rules=False).grids[0]
    c_ruled, c_free = voice_leading_counts(ruled), voice_leading_counts(free)
    assert c_ruled["parallel_fifths"] == 0 and c_ruled["parallel_octaves"] == 0, c_ruled
    assert c_free["parallel_fifths"] + c_free["parallel_octaves"] > 0, c_free
    for v, (lo, hi) in enumerate(((55, 74), (48, 67), (40, 60)), start=1):  # textbook A, T, B ranges
        p = ruled[:, v][ruled[:, v] >= 0]
        assert p.min() >= lo and p.max() <= hi


def test_regions_name_voices_and_join_with_semicolons():
    """README: regions like 'alto,tenor:5-8', several joined by ';'."""
    from cadenza.tasks.harmonize import parse_regions

    regions = parse_regions("alto,tenor:5-8; bass:1-2", "--regenerate", 16, 4, 16 * 8, (0, 1, 2, 3))
    assert [(r.voices, r.start, r.end) for r in regions] == [((1, 2), 64, 128), ((3,), 0, 32)]


def test_free_voice_leading_turns_the_rules_off(grid_model_dir, tmp_path, capsys, monkeypatch):
    """README: `--free-voice-leading` lets the model move voices without the parallel-fifths/octaves rule."""
    from cadenza.cli import main
    from cadenza.tasks.harmonize import Harmonizer

    seen = []
    real = Harmonizer.harmonize

    def spy(self, *a, **kw):
        seen.append(kw["rules"])
        return real(self, *a, **kw)

    monkeypatch.setattr(Harmonizer, "harmonize", spy)
    for flag in ([], ["--free-voice-leading"]):
        assert main(["harmonize", "--notes", "C4 D4 E4 F4", "--model", str(grid_model_dir), *flag, "-q",
                     "--out", str(tmp_path / "h.mid")]) == 0
    assert seen == [True, False]
