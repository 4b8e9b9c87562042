"""Shared fixtures: small scores and a tiny random-weight model folder, made here."""

from __future__ import annotations

import pytest
import symusic
import torch

from cadenza.model import ModelConfig, Transformer, save_model_folder
from cadenza.tokenizers import RemiSpec, RemiTokenizer


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: looks at outputs in headless Chromium (skipped without it, except on CI)")


def make_score(notes, program=0, tempo=120.0, tpq=480, ts=(4, 4), is_drum=False) -> symusic.Score:
    """notes: (pitch, start_beat, dur_beats, velocity) rows, as in note-seq's test tables."""
    s = symusic.Score(tpq)
    s.tempos.append(symusic.Tempo(0, qpm=tempo))
    s.time_signatures.append(symusic.TimeSignature(0, ts[0], ts[1]))
    tr = symusic.Track("t", program, is_drum)
    for p, start, dur, vel in notes:
        tr.notes.append(symusic.Note(int(start * tpq), int(dur * tpq), p, vel))
    s.tracks.append(tr)
    return s


@pytest.fixture(scope="session")
def tokenizer() -> RemiTokenizer:
    return RemiTokenizer(RemiSpec())


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer):
    """A random-weight model folder with the default styles: enough to exercise every path."""
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=tokenizer.vocab_size, d_model=32, n_layers=2, n_heads=4,
                                    d_ff=64, max_seq_len=256))
    path = tmp_path_factory.mktemp("models") / "tiny"
    save_model_folder(path, model, {"name": "tiny", "family": "remi-lm", "tokenizer": tokenizer.to_config(),
                                    "styles": tokenizer.styles, "license": "test"}, card="# tiny\n")
    return path


@pytest.fixture()
def melody() -> symusic.Score:
    return make_score([(64, 0, 1, 80), (62, 1, 1, 80), (60, 2, 1, 80), (62, 3, 1, 80),
                       (64, 4, 1, 80), (64, 5, 1, 80), (64, 6, 2, 80)])
