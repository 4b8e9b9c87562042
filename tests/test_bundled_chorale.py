"""The bundled chorale model: present, documented, and it harmonizes like a trained model.

A random-weight model passes the structural tests in test_harmonize.py; these ones need the real
weights: the chords it writes under a hymn tune are mostly consonant with it, the lower voices
stay in their ranges, and the voice-leading faults are few.
"""

import json

import numpy as np
import pytest

from cadenza.eval.voice_leading import RANGES, voice_leading_per_100_beats
from cadenza.score import parse_notes
from cadenza.tasks.compose import BUNDLED_DIR
from cadenza.tasks.harmonize import Harmonizer

CHORALE = BUNDLED_DIR / "chorale"
# "Old Hundredth" (Genevan Psalter, 1551), in G, as a chorale melody: half-note phrase ends
HYMN = ("G4*2 G4 F#4 | E4 D4 G4 A4 | B4*4 | B4*2 B4 A4 | G4 C5 B4 A4 | G4*4 | "
        "G4*2 A4 B4 | A4 G4 E4 F#4 | G4*4 | D5*2 B4 G4 | A4 C5 B4 A4 | G4*4")


def test_folder_is_complete_small_and_documented():
    assert sorted(p.name for p in CHORALE.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert sum(p.stat().st_size for p in CHORALE.iterdir()) <= 25 * 2**20
    cfg = json.loads((CHORALE / "config.json").read_text())
    assert cfg["family"] == "chorale-grid" and cfg["license"] and cfg["training"]["data"]
    card = (CHORALE / "README.md").read_text()
    for word in ("Data", "License", "Reproduce", "Metrics", "jsb_nll_valid"):
        assert word in card


@pytest.fixture(scope="module")
def chorale():
    harm = Harmonizer.load("chorale")
    melody = parse_notes(HYMN, tempo=80)
    res = harm.harmonize(melody, seed=0)
    return melody, res


def test_soprano_kept_and_four_parts(chorale):
    melody, res = chorale
    sc = res.scores[0]
    assert [t.name for t in sc.tracks] == ["Soprano", "Alto", "Tenor", "Bass"]
    assert [(n.start, n.duration, n.pitch) for n in sc.tracks[0].notes] == \
        [(n.start, n.duration, n.pitch) for n in melody.tracks[0].notes]


def test_chords_are_consonant_with_the_tune(chorale):
    """On each beat, the bass and the soprano form a consonance (unison, 3rd, 5th, 6th, octave)
    in most places, as in Bach (about 90% there); a random model gets about 40%."""
    _, res = chorale
    g = res.grids[0]
    beats = g[::4]
    both = beats[(beats[:, 0] >= 0) & (beats[:, 3] >= 0)]
    consonant = np.isin((both[:, 0] - both[:, 3]) % 12, [0, 3, 4, 7, 8, 9])
    assert len(both) >= 40 and consonant.mean() >= 0.75, consonant.mean()


def test_voices_in_range_and_few_faults(chorale):
    _, res = chorale
    g = res.grids[0]
    for v in (1, 2, 3):
        p = g[:, v][g[:, v] >= 0]
        lo, hi = RANGES[v]
        assert len(p) and ((p >= lo - 2) & (p <= hi + 2)).mean() >= 0.95, (v, p.min(), p.max())
    vl = voice_leading_per_100_beats([g])
    # Bach's 76 valid chorales: about 1 parallel fifth/octave and a few crossings per 100 beats
    assert vl["parallel_fifths"] + vl["parallel_octaves"] <= 8, vl
    assert vl["voice_crossings"] <= 10, vl


def test_bf16_cache_scores_like_float32(chorale):
    """The harmonizer decodes with a bfloat16 KV cache where the CPU has native bf16 (fill's
    ``dtype="fast"``): on the real model it must not change the likelihood of a chorale (measured:
    0.33983 vs 0.33984 nats per token on six valid chorales)."""
    import torch

    from cadenza.tokenizers.grid import GridTokenizer

    _, res = chorale
    harm = Harmonizer.load("chorale")
    model = harm.model
    ids = torch.tensor(GridTokenizer().encode_grid(res.grids[0]))[None, :600]
    nll = {}
    for dtype in (torch.float32, torch.bfloat16):
        model.setup_cache(1, 1024, dtype=dtype)
        with torch.no_grad():
            out = [model(ids[:, :1], input_pos=torch.arange(1))]
            out += [model(ids[:, i:i + 1], input_pos=torch.tensor([i])) for i in range(1, ids.shape[1] - 1)]
        model.clear_cache()
        nll[dtype] = torch.nn.functional.cross_entropy(torch.cat(out, 1)[0], ids[0, 1:]).item()
    assert abs(nll[torch.float32] - nll[torch.bfloat16]) < 2e-3, nll
