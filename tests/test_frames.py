"""Piano-roll frame tokens (the polyphonic benchmark's serialization)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from cadenza.eval.likelihood import corpus_nll_sum, grammar_masks, sequence_nll
from cadenza.model import ModelConfig, Transformer
from cadenza.tokenizers import FrameSpec, FrameTokenizer, tokenizer_from_config

FRAMES = [[60, 64, 67], [60, 64, 67], [], [62, 65], [48, 62, 65, 71], [48]]


def test_frames_round_trip_through_ids_and_scores():
    tok = FrameTokenizer()
    ids = tok.encode_frames(FRAMES)
    assert ids[0] == tok.bos_id and tok.frame_count(ids) == len(FRAMES)
    assert tok.decode_frames(ids) == FRAMES
    score = tok.frames_to_score(FRAMES)
    assert tok.score_to_frames(score) == FRAMES
    assert [n.duration for n in score.tracks[0].notes if n.pitch == 60] == [240]  # held across 2 frames
    assert tokenizer_from_config(tok.to_config()).vocab_size == tok.vocab_size


def test_grammar_accepts_every_encoding_and_only_rising_frames():
    tok = FrameTokenizer()
    ids = tok.encode_frames(FRAMES)
    st = tok.start_state()
    for t in ids:
        assert tok.allowed(st)[t]
        st.advance(t)
    assert st.complete()
    st.advance(tok.pitch_ids[64])
    m = tok.allowed(st)
    assert not m[tok.pitch_ids[64]] and not m[tok.pitch_ids[60]] and m[tok.pitch_ids[65]] and m[tok.eof_id]
    starts = tok.window_starts(np.array(ids))
    assert all(ids[s - 1] in (tok.bos_id, tok.eof_id) for s in starts)
    assert len(starts) == len(FRAMES)


def test_frame_probabilities_sum_to_one_under_the_grammar():
    """The benchmark needs an exact frame probability: over all 2^4 frames of a 4-key roll they sum to 1."""
    tok = FrameTokenizer(FrameSpec(pitch_range=(60, 64)))
    torch.manual_seed(0)
    m = Transformer(ModelConfig(vocab_size=tok.vocab_size, d_model=16, n_layers=1, n_heads=2, d_ff=16,
                                max_seq_len=32)).eval()
    prefix = [[60, 62], [63]]
    total = 0.0
    for r in range(5):
        for frame in itertools.combinations(range(60, 64), r):
            ids = tok.encode_frames(prefix + [list(frame)])
            full, _ = sequence_nll(m, ids, masks=grammar_masks(tok, ids))
            pre = tok.encode_frames(prefix)
            part, _ = sequence_nll(m, pre, masks=grammar_masks(tok, pre))
            total += math.exp(-(full - part))
    assert math.isclose(total, 1.0, rel_tol=1e-4)
    nll, count = corpus_nll_sum(m, [tok.encode_frames(prefix)], tokenizer=tok, grammar=True)
    assert count == 5 and nll > 0
