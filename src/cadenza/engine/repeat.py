"""Bar repetition control: music repeats itself about as often as real music of its style.

Autoregressive samplers are known to fall into loops (the same bar again and again); small models
can also fail the other way and never restate anything, where real folk tunes, say, repeat a bar
in one of six. The measure is the loop rate (guide/benchmarks.md, section 3: the fraction of bars
that repeat one of the previous 1, 2 or 4 bars exactly). ``RepeatControl`` steers it to a target
rate, bar by bar, on the logits:

* when a bar starts, it decides (with its own random generator, seeded beside the sampler's) whether this bar may restate
  an earlier one: with probability ``rate`` it picks a lag k in (1, 2, 4) and, as long as the new
  bar's tokens so far equal the start of the bar k back, adds ``strength`` to the logit of that
  bar's next token, so the model is invited (not forced) to restate it;
* otherwise an exact restatement is ruled out: when the bar so far equals a whole earlier bar
  (lag 1, 2 or 4), the tokens that would end it there (Bar, EOS) are masked, and the bar goes on
  with something new (where the grammar allows nothing else, the mask is dropped).

The default ``rate`` of a style is the loop rate of the model's own training pieces of that style
(``repeat_rate`` in the model's config.json), so a folk tune repeats like folk and a pop piece
like pop; the bench reports the loop rates with and without the control, beside real pieces.
"""

from __future__ import annotations

import torch

from cadenza.tokenizers.remi import T_BAR, T_TSIG

LAGS = (1, 2, 4)


class RepeatControl:
    def __init__(self, tokenizer, n: int, rate: float, strength: float = 8.0, prompts: list[list[int]] | None = None,
                 seed: int = 0):
        self.tok, self.rate, self.strength = tokenizer, float(rate), float(strength)
        # its own random stream: deciding which bars restate does not shift the sampler's draws, so
        # where the control does not act the music is exactly what it would have been without it
        self.gen = torch.Generator().manual_seed(seed)
        self.bars: list[list[tuple[int, ...]]] = [[] for _ in range(n)]  # finished bars' tokens
        self.cur: list[list[int] | None] = [None] * n  # the bar being written (None before the first Bar)
        self.lag: list[int | None] = [None] * n  # the bar to restate in this bar, or None (avoid mode)
        # lags k whose bar -k begins with the current bar's tokens so far: kept up to date token by
        # token, so the per-token work does not grow with the bar's length
        self.match: list[set[int]] = [set() for _ in range(n)]
        self.bar_end = torch.zeros(tokenizer.vocab_size, dtype=torch.bool)
        self.bar_end[torch.as_tensor(tokenizer.ids_of_type[T_BAR])] = True
        self.bar_end[tokenizer.eos_id] = True
        for b, ids in enumerate(prompts or []):
            for t in ids:
                self._track(b, int(t), False)

    def _track(self, b: int, t: int, decide: bool) -> None:
        if self.tok.type_of[t] == T_BAR:
            if self.cur[b] is not None:
                self.bars[b].append(tuple(self.cur[b]))
            self.cur[b] = []
            self.lag[b] = None
            self.match[b] = {k for k in LAGS if len(self.bars[b]) >= k}
            if decide:
                gen = self.gen
                lags = [k for k in sorted(self.match[b]) if any(self.tok.type_of[x] != T_TSIG for x in self.bars[b][-k])]
                if lags and float(torch.rand(1, generator=gen)) < self.rate:
                    self.lag[b] = lags[int(torch.randint(len(lags), (1,), generator=gen))]
        elif self.cur[b] is not None:
            n, bars = len(self.cur[b]), self.bars[b]
            self.match[b] = {k for k in self.match[b] if n < len(bars[-k]) and bars[-k][n] == t}
            self.cur[b].append(t)

    def advance(self, b: int, t: int) -> None:
        self._track(b, t, True)

    def apply(self, logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Logits (B, V) with the restatement bias added; ``masks`` (B, V) bool is narrowed in place."""
        out = None
        for b, cur in enumerate(self.cur):
            if cur is None:
                continue
            bars, n, match = self.bars[b], len(cur), self.match[b]
            lag = self.lag[b]
            if lag is not None:
                ref = bars[-lag]
                if lag in match:
                    nxt = ref[n] if n < len(ref) else None
                    if out is None:
                        out = logits.clone()
                    if nxt is not None:
                        out[b, nxt] += self.strength
                    else:  # the whole bar restated: invite the Bar token that closes it
                        out[b, self.bar_end] += self.strength
                continue
            # avoid mode: no exact restatement of bar -1, -2 or -4
            if any(len(bars[-k]) == n for k in match):
                narrowed = masks[b] & ~self.bar_end
                if narrowed.any():
                    masks[b] = narrowed
        return logits if out is None else out
