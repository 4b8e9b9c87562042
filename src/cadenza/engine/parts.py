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

wherever a note may start (in a piece from nothing, ``over_strength`` in place of ``strength`` once it
is past its pace: the model left to itself runs parts 20-40% busier than real ones): a silent
instrument is drawn in, a busy one is held back, one on pace is left to the model. An instrument that
already has a note at the current position gets no bonus there (the bonus would only stack its chord).

Rests and entries: real parts rest in long stretches (in POP909 as trained, a string part plays in
two bars of three and its longest rest is about 13 bars; a lead sits out the interludes), which a
pace alone never makes (it spreads the rests over single bars). A piece from nothing therefore gets
a *plan*: per instrument, which bars it plays (``part_plan``): the bars a real part of that family in
the style played, replayed whole, its rests cut to an eighth of the piece (``part_plans`` in the
model's config.json, measured by ``recipes/part_rates.py``). In a planned rest the instrument's
Program token gets ``-REST_PENALTY``; in its playing bars its pace is its family's notes per beat over
the bars it plays, so that the whole piece comes out at the real rate, and one that has not played
yet in a bar it should play in is drawn in more the later it gets in the bar (alone, the pace lets a
part play a burst and sit out the next bar); the bar does not end before it plays, and past
``FORCE_AT`` of the bar its next possible note is forced (``generate._planned_entries``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from cadenza.tokenizers.remi import T_BAR, T_CHORD, T_DRUM, T_DUR, T_FREE, T_PITCH, T_POS, T_TEMPO, T_TSIG

PROMPT_BARS = 8
REST_PENALTY = 30.0  # a planned rest: (finite: a state whose only choices are these stays samplable)
BAR_ENTRY = 6.0  # a planned bar's part that has not played in it: a quarter of this at its start, all by its end
FORCE_AT = 0.5  # ... and past this share of the bar, its next possible note is forced (``owed``)
TILT, MAX_TILT, MAX_GAP = 3.0, 1.5, 2.0  # the ensemble's pull on the time to the next onset (see _time_bias)
_PROGRAM_NEXT = (T_POS, T_TEMPO, T_DUR)  # a Program token may come next
_TIME_NEXT = (T_DUR, T_TEMPO, T_TSIG, T_CHORD, T_FREE)  # a later Position or a Bar may come next
_CHOOSING = _PROGRAM_NEXT + _TIME_NEXT
_TEMPO_SET = (T_TEMPO, T_DUR)  # the first onset's Tempo token is written (or there was none: its first note)


class PartControl:
    """Per row: each instrument's notes per bar, and the bias that brings it to its pace."""

    def __init__(self, tokenizer, rates: dict[int, float], n: int, window: int = 4, strength: float = 3.0,
                 max_bonus: float = 6.0, max_penalty: float = 6.0, over_strength: float | None = None,
                 plans: dict[int, dict] | None = None, bars: int = 0, seconds: float = 0.0, seed: int = 0):
        """``rates``: {Program token id: notes per quarter-note beat (in the bars it plays)}; a row's
        instruments are those the grammar allows it (asked for), else those its header lists (the
        model's choice). ``plans``: {Program token id: plan statistics (``style_plans``)}: once a row's
        instruments are known, each with statistics gets a plan of ``bars`` bars (``part_plan``, drawn
        with ``seed``); bars past it, and instruments without one, play. ``seconds`` (> 0): the piece's
        length where the model chooses its tempo; the plan's bars are then counted at that tempo, when
        the first note is about to start."""
        self.tok = tokenizer
        self.rates = rates
        self.window, self.strength = window, strength
        # leaning against the model's own pace: from nothing (a plan) it runs parts 20-40% busier than
        # real ones (bench/parts.py), so a part past its pace is held back harder than a late one is
        # drawn in, and a band past its pace waits longer; after a prompt it keeps the prompt's pace by
        # itself (bench/continuation.py density_ratio 0.97) and leaning made it 0.90
        lean = bars > 0
        self.over_strength = (4.0 if lean else 1.0) * strength if over_strength is None else over_strength
        self.tilt = TILT if lean else 0.0
        self.max_bonus, self.max_penalty = max_bonus, max_penalty
        self.plans, self.bars, self.seconds = plans or {}, bars, seconds
        self.rng = np.random.default_rng(seed)
        self.plan: list[dict[int, np.ndarray]] = [{} for _ in range(n)]  # row -> Program id -> bar flags
        self.counts: list[dict[int, dict[int, int]]] = [{} for _ in range(n)]  # row -> prog -> bar -> notes
        self.bar_beats: list[dict[int, float]] = [{} for _ in range(n)]  # row -> bar -> quarter notes
        self._active: list[tuple[torch.Tensor, np.ndarray] | None] = [None] * n
        self._planned = [False] * n  # a row's plan is drawn (or it has none)
        pos_ids = list(tokenizer.ids_of_type[T_POS])
        self._pos_vals = np.array([tokenizer.value_of[i] for i in pos_ids], dtype=np.float64)
        self._time_ids = torch.as_tensor(pos_ids + [int(tokenizer.ids_of_type[T_BAR][0])], dtype=torch.long)

    def active(self, b: int, state) -> tuple[torch.Tensor, np.ndarray] | None:
        """(Program token ids, their paces) of the row's instruments, once known."""
        if self._active[b] is None:
            asked = state.programs or state.insts
            ids = sorted(p for p in (asked or ()) if p in self.rates)
            if ids:
                self._active[b] = (torch.as_tensor(ids, dtype=torch.long),
                                   np.array([self.rates[p] for p in ids], dtype=np.float64))
                self._planned[b] = self.bars <= 0
        if self._active[b] is not None and not self._planned[b] and (self.seconds <= 0 or state.last in _TEMPO_SET):
            self._planned[b] = True  # counted in seconds: drawn once the model has written the tempo
            bars = self.bars
            if self.seconds > 0:
                bars = max(1, math.ceil(self.seconds * state.qpm / 60.0 / state.bar_quarters()))
            ids = self._active[b][0].tolist()
            self.plan[b] = part_plan({p: self.plans[p] for p in ids if p in self.plans}, bars, self.rng)
        return self._active[b]

    def advance(self, b: int, t: int, state) -> None:
        """After ``state.advance(t)``: count a note of the current instrument in the current bar."""
        kind = self.tok.type_of[t]
        if kind == T_BAR:
            self.bar_beats[b][state.bars] = state.bar_quarters()
            if self.seconds > 0 and self.plan[b]:
                self._cap_rests(b, state)
        elif kind in (T_PITCH, T_DRUM) and not state.given and not state.future:
            bars = self.counts[b].setdefault(state.cur_prog, {})
            bars[state.bars] = bars.get(state.bars, 0) + 1

    def _cap_rests(self, b: int, state) -> None:
        """At a new bar of a piece counted in seconds: a planned rest that has lasted more than an eighth
        of the piece's bars (as many as its tempo now makes of it) ends here. The model's tempo drifts
        (121, 67, 121, 60 bpm in its first bars), so the bars a length in seconds holds are known only
        as the piece goes (a 74-bar piece kept rests of 15 bars, planned for 122)."""
        per_bar = state.bar_quarters() * 60.0 / state.qpm
        cap = (state.bars - 1 + math.ceil(max(self.seconds - state.seconds, 0.0) / per_bar)) // 8
        k = state.bars - 1  # the new bar, from 0
        for flags in self.plan[b].values():
            if k >= len(flags) or flags[k]:
                continue
            start = k
            while start > 0 and not flags[start - 1]:
                start -= 1
            if k - start + 1 > cap:
                end = k
                while end < len(flags) and not flags[end]:
                    end += 1
                flags[k:end] = True

    def plays(self, b: int, prog: int, bar: int) -> bool:
        """Does row ``b``'s plan have instrument ``prog`` (Program token id) play in ``bar`` (from 1)?"""
        flags = self.plan[b].get(prog)
        return flags is None or not 1 <= bar <= len(flags) or bool(flags[bar - 1])

    def waiting(self, b: int, state) -> list[int]:
        """Program ids of the row's planned parts that its plan has play in the current bar and that have
        not played in it yet (none in a piece without a plan, or past the plan's bars)."""
        if not self.plan[b] or state.bars < 1 or state.given or state.future:
            return []
        return [p for p, flags in self.plan[b].items()
                if state.bars <= len(flags) and flags[state.bars - 1] and not self.counts[b].get(p, {}).get(state.bars)]

    def forcing(self, state) -> bool:
        """Is ``FORCE_AT`` of the current bar gone? Then where a note may start, one of the ``waiting``
        parts plays it (the entry bias alone left the drums of a 4-bar piece silent in a bar)."""
        return max(state.pos, 0) >= FORCE_AT * self.tok.positions_in_bar(state.tsig)

    def _window(self, b: int, state) -> list[tuple[int, float]]:
        """(bar, quarter notes so far) for the window: the full bars before the current one, and the
        current bar up to its current position."""
        out = [(k, self.bar_beats[b].get(k, state.bar_quarters()))
               for k in range(max(1, state.bars - self.window + 1), state.bars)]
        if state.pos >= 0:
            out.append((state.bars, state.pos / self.tok.positions_in_bar(state.tsig) * state.bar_quarters()))
        return out

    def _paces(self, b: int, ids: list[int], rates: np.ndarray, window) -> tuple[np.ndarray, np.ndarray]:
        """(notes each instrument's pace asks for over the window's bars its plan has it play, notes it
        played there)."""
        bars = [k for k, _ in window]
        on = np.array([[self.plays(b, p, k) for k in bars] for p in ids], dtype=np.float64)
        expected = rates * (on @ np.array([w for _, w in window], dtype=np.float64))
        played = np.array([sum(self.counts[b].get(p, {}).get(k, 0) for k in bars) for p in ids], dtype=np.float64)
        return expected, played

    def _program_bias(self, b: int, state, ids: list[int], expected, played) -> np.ndarray:
        """Each instrument's bias: toward its pace; a planned rest in the current bar is a rest."""
        ratio = np.log((expected + 1.0) / (played + 1.0))
        bias = np.where(ratio > 0, self.strength * ratio, self.over_strength * ratio)
        bias = np.clip(bias, -self.max_penalty, self.max_bonus)
        here = {p for p, _ in state.pos_notes}
        into = max(state.pos, 0) / self.tok.positions_in_bar(state.tsig)  # how far into the bar
        for j, p in enumerate(ids):
            if p in self.plan[b] and not self.counts[b].get(p, {}).get(state.bars):  # a planned bar it has
                bias[j] = max(bias[j], BAR_ENTRY * (0.25 + 0.75 * into))  # not played yet: it comes in
            if p in here:
                bias[j] = min(bias[j], 0.0)
            if not self.plays(b, p, state.bars):
                bias[j] = -REST_PENALTY
        return bias

    def _time_bias(self, b: int, state, ids: list[int], expected, played) -> np.ndarray | None:
        """Biases on the Position tokens after the current one and on Bar: when the ensemble is past its
        pace the next onset leans later, when behind, sooner: ``tilt`` x log(pace / played) per beat
        of the gap, up to ``MAX_GAP`` beats (a bias on instruments alone cannot thin the music: where a
        note must start, one of them plays it). While a part the plan has play in this bar has not
        played in it yet, the bar is not cut short (the lean toward Bar skipped its entries)."""
        ratio = float(np.log((expected.sum() + 1.0) / (played.sum() + 1.0)))
        slope = float(np.clip(-self.tilt * ratio, -MAX_TILT, MAX_TILT))  # per beat of gap
        if abs(slope) < 1e-3:
            return None
        n = self.tok.positions_in_bar(state.tsig)
        beat = n / state.bar_quarters()  # positions per quarter note
        gap = np.minimum(np.maximum(self._pos_vals - max(state.pos, 0), 0) / beat, MAX_GAP)
        gap_bar = min((n - max(state.pos, 0)) / beat, MAX_GAP)
        waiting = bool(self.waiting(b, state))
        return np.append(slope * gap, min(slope * gap_bar, 0.0) if waiting else slope * gap_bar)

    def biases(self, states, vocab: int) -> torch.Tensor | None:
        """(B, V) logit biases for this step, or None where no row has a Program, Position or Bar to
        choose."""
        out = None
        for b, st in enumerate(states):
            if st.last not in _CHOOSING or st.forced or st.given or st.future:
                continue
            act = self.active(b, st)
            if act is None:
                continue
            ids, rates = act
            window = self._window(b, st)
            if sum(w for _, w in window) <= 0:  # the piece's first onset: no pace yet, but the plan holds
                rests = [p for p in ids.tolist() if not self.plays(b, p, st.bars)]
                if rests and st.last in _PROGRAM_NEXT:
                    out = torch.zeros(len(states), vocab) if out is None else out
                    out[b, rests] = -REST_PENALTY
                continue
            expected, played = self._paces(b, ids.tolist(), rates, window)
            if out is None:
                out = torch.zeros(len(states), vocab)
            if st.last in _PROGRAM_NEXT:
                out[b, ids] = torch.as_tensor(self._program_bias(b, st, ids.tolist(), expected, played),
                                              dtype=torch.float32)
            if st.last in _TIME_NEXT:
                tilt = self._time_bias(b, st, ids.tolist(), expected, played)
                if tilt is not None:
                    out[b, self._time_ids] = torch.as_tensor(tilt, dtype=torch.float32)
        return out


def prompt_pace(score, programs: list[int], bars: int = PROMPT_BARS) -> dict[int, float]:
    """{GM program (-1 drums): notes per quarter-note beat in the last ``bars`` bars of ``score``} for the
    programs that play there."""
    from cadenza.score.bars import bar_starts

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



def style_plans(config: dict, style: str | None, programs: list[int]) -> dict[int, dict]:
    """{GM program: its family's plan statistics in the style} (``part_plans`` in the model's config,
    else over all styles; none for a family the model has no statistics of)."""
    from cadenza.score.roles import family_of

    plans = config.get("part_plans") or {}
    mine, every = plans.get(style or "", {}), plans.get("*", {})
    out = {}
    for p in programs:
        fam = family_of(p, p == -1)
        spec = mine.get(fam) or every.get(fam)
        if spec and spec.get("on_runs"):
            out[p] = spec
    return out


def _replay(spec: dict, cap: int, rng: np.random.Generator) -> list[bool]:
    """One real part's bars (``patterns`` in the plan statistics: run lengths from its piece's first bar,
    resting, playing, resting, ...), its rests cut to ``cap`` bars; [] where there are no patterns.
    Whole patterns, not runs drawn one by one: a part with short runs of playing also has short rests
    (drawn independently, a piano plan of 3-bar runs met a 7-bar rest somewhere in most pieces, its
    longest silence 5.2 bars where real pianos have 3.7)."""
    patterns = spec.get("patterns")
    if not patterns:
        return []
    flags: list[bool] = []
    for k, run in enumerate(patterns[int(rng.integers(len(patterns)))]):
        flags += [True] * run if k % 2 else [False] * min(run, cap)
    return flags


def part_plan(specs: dict[int, dict], bars: int, rng: np.random.Generator) -> dict[int, np.ndarray]:
    """{key: playing or not, per bar from bar 1} for ``bars`` bars, one per plan statistics of ``specs``
    (``style_plans``): a real part of the family replayed (``_replay``), then (past its end, or where
    there are no patterns) alternating runs of playing and resting bars whose lengths are drawn from the
    family's real runs (one that lasted to its piece's end lasts to this one's). Every instrument enters
    within the first eighth of the piece and rests no longer than an eighth of it at a stretch (a short
    piece keeps all its instruments), and in every bar one plays (the one whose family plays the most
    bars)."""
    cap = bars // 8  # (a piece under 8 bars: no rests planned)
    out: dict[int, np.ndarray] = {}
    for p, spec in specs.items():
        flags = _replay(spec, cap, rng) or [False] * min(int(rng.choice(spec.get("lead_in") or [0])), cap)
        while len(flags) < bars:
            run = int(rng.choice(spec["on_runs"]))  # negative: a real part that played to its piece's end
            flags += [True] * (bars - len(flags) if run < 0 else max(1, run))
            flags += [False] * min(int(rng.choice(spec.get("off_runs") or [0])), cap)
        out[p] = np.array(flags[:bars], dtype=bool)
    if out:
        anchor = max(out, key=lambda p: specs[p].get("share", 1.0))
        out[anchor] |= ~np.any(np.stack(list(out.values())), axis=0)
    return out
