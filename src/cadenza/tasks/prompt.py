"""What a prompt says about the music that should follow it: key, meter, tempo and nearest style.

A continuation that ignores its prompt drifts: out of its key, into another density, into one track.
So the prompt steers by default: its key (Krumhansl-Schmuckler, duration-weighted) is applied as the
key control and the key bias, its meter as the meter (a stated meter its notes contradict, such as
POP909's 1/4, replaced by the one they show: ``cadenza.score.meter``), its tempo as the tempo, and
the style under which the model finds the prompt most likely as the style. ``--key``, ``--meter``,
``--tempo`` and ``--style`` override each. ``PromptInfo.line()`` is what the CLI prints on stderr.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import symusic
import torch
import torch.nn.functional as F

from cadenza.score.keys import estimate_key, key_name
from cadenza.score.meter import nearest_known, prompt_meter, with_meter


@dataclass
class PromptInfo:
    key: tuple[int, str] | None = None
    meter: tuple[int, int] | None = None
    tempo: float | None = None
    style: str | None = None
    note: str | None = None  # why the meter is not the one the file states

    def line(self) -> str:
        parts = []
        if self.key is not None:
            parts.append(key_name(self.key))
        if self.meter is not None:
            parts.append(f"{self.meter[0]}/{self.meter[1]}")
        if self.tempo is not None:
            parts.append(f"{self.tempo:.0f} bpm")
        if self.style is not None:
            parts.append(f"style {self.style}")
        return "prompt: " + ", ".join(parts)


def prompt_tempo(score: symusic.Score) -> float | None:
    """The prompt's tempo (its first tempo mark; None if it has none)."""
    return float(score.tempos[0].qpm) if len(score.tempos) else None


@torch.no_grad()
def nearest_style(model, tokenizer, score: symusic.Score, styles: list[str]) -> str | None:
    """The style under which ``model`` finds the prompt most likely (summed NLL of its notes after the
    header, all styles in one batch; the prompt's last ``max_seq_len`` tokens)."""
    if not styles:
        return None
    if len(styles) == 1:
        return styles[0]
    ids = tokenizer.encode(score, styles[0])  # encoded once; the rows differ only in the style token
    h = tokenizer.header_len(ids)
    row = ids[:h] + ids[h:][-(model.cfg.max_seq_len - h):]
    x = torch.tensor([row] * len(styles))
    x[:, row.index(tokenizer.style_ids[styles[0]])] = torch.tensor([tokenizer.style_ids[s] for s in styles])
    logits = model(x)[:, h - 1:-1].float()  # predicts the body
    nll = F.cross_entropy(logits.transpose(1, 2), x[:, h:], reduction="none").sum(1)
    return styles[int(np.argmin(nll.numpy()))]


def candidate_styles(score: symusic.Score, styles: list[str], part_rates: dict | None) -> list[str]:
    """The styles a prompt may be in: with drums in the prompt, only styles whose real music has drums
    (``part_rates``, measured on the training pieces), where the model knows any. A piano-and-drums
    prompt was otherwise found nearest to 'classical', where the model never drums, and its drums
    fell silent."""
    has_drums = any(t.is_drum and len(t.notes) for t in score.tracks)
    if not has_drums or not part_rates:
        return styles
    drumming = [s for s in styles if "drums" in part_rates.get(s, {})]
    return drumming or styles


def infer(model, tokenizer, score: symusic.Score, styles: list[str], *, key=None, meter=None, tempo=None,
          style=None, part_rates: dict | None = None) -> tuple[symusic.Score, PromptInfo]:
    """(the prompt with the meter it will be continued in, what was inferred or given). Only what is
    not given is inferred; a given value is reported as it is."""
    info = PromptInfo(tempo=tempo if tempo is not None else prompt_tempo(score))
    if meter is None:
        meter, info.note = prompt_meter(score)
        known = getattr(tokenizer, "tsig_id", None)
        fit = nearest_known(meter, known) if known is not None and tuple(meter) not in known else None
        if fit is not None:
            info.note = (f"the prompt is in {meter[0]}/{meter[1]}, which this model does not know; continuing "
                         f"in {fit[0]}/{fit[1]} (same beats; --meter to choose)")
            meter = fit
        if info.note is not None:
            score = with_meter(score, meter)
    info.meter = tuple(meter)
    info.key = key if key is not None else estimate_key(score)
    info.style = style if style is not None else \
        nearest_style(model, tokenizer, score, candidate_styles(score, styles, part_rates))
    return score, info
