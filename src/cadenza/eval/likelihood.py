"""Exact likelihood of token sequences, as the benchmark protocols define it.

``sequence_nll`` scores every token of a sequence after its first one (the BOS,
which is given, not predicted). A sequence longer than the model's context is
scored with overlapping windows: each window starts ``stride`` tokens after the
previous one (stride <= half the context), and only the tokens no earlier
window scored are counted, so every token is scored once with at least
``ctx - stride`` tokens of context once the first window has passed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def sequence_nll(model, ids: list[int], ctx: int | None = None, stride: int | None = None) -> tuple[float, int]:
    """(summed NLL in nats, tokens scored) of ``ids[1:]`` given everything before each token."""
    ctx = ctx or model.cfg.max_seq_len
    stride = stride or ctx // 2
    if not 0 < stride <= ctx // 2 and len(ids) > ctx:
        raise ValueError(f"stride must be in (0, ctx/2]: got {stride} for ctx {ctx}")
    x = torch.tensor(ids, dtype=torch.long)
    total, count = 0.0, 0
    scored_to = 1  # ids[0] (BOS) is never scored
    start = 0
    while scored_to < len(ids):
        end = min(start + ctx, len(ids))
        window = x[start:end][None]
        logits = model(window)[0, :-1].float()  # predicts window[1:]
        targets = window[0, 1:]
        nll = F.cross_entropy(logits, targets, reduction="none")  # (end - start - 1,)
        first = scored_to - start - 1  # index in nll of the first target not yet scored
        total += float(nll[first:].sum())
        count += int(nll[first:].numel())
        scored_to = end
        start += stride
        if end == len(ids):
            break
    return total, count


def corpus_nll(model, sequences, ctx: int | None = None, stride: int | None = None) -> float:
    """Mean NLL per scored token over many sequences (each scored from its first token)."""
    total, count = 0.0, 0
    for ids in sequences:
        t, c = sequence_nll(model, ids, ctx, stride)
        total += t
        count += c
    return total / max(count, 1)
