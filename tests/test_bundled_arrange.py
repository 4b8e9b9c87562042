"""The bundled arrange model: present, documented, and it arranges like a trained model.

test_arrange.py checks the mechanics with random weights; these need the real ones: over a chord
progression most of the note time is on chord tones, every instrument asked for plays, and a
melody given to `arrange` comes back note for note with the new parts under it.
"""

import json

import pytest

from cadenza.score import parse_notes
from cadenza.score.harmony import chord_tone_ratio, parse_chord
from cadenza.tasks import load_model
from cadenza.tasks.arrange import arrange
from cadenza.tasks.compose import BUNDLED_DIR

ARRANGE = BUNDLED_DIR / "arrange"


def test_folder_is_complete_small_and_documented():
    assert sorted(p.name for p in ARRANGE.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert sum(p.stat().st_size for p in ARRANGE.iterdir()) <= 25 * 2**20
    cfg = json.loads((ARRANGE / "config.json").read_text())
    assert set(cfg["tokenizer"]["controls"]) == {"key", "instruments", "chords", "infill"}
    assert cfg["license"] and cfg["training"]["data"]
    card = (ARRANGE / "README.md").read_text()
    for word in ("Data", "Reproduce", "Metrics", "rule-made drum", "chord_tone_ratio_generated"):
        assert word in card


@pytest.fixture(scope="module")
def cm():
    return load_model("arrange")


def test_it_writes_over_chords_on_the_instruments_asked_for(cm):
    from cadenza.score.bars import bar_starts

    chords = ["C", "Am", "F", "G"] * 2
    ratios = []
    for score in cm.generate(chords=chords, instruments=["piano", "acoustic bass", "drums"], style="pop", seed=0,
                             time_signature=(4, 4), variations=4):
        playing = {(t.program, t.is_drum) for t in score.tracks if len(t.notes)}
        assert playing == {(0, False), (32, False), (0, True)}
        s = score.to("tick") if not str(score.ttype).endswith("Tick") else score
        starts = bar_starts(s, int(s.end()) + 1)[:8]
        ratios.append(chord_tone_ratio(s, starts, [parse_chord(c) for c in chords]))
    # real pop songs over their own chords: about 0.77 (bench/arrange.py); the notes of C major at random
    # over these chords: about 0.4
    assert sum(ratios) / len(ratios) > 0.6, ratios


def test_arrange_keeps_the_melody_and_adds_parts(cm):
    melody = parse_notes("E5 D5 C5 D5 | E5 E5 E5*2 | D5 D5 D5*2 | E5 G5 G5*2", tempo=100, program=73)
    out = arrange(cm, melody, [(32, False), (0, False)], seed=1)
    given = sorted((n.time, n.pitch, n.duration) for n in melody.tracks[0].notes)
    kept = [t for t in out.tracks if t.program == 73]
    assert len(kept) == 1 and sorted((n.time, n.pitch, n.duration) for n in kept[0].notes) == given
    added = {t.program for t in out.tracks if len(t.notes) and t.program != 73}
    assert added == {32, 0}
