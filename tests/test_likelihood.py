import math

import torch

from cadenza.eval.likelihood import corpus_nll, sequence_nll
from cadenza.model import ModelConfig, Transformer


class Uniform(torch.nn.Module):
    """Equal logits for every token: NLL per token is exactly log(V)."""

    def __init__(self, vocab):
        super().__init__()
        self.vocab = vocab

    def forward(self, x):
        return torch.zeros(x.shape[0], x.shape[1], self.vocab)


def test_uniform_model_scores_log_v_for_every_token_once():
    seq = [1] + [5] * 99
    total, count = sequence_nll(Uniform(10), seq, ctx=16, stride=8)
    assert count == 99
    assert math.isclose(total / count, math.log(10), rel_tol=1e-6)


def test_windows_equal_full_pass_when_the_sequence_fits():
    torch.manual_seed(0)
    m = Transformer(ModelConfig(vocab_size=20, d_model=32, n_layers=1, n_heads=2, d_ff=32, max_seq_len=64)).eval()
    seq = torch.randint(0, 20, (50,)).tolist()
    logits = m(torch.tensor(seq)[None])[0, :-1]
    full = torch.nn.functional.cross_entropy(logits, torch.tensor(seq[1:]), reduction="sum").item()
    total, count = sequence_nll(m, seq)
    assert count == 49 and math.isclose(total, full, rel_tol=1e-5)
    # a long sequence with a short context: every token is still scored exactly once
    long = torch.randint(0, 20, (200,)).tolist()
    assert sequence_nll(m, long, ctx=64, stride=32)[1] == 199
    assert corpus_nll(m, [seq, long], ctx=64, stride=32) > 0


def test_later_windows_start_with_the_header_at_an_allowed_start():
    seen = []

    class Spy(Uniform):
        def forward(self, x):
            seen.append(x[0].tolist())
            return super().forward(x)

    seq = [1] + list(range(4, 4 + 40))  # BOS + 40 cells
    starts = list(range(1, 41, 4))  # a window may start at every 4th cell
    total, count = sequence_nll(Spy(50), seq, ctx=16, stride=8, head=[1], starts=starts)
    assert count == 40 and math.isclose(total / count, math.log(50), rel_tol=1e-6)
    assert seen[0] == seq[:16]
    for w in seen[1:]:
        assert w[0] == 1 and seq.index(w[1]) in starts and len(w) <= 16
    # every token scored once, with the header never scored: the count says so
