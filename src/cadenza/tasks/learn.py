"""Looking inside the model: its candidates for each note, and how surprising each note is.

The studio's learn view steps through a generation one note at a time and shows the model's top
candidates for each note's pitch with their probabilities; for any piece it draws how surprising
each note was. Both run on the one engine (``stream_notes``) and the one likelihood code
(``sequence_nll``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

import symusic
import torch

from cadenza.engine.notes import NoteDecoder, NoteEvent
from cadenza.errors import CadenzaError
from cadenza.tokenizers.remi import T_DRUM, T_PITCH


@dataclass
class Candidate:
    pitch: int
    p: float


@dataclass
class LearnStep:
    note: NoteEvent
    chosen: Candidate
    candidates: list[Candidate]  # the likeliest pitches at that moment, most likely first


def _pitch_of(tokenizer) -> dict[int, int]:
    """token id -> MIDI pitch, for Pitch and PitchDrum tokens."""
    out = {}
    for t in list(tokenizer.ids_of_type[T_PITCH]) + list(tokenizer.ids_of_type[T_DRUM]):
        out[int(t)] = int(tokenizer.id_to_token[int(t)].rsplit("_", 1)[1])  # "Pitch_60", "PitchDrum_36"
    return out


def learn_steps(cm, prompt: symusic.Score | None = None, *, notes: int = 16, top: int = 8, **kw) -> list[LearnStep]:
    """Generate ``notes`` notes (``kw``: as ``CadenzaModel.stream_notes``) and, for each, the model's
    ``top`` candidates for its pitch with their probabilities (after temperature and the grammar,
    before top-p), and the one chosen."""
    if notes < 1:
        raise CadenzaError(f"notes must be at least 1 (got {notes})")
    tok = cm.tokenizer
    pitch_of = _pitch_of(tok)
    temperature = float(kw.get("temperature", 1.0))
    pitch_ids, drum_ids = (torch.as_tensor(tok.ids_of_type[k], dtype=torch.long) for k in (T_PITCH, T_DRUM))
    drums = set(drum_ids.tolist())
    last: dict = {}
    pending: list = []

    def observe(logits, allowed):
        last["p"] = torch.softmax((logits[0].float() / temperature).masked_fill(~allowed[0], float("-inf")), -1)

    def on_token(_b, t):
        if int(t) in pitch_of:
            p = last["p"]
            same = drum_ids if int(t) in drums else pitch_ids
            k = min(top, len(same))
            vals, idx = torch.topk(p[same], k)
            cands = [Candidate(pitch_of[int(same[i])], float(v)) for v, i in zip(vals, idx) if v > 0]
            pending[:] = [(Candidate(pitch_of[int(t)], float(p[int(t)])), cands)]

    steps: list[LearnStep] = []
    # bars=64: a length keeps the model from ending early (EOS is masked); we stop at `notes` notes
    it = cm.stream_notes(prompt, bars=64, max_tokens=notes * 64 + 256, observe=observe, on_token=on_token, **kw)
    try:
        for ev in it:
            (chosen, cands), = pending
            steps.append(LearnStep(ev, chosen, cands))
            if len(steps) >= notes:
                break
    finally:
        it.close()
    return steps


def note_surprise(cm, score: symusic.Score, style: str | None = None) -> list[tuple[NoteEvent, float]]:
    """(note, bits) for each note of ``score`` as the model reads it: the information (-log2 p) of
    the tokens that place and make the note (position, program, pitch, velocity, duration)."""
    from cadenza.eval.likelihood import grammar_masks, sequence_nll

    tok = cm.tokenizer
    if style is not None and style not in cm.styles:
        raise CadenzaError(f"unknown style '{style}': this model knows {', '.join(cm.styles)}")
    style = style or cm.config.get("default_style")
    ids = tok.encode(score.to("tick"), style)
    if len(ids) < 2:
        raise CadenzaError("the piece has no notes the model can read")
    nll: list[float] = []
    with torch.no_grad():
        sequence_nll(cm.model, ids, masks=grammar_masks(tok, ids), head=ids[:2],
                     starts=tok.window_starts(np.array(ids)), per_token=nll)
    tempos = [(t.time / score.tpq, t.qpm) for t in score.tempos] if len(score.tempos) else None
    dec = NoteDecoder(tok, tempos=tempos)
    dec.feed(int(ids[0]))
    out, acc = [], 0.0
    for t, v in zip(ids[1:], nll):
        acc += v
        ev = dec.feed(int(t))
        if ev is not None:
            out.append((ev, acc / math.log(2)))
            acc = 0.0
    return out
