"""The bundled default model (the arrange model since it beat the small one on the foundation's measures)
and the small model: present, complete, small, and the default writes music in every style."""

import json

import pytest

import cadenza
from cadenza.tasks.compose import find_model, load_model

@pytest.mark.parametrize("name", ["default", "small"])
def test_folder_is_complete_and_small(name):
    folder = find_model(name)
    assert folder.name == ("arrange" if name == "default" else name)
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert sum(p.stat().st_size for p in folder.iterdir()) <= 25 * 2**20
    cfg = json.loads((folder / "config.json").read_text())
    assert {"folk", "chorale", "pop", "classical"} <= set(cfg["styles"])
    assert cfg["license"] and cfg["training"]["data"]
    card = (folder / "README.md").read_text()
    for word in ("Data", "License", "Recipe", "Validation loss", "folk", "chorale", "pop", "classical"):
        assert word in card


@pytest.fixture(scope="module")
def model():
    return cadenza.load_model()


@pytest.mark.parametrize("style", ["folk", "chorale", "pop", "classical"])
def test_generates_each_style(model, style):
    score = model.generate(bars=4, style=style, seed=1, temperature=0.9)
    assert score.note_num() > 0
    assert 4 * 1.5 <= score.end() / score.tpq <= 4 * 4  # four 4/4 bars: near the end no note rings past them


def test_continues_typed_melody_on_requested_instruments(model):
    prompt = cadenza.parse_notes("E4 D4 C4 D4 | E4 E4 E4*2", tempo=100)
    score = model.generate(prompt, bars=4, instruments=["piano", "violin"], seed=3)
    assert {t.program for t in score.tracks if len(t.notes)} <= {0, 40}
    assert score.note_num() > prompt.note_num()


def test_int8_copy_scores_validation_chorales_within_2_percent(tmp_path):
    """The quantized default model's validation NLL is within 2% of the float model's.

    Validation pieces: the music21 Bach chorales training held out (``is_valid``), which ship with music21.
    """
    from cadenza.eval.likelihood import corpus_nll
    from cadenza.model import quantize_model_folder
    from cadenza.train.corpora import Source, iter_pieces

    src = find_model("default")
    quantize_model_folder(src, tmp_path / "int8")
    base, q = load_model(src), load_model(tmp_path / "int8")
    assert (tmp_path / "int8" / "model.safetensors").stat().st_size < 0.6 * (src / "model.safetensors").stat().st_size
    seqs = []
    for _, score in iter_pieces(Source("music21:bach", "chorale"), only="valid"):
        seqs.append(base.tokenizer.encode(score, "chorale", eos=True))
        if len(seqs) == 6:
            break
    assert sum(map(len, seqs)) > 2000
    nll_float = corpus_nll(base.model, seqs, tokenizer=base.tokenizer)
    nll_int8 = corpus_nll(q.model, seqs, tokenizer=base.tokenizer)
    assert 0.2 < nll_float < 2.0  # a trained model, far from chance (log V = 6.2)
    print(f"valid NLL float {nll_float:.4f} int8 {nll_int8:.4f}")
    assert abs(nll_int8 - nll_float) / nll_float < 0.02
