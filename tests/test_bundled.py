"""The bundled default model: present, complete, small, and it writes music in every style."""

import json

import pytest

import cadenza
from cadenza.tasks.compose import BUNDLED_DIR

DEFAULT = BUNDLED_DIR / "default"


def test_folder_is_complete_and_small():
    assert sorted(p.name for p in DEFAULT.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert sum(p.stat().st_size for p in DEFAULT.iterdir()) <= 25 * 2**20
    cfg = json.loads((DEFAULT / "config.json").read_text())
    assert {"folk", "chorale", "pop", "classical"} <= set(cfg["styles"])
    assert cfg["license"] and cfg["training"]["data"]
    card = (DEFAULT / "README.md").read_text()
    for word in ("Data", "License", "Recipe", "Validation loss", "folk", "chorale", "pop", "classical"):
        assert word in card


@pytest.fixture(scope="module")
def model():
    return cadenza.load_model()


@pytest.mark.parametrize("style", ["folk", "chorale", "pop", "classical"])
def test_generates_each_style(model, style):
    score = model.generate(bars=4, style=style, seed=1, temperature=0.9)
    assert score.note_num() > 0
    assert 4 * 1.5 <= score.end() / score.tpq <= 5 * 4 + 8  # about four 4/4 bars (a held note may ring on)


def test_continues_typed_melody_on_requested_instruments(model):
    prompt = cadenza.parse_notes("E4 D4 C4 D4 | E4 E4 E4*2", tempo=100)
    score = model.generate(prompt, bars=4, instruments=["piano", "violin"], seed=3)
    assert {t.program for t in score.tracks if len(t.notes)} <= {0, 40}
    assert score.note_num() > prompt.note_num()
