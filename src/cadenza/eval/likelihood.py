"""Exact likelihood of token sequences, as the benchmark protocols define it.

``sequence_nll`` scores every token of a sequence after its first one (the BOS,
which is given, not predicted). A sequence longer than the model's context is
scored with overlapping windows: each window starts at most ``stride`` tokens
after the previous one (stride <= half the context), and only the tokens no
earlier window scored are counted, so every token is scored exactly once with
at least ``ctx - stride`` tokens of context once the first window has passed.

A later window looks like a training window: the tokenizer's ``header`` (e.g.
BOS), then tokens from one of the tokenizer's ``window_starts`` (a time step's
first cell, a frame, a bar). The header tokens are conditioning only, never
scored; every scored token is still predicted from real preceding music.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


@torch.no_grad()
def sequence_nll(model, ids: list[int], ctx: int | None = None, stride: int | None = None,
                 head: list[int] | None = None, starts=None, masks: torch.Tensor | None = None,
                 per_token: list | None = None) -> tuple[float, int]:
    """(summed NLL in nats, tokens scored) of ``ids[1:]`` given everything before each token.

    ``per_token``: a list that receives each scored token's NLL (nats), in order.
    ``head``: tokens put before every later window; ``starts``: indices where a later window may
    begin (default: anywhere). Each later window begins at the last allowed start at or before
    the previous window's start + ``stride``. ``masks`` (len(ids), V) bool: the tokens that may
    stand at each position (the tokenizer's grammar); the others get no probability.
    """
    ctx = ctx or model.cfg.max_seq_len
    stride = stride or ctx // 2
    head = list(head or [])
    if len(ids) > ctx and not 0 < stride <= ctx // 2:
        raise ValueError(f"stride must be in (0, ctx/2]: got {stride} for ctx {ctx}")
    allowed = np.asarray(starts if starts is not None else np.arange(len(ids)), dtype=np.int64)
    x = torch.tensor(ids, dtype=torch.long)
    total, count = 0.0, 0
    scored_to = 1  # ids[0] (BOS) is never scored
    start, pre = 0, []
    while scored_to < len(ids):
        end = min(start + ctx - len(pre), len(ids))
        window = torch.cat([torch.tensor(pre, dtype=torch.long), x[start:end]])[None]
        first = scored_to - start + len(pre) - 1  # index in the window's predictions of ids[scored_to]
        logits = model(window)[0, first:-1].float()  # predicts ids[scored_to:end]
        if masks is not None:
            logits = logits.masked_fill(~masks[scored_to:end], float("-inf"))
        nll = F.cross_entropy(logits, x[scored_to:end], reduction="none")
        total += float(nll.sum())
        if per_token is not None:
            per_token.extend(nll.tolist())
        count += int(nll.numel())
        scored_to = end
        if end == len(ids):
            break
        want = start + stride
        ok = allowed[(allowed > start) & (allowed <= want)]
        start = int(ok[-1]) if len(ok) else want  # no allowed start in reach: plain stride
        pre = head
    return total, count


def grammar_masks(tokenizer, ids) -> torch.Tensor:
    """(len(ids), V) bool: row k holds the tokens the grammar allows where ids[k] stands.

    A scored piece has a given length, so where it holds no EOS, EOS gets no mass either: the
    probabilities of all possible next frames (steps) then sum to one."""
    st = tokenizer.start_state(reading=True)
    table: dict[tuple, int] = {}
    rows, uniq = [], []
    for t in ids:
        key = st.mask_key()
        if key not in table:
            table[key] = len(uniq)
            uniq.append(tokenizer.allowed(st))
        rows.append(table[key])
        st.advance(int(t))
    table_t = torch.from_numpy(np.stack(uniq))
    if tokenizer.eos_id not in set(int(t) for t in ids):
        table_t[:, tokenizer.eos_id] = False
    return table_t[torch.tensor(rows)]


def corpus_nll_sum(model, sequences, ctx: int | None = None, stride: int | None = None, tokenizer=None,
                   grammar: bool = False) -> tuple[float, int]:
    """(summed NLL, tokens scored) over many sequences, each scored from its first token.

    With ``tokenizer``, later windows start with its header at one of its window starts, and with
    ``grammar`` each token is scored among the tokens the tokenizer's grammar allows there."""
    total, count = 0.0, 0
    for ids in sequences:
        head = starts = masks = None
        if tokenizer is not None:
            head = tokenizer.header()
            starts = tokenizer.window_starts(np.asarray(ids))
            if grammar:
                masks = grammar_masks(tokenizer, ids)
        t, c = sequence_nll(model, ids, ctx, stride, head, starts, masks)
        total += t
        count += c
    return total, count


def corpus_nll(model, sequences, ctx: int | None = None, stride: int | None = None, tokenizer=None,
               grammar: bool = False) -> float:
    """Mean NLL per scored token over many sequences (see ``corpus_nll_sum``)."""
    total, count = corpus_nll_sum(model, sequences, ctx, stride, tokenizer, grammar)
    return total / max(count, 1)
