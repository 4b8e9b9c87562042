"""Every instrument keeps its part: a logit bias on each Program token toward the instrument's own pace.

The bundled model, left to itself, lets instruments fall silent after two bars and lets others pile
up notes (a default 16-bar piece: bass and strings gone after bar 3; the drums of a 4-minute piece
played 1-3 notes in most 8-bar blocks). The entry rule of ``generate`` brings a silent instrument in
once; this control keeps each one playing about as busily as it should for the whole piece.

Each instrument asked for has a target pace in notes per quarter-note beat: in a continuation, the
pace it had in the prompt (its last ``PROMPT_BARS`` bars); otherwise, how busy its family is in real
music of the style (``part_rates`` in the model's config.json, measured by ``recipes/part_rates.py``).
Over the last ``window`` bars (the current bar up to the current position included), the notes it
played (``a``) are compared with the notes its pace asks for (``e``), and its Program token gets

    strength * log((e + 1) / (a + 1)), clamped to [-max_penalty, max_bonus]

wherever a note may start: a silent instrument is drawn in, a busy one is held back, one on pace is
left to the model. An instrument that already has a note at the current position gets no bonus there
(the bonus would only stack its chord). Rests and entries stay the model's: a window of several bars
lets a part rest a bar or two and catch up after.
"""

from __future__ import annotations

import numpy as np
import torch

from cadenza.tokenizers.remi import T_BAR, T_DRUM, T_DUR, T_PITCH, T_POS, T_TEMPO

PROMPT_BARS = 8


class PartControl:
    """Per row: each instrument's notes per bar, and the bias that brings it to its pace."""

    def __init__(self, tokenizer, rates: dict[int, float], n: int, window: int = 4, strength: float = 3.0,
                 max_bonus: float = 6.0, max_penalty: float = 4.0):
        """``rates``: {Program token id: notes per quarter-note beat}; a row's instruments are those the
        grammar allows it (asked for), else those its header lists (the model's choice)."""
        self.tok = tokenizer
        self.rates = rates
        self.window, self.strength = window, strength
        self.max_bonus, self.max_penalty = max_bonus, max_penalty
        self.counts: list[dict[int, dict[int, int]]] = [{} for _ in range(n)]  # row -> prog -> bar -> notes
        self.bar_beats: list[dict[int, float]] = [{} for _ in range(n)]  # row -> bar -> quarter notes
        self._active: list[tuple[torch.Tensor, np.ndarray] | None] = [None] * n

    def active(self, b: int, state) -> tuple[torch.Tensor, np.ndarray] | None:
        """(Program token ids, their paces) of the row's instruments, once known."""
        if self._active[b] is None:
            asked = state.programs or state.insts
            ids = sorted(p for p in (asked or ()) if p in self.rates)
            if ids:
                self._active[b] = (torch.as_tensor(ids, dtype=torch.long),
                                   np.array([self.rates[p] for p in ids], dtype=np.float64))
        return self._active[b]

    def advance(self, b: int, t: int, state) -> None:
        """After ``state.advance(t)``: count a note of the current instrument in the current bar."""
        kind = self.tok.type_of[t]
        if kind == T_BAR:
            self.bar_beats[b][state.bars] = state.bar_quarters()
        elif kind in (T_PITCH, T_DRUM) and not state.given and not state.future:
            bars = self.counts[b].setdefault(state.cur_prog, {})
            bars[state.bars] = bars.get(state.bars, 0) + 1

    def _elapsed(self, b: int, state) -> float:
        """Quarter notes of the window so far: the full bars before the current one, and the current
        bar up to its current position."""
        beats = sum(self.bar_beats[b].get(k, state.bar_quarters())
                    for k in range(max(1, state.bars - self.window + 1), state.bars))
        if state.pos >= 0:
            beats += state.pos / self.tok.positions_in_bar(state.tsig) * state.bar_quarters()
        return beats

    def biases(self, states, vocab: int) -> torch.Tensor | None:
        """(B, V) logit biases for this step, or None where no row has a Program token to choose."""
        out = None
        for b, st in enumerate(states):
            if st.last not in (T_POS, T_TEMPO, T_DUR) or st.forced or st.given or st.future:
                continue
            act = self.active(b, st)
            elapsed = self._elapsed(b, st) if act is not None else 0.0
            if elapsed <= 0:
                continue
            ids, rates = act
            first = st.bars - self.window + 1
            bars = range(max(first, 1), st.bars + 1)  # the window's bars only, not the whole piece's
            played = np.array([sum(self.counts[b].get(p, {}).get(k, 0) for k in bars) for p in ids.tolist()],
                              dtype=np.float64)
            bias = np.clip(self.strength * np.log((rates * elapsed + 1.0) / (played + 1.0)),
                           -self.max_penalty, self.max_bonus)
            here = {p for p, _ in st.pos_notes}
            for j, p in enumerate(ids.tolist()):
                if p in here:
                    bias[j] = min(bias[j], 0.0)
            if out is None:
                out = torch.zeros(len(states), vocab)
            out[b, ids] = torch.as_tensor(bias, dtype=torch.float32)
        return out


def prompt_pace(score, programs: list[int], bars: int = PROMPT_BARS) -> dict[int, float]:
    """{GM program (-1 drums): notes per quarter-note beat in the last ``bars`` bars of ``score``} for the
    programs that play there."""
    from cadenza.eval.metrics import bar_starts

    tick = score if str(score.ttype).endswith("Tick") else score.to("tick")
    end = int(tick.end())
    starts = bar_starts(tick, end + 1)
    first = int(starts[max(0, len(starts) - bars)]) if len(starts) else 0
    beats = max((end - first) / tick.tpq, 1.0)
    out: dict[int, float] = {}
    for t in tick.tracks:
        p = -1 if t.is_drum else int(t.program)
        if p not in programs:
            continue
        a = t.notes.numpy()
        k = int((a["time"] >= first).sum())
        if k:
            out[p] = out.get(p, 0.0) + k / beats
    return out


def style_pace(config: dict, style: str | None, programs: list[int]) -> dict[int, float]:
    """{GM program: notes per beat} for instruments of a piece from nothing: their family's pace in
    the style (``part_rates`` in the model's config), else over all styles, else a plain default."""
    from cadenza.score.roles import family_of

    rates = config.get("part_rates") or {}
    mine, every = rates.get(style or "", {}), rates.get("*", {})
    default = {"bass": 1.0, "drums": 2.5, "piano": 2.5, "lead": 1.0, "guitar": 2.0}
    out = {}
    for p in programs:
        fam = family_of(p, p == -1)
        out[p] = float(mine.get(fam, every.get(fam, default.get(fam, 1.0))))
    return out

