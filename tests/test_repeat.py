"""The bar repetition control steers how often bars restate recent ones (the loop rate)."""

import pytest

from cadenza.errors import CadenzaError
from cadenza.eval.metrics import loop_rate
from cadenza.tasks import load_model
from cadenza.tokenizers.remi import T_BAR


@pytest.fixture(scope="module")
def model():
    return load_model()


def _bars(tok, score):
    ids = tok.encode(score)
    bars, cur = [], None
    for t in ids:
        if tok.type_of[t] == T_BAR:
            if cur is not None:
                bars.append(tuple(cur))
            cur = []
        elif cur is not None:
            cur.append(t)
    return bars + ([tuple(cur)] if cur else [])


def test_rate_one_restates_and_rate_zero_never_does(model):
    always = model.generate(style="folk", bars=16, seed=0, repeat=1.0)
    never = model.generate(style="folk", bars=16, seed=0, repeat=0.0)
    assert loop_rate(always) > 0.6
    assert loop_rate(never) <= 0.07
    bars = _bars(model.tokenizer, never)
    assert not any(bars[i] == bars[i - k] for i in range(1, len(bars)) for k in (1, 2, 4)
                   if i - k >= 0 and len(bars[i]) > 1)


def test_auto_uses_the_styles_measured_rate(model):
    rates = model.config["repeat_rate"]
    assert rates["folk"] > rates["pop"]  # folk tunes restate bars far more often than POP909 songs
    r = model._prepare(None, 4, None, None, "folk", None, None, None, 1.0, 0, 0.95, 1.0, 0, 1, "auto")
    assert r["sampling"].repeat_rate == rates["folk"]
    r = model._prepare(None, 4, None, None, "folk", None, None, None, 1.0, 0, 0.95, 1.0, 0, 1, "off")
    assert r["sampling"].repeat_rate is None


def test_bad_rate_is_one_clear_error(model):
    with pytest.raises(CadenzaError, match="repeat"):
        model.generate(bars=2, repeat=1.5)
