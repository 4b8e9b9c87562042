"""Filling the free positions of a token template, knowing everything that is fixed, before and after.

A left-to-right model samples token ``i`` knowing only tokens ``< i``. Harmonizing a melody, or
regenerating bars 5-8 of a chorale, asks for more: each chord must suit the melody notes still to
come and the fixed music after the gap. ``fill`` gets that from the same model with sequential
Monte Carlo (a particle filter; cf. Lew et al. 2023, "Sequential Monte Carlo steering of large
language models"):

* ``P`` particles (copies of the sequence) run in one batch through one KV cache;
* a free position is sampled from the model (the proposal);
* a fixed position is not sampled: the model's probability of the fixed token multiplies the
  particle's weight (it is evidence about the choices made so far);
* when the weights grow uneven, particles are resampled in proportion to them (their KV cache
  rows are copied along), so choices that make the later fixed tokens unlikely die out.

At the end every weight holds the probability of *all* the fixed tokens, the whole melody and
every kept note after the gap included, so the particles are draws from the model's joint
distribution of the free tokens *given all fixed tokens*, not given the prefix only; the take
returned is the particle whose free choices best explain the fixed ones (highest weight). Runs of
fixed tokens go through the model as one chunk (a prefill-like call), so fixed music costs little;
with ``groups`` > 1, independent filters (variations) share the batch.

We hand-write this loop (rather than use a library) because it must share the project's KV cache
and its sliding window, and the chunked scoring of fixed runs is what makes it fast on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from cadenza.engine.sampling import SamplingConfig, sample


@dataclass
class FillResult:
    ids: list[list[int]]  # one filled sequence per group
    log_evidence: list[float]  # per group: log of the estimated probability of the fixed tokens
    resamples: int


@torch.no_grad()
def fill(model, template: list[int], free, masks: torch.Tensor, mask_index, *, particles: int = 16,
         groups: int = 1, sampling: SamplingConfig | None = None, head: list[int] | None = None,
         starts=None, chunk: int = 256, constrain: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
         progress: Callable[[int, int], None] | None = None) -> FillResult:
    """Fill ``template`` (token ids) at the positions where ``free`` is true.

    ``masks`` (K, V) bool: the legal tokens of each kind of position; ``mask_index`` (L,) says which
    row applies to each position (used for free positions, and for scoring fixed ones under the
    same support). ``head``/``starts``: what a window re-prefilled past the context begins with,
    and where it may start (the tokenizer's ``header()`` and ``window_starts``).
    ``constrain(seq, i)`` (optional) returns a (B, V) bool mask of further rules for free position
    ``i`` given each particle's tokens so far; the particle samples among the tokens both masks allow,
    and its weight is multiplied by the probability the model gave that allowed set, so the result
    targets the model's distribution *conditioned on the rules holding* (where no token obeys them,
    the rule is dropped at that position for that particle).
    ``progress(done, total)`` is called as positions are decided.
    """
    sampling = (sampling or SamplingConfig(top_p=1.0, repetition_penalty=1.0)).validate()
    L = len(template)
    free = np.asarray(free, dtype=bool)
    mask_index = torch.as_tensor(np.asarray(mask_index), dtype=torch.long)
    if free.shape != (L,) or mask_index.shape != (L,):
        raise ValueError("template, free and mask_index must have the same length")
    if L == 0 or free[0]:
        raise ValueError("the first token (BOS) must be fixed")
    P, G = particles, groups
    B = P * G
    seq = torch.tensor(template, dtype=torch.long).repeat(B, 1)
    if not free.any():
        return FillResult([list(template) for _ in range(G)], [0.0] * G, 0)
    gen = torch.Generator().manual_seed(sampling.seed if sampling.seed is not None else
                                        int(torch.randint(0, 2**31 - 1, (1,))))
    ctx = model.cfg.max_seq_len
    head = list(head or [])
    allowed = np.asarray(starts if starts is not None else np.arange(L), dtype=np.int64)
    next_free = np.full(L + 1, L)
    for i in range(L - 1, -1, -1):
        next_free[i] = i if free[i] else next_free[i + 1]
    temp = sampling.temperature
    logw = torch.zeros(B, dtype=torch.float64)
    model.eval()
    model.setup_cache(B, ctx, dtype="fast")

    base = 0  # seq index held at cache position len(pre)
    pre: list[int] = []  # tokens before seq[base] in the cache (the head, after a slide)

    def refill(upto: int) -> torch.Tensor:
        """Re-prefill the cache with pre + seq[:, base:upto]; returns the last logits."""
        rows = torch.cat([torch.tensor(pre, dtype=torch.long).repeat(B, 1), seq[:, base:upto]], 1)
        return model(rows, input_pos=torch.arange(rows.shape[1]))[:, -1]

    def logp(logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """log p of the tokens the logits predict, under temperature and each position's mask."""
        lg = logits.float() / temp
        lg = lg.masked_fill(~masks[rows], float("-inf"))
        return torch.log_softmax(lg, -1)

    def make_room(i: int, n: int) -> bool:
        """Slide the window (head + the recent half of the context) if seq[base:i+n] does not fit."""
        nonlocal base, pre
        if len(pre) + i + n - base <= ctx:
            return False
        want = i - ctx // 2
        ok = allowed[(allowed > base) & (allowed <= want)]
        base = int(ok[-1]) if len(ok) else max(want, base + 1)
        pre = head
        return True

    first = int(next_free[0])
    make_room(first, 0)
    logits = refill(first)  # everything before the first free token is the same for all particles
    fed = first  # seq[:, :fed] is in the model; logits predict seq[:, fed]
    resamples = 0
    while fed < L:
        i = fed
        if free[i]:
            allowed_now = masks[mask_index[i]].expand(B, -1)
            if constrain is not None:
                ruled = allowed_now & constrain(seq, i)
                ruled = torch.where(ruled.any(1, keepdim=True), ruled, allowed_now)
                lp = logp(logits, mask_index[i].expand(B))
                logw += torch.logsumexp(lp.masked_fill(~ruled, float("-inf")), 1).double()
                allowed_now = ruled
            tok = sample(logits, SamplingConfig(temperature=temp, top_k=sampling.top_k, top_p=sampling.top_p,
                                                repetition_penalty=1.0), allowed_now, gen)
            seq[:, i] = tok
        else:
            lp = logp(logits, mask_index[i].expand(B))
            logw += lp.gather(1, seq[:, i:i + 1]).squeeze(1).double()
        if progress:
            progress(i + 1, L)
        if i == L - 1:
            break
        # feed token i and the fixed run after it (up to the next free token) in one call
        j = min(int(next_free[i + 1]), L - 1, i + max(1, min(chunk, ctx // 4)))
        n = j - i  # tokens i..j-1 go in; rows predict i+1..j
        if make_room(i, n):
            refill(i)
        pos0 = len(pre) + i - base
        out = model(seq[:, i:j], input_pos=torch.arange(pos0, pos0 + n))  # (B, n, V)
        if n > 1:  # rows 0..n-2 predict the fixed tokens i+1..j-1
            lp = logp(out[:, :-1], mask_index[i + 1:j].expand(B, -1))
            logw += lp.gather(2, seq[:, i + 1:j, None]).squeeze(2).sum(1).double()
        logits = out[:, -1]
        fed = j
        if _resample(logw, seq, model, G, P, gen, upto=len(pre) + j - base):
            resamples += 1
    lw = logw.view(G, P)
    best = lw.argmax(1) + torch.arange(G) * P
    evidence = (torch.logsumexp(lw, 1) - np.log(P)).tolist()
    model.clear_cache()
    return FillResult([seq[int(b)].tolist() for b in best], evidence, resamples)


def _resample(logw: torch.Tensor, seq: torch.Tensor, model, G: int, P: int, gen: torch.Generator,
              upto: int, threshold: float = 0.5) -> bool:
    """Systematic resampling of each group whose effective sample size fell below threshold * P."""
    lw = logw.view(G, P)
    w = torch.softmax(lw, 1)
    ess = 1.0 / (w ** 2).sum(1)
    low = ess < threshold * P
    if not low.any():
        return False
    idx = torch.arange(G * P).view(G, P).clone()
    for g in torch.nonzero(low).flatten().tolist():
        u = (torch.rand(1, generator=gen, dtype=torch.float64) + torch.arange(P, dtype=torch.float64)) / P
        cdf = torch.cumsum(w[g], 0)
        cdf[-1] = 1.0
        idx[g] = torch.searchsorted(cdf, u).clamp(max=P - 1) + g * P
        lw[g] = torch.logsumexp(lw[g], 0) - np.log(P)  # equal weights, same total evidence
    idx = idx.flatten()
    moved = torch.nonzero(idx != torch.arange(G * P)).flatten()
    if len(moved):
        src = idx[moved]
        seq[moved] = seq[src]
        for layer in model.layers:
            kv = layer.self_attn.kv_cache
            kv.k[moved, :, :upto] = kv.k[src, :, :upto]
            kv.v[moved, :, :upto] = kv.v[src, :, :upto]
    return True
