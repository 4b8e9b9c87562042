"""The one generation engine: prefill, decode one token, stream.

Every task (continue, harmonize, arrange, live, studio) calls ``generate`` or
``stream`` with its own prompt and constraints; none writes its own loop.
Grammar states live on the CPU (one per sequence); their masks are cached per
state key and stacked into one (B, V) tensor per step.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import torch

from cadenza.engine.sampling import SamplingConfig, apply_repetition_penalty, sample
from cadenza.tokenizers.remi import T_BAR, T_DRUM, T_PITCH, T_PROG, T_TEMPO, T_VEL


def _bar_end(state) -> float:
    """Seconds at the end of the state's current bar (with its tempo changes where the state keeps them)."""
    if hasattr(state, "bar_end_seconds"):
        return state.bar_end_seconds()
    return state.seconds + state.bar_quarters() * 60 / state.qpm


@dataclass
class StopConfig:
    bars: int | None = None  # new bars after the prompt
    seconds: float | None = None  # new seconds of music after the prompt
    max_tokens: int | None = None  # new tokens
    hard_limit: int | None = None  # never more new tokens than this (None: see ``limit``)

    def limit(self) -> int:
        """The safety cap on new tokens: generous for the length asked for (dense piano music runs
        at about 70 tokens per second and 150 per bar), 8192 when only max_tokens or nothing is given."""
        if self.hard_limit is not None:
            return self.hard_limit
        return int(max(8192, 400 * (self.seconds or 0), 800 * (self.bars or 0)))

    def reached(self, state, start_bars: int, start_seconds: float, n_new: int) -> bool:
        """True in the last bar asked for: where the model would start another bar, the piece ends."""
        if self.bars is not None and state.bars - start_bars + 1 >= self.bars:
            return True
        if self.seconds is not None and _bar_end(state) - start_seconds >= self.seconds:
            return True
        return False

    def quarters_left(self, state, tokenizer, start_bars: int, start_seconds: float) -> float | None:
        """Quarter notes from the current position to the end of the piece asked for (the end of the bar
        in which it ends, the meter and tempo staying as they are); None with no length asked for."""
        bar_q = state.bar_quarters()
        in_bar = tokenizer.quarters_to_bar_end(state)
        if self.bars is not None:
            return in_bar + max(0, start_bars + self.bars - 1 - state.bars) * bar_q
        if self.seconds is not None:
            bar_s = bar_q * 60 / state.qpm
            more = max(0.0, self.seconds - (_bar_end(state) - start_seconds))
            return in_bar + float(np.ceil(more / bar_s - 1e-9)) * bar_q
        return None


@dataclass
class GenerationResult:
    ids: list[list[int]]  # full sequences, prompt included
    prompt_len: int
    states: list = field(default_factory=list)


@torch.no_grad()
def prefill(model, ids: torch.Tensor) -> torch.Tensor:
    """Run the prompt (B, T) through the model, filling the KV cache; returns last logits (B, V)."""
    pos = torch.arange(ids.shape[1])
    return model(ids, input_pos=pos)[:, -1]


@torch.no_grad()
def decode_one(model, token: torch.Tensor, pos: int, step=None) -> torch.Tensor:
    """One new token per sequence (B,) at position ``pos`` -> logits (B, V); ``step``: a compiled
    decode function (``Transformer.compile_decode``) to use instead of the eager forward."""
    if step is not None:
        return step(token[:, None], torch.tensor([pos]))
    return model(token[:, None], input_pos=torch.tensor([pos]))[:, -1]


def _compiled_step(model):
    """The compiled decode step, or None (eager) where torch.compile cannot build it here (it needs
    a C++ compiler on a CPU); said once."""
    try:
        step = model.compile_decode()
        kv = model.layers[0].self_attn.kv_cache
        step(torch.zeros(kv.k.shape[0], 1, dtype=torch.long), torch.tensor([kv.k.shape[2] - 1]))  # compile now
        return step
    except Exception as e:  # inductor raises many kinds (missing compiler, unsupported op...)
        global _compile_failed
        if not _compile_failed:
            print(f"note: torch.compile is not available here ({type(e).__name__}); decoding without it",
                  file=sys.stderr)
            _compile_failed = True
        return None


_compile_failed = False


def stream(model, tokenizer, prompt: list[int], n: int = 1, sampling: SamplingConfig | None = None,
           stop: StopConfig | None = None, constraints: dict | None = None,
           on_token: Callable[[int, int], None] | None = None, compile: bool = False,
           observe: Callable[[torch.Tensor, torch.Tensor], None] | None = None) -> Iterator[tuple[int, int]]:
    """Yield (sequence index, token id) as tokens are sampled; see ``generate``.

    ``observe(logits, allowed)``: sees each step's logits (B, V), after the repetition controls,
    and the grammar's mask of allowed tokens, just before sampling (the studio's learn view shows
    the model's candidates from them).

    ``compile``: decode with the torch.compile'd fixed-shape step (``Transformer.compile_decode``):
    faster per token, but the first call in a process compiles for several seconds.
    """
    sampling = (sampling or SamplingConfig()).validate()
    stop = stop or StopConfig(bars=8)
    gen = torch.Generator().manual_seed(sampling.seed if sampling.seed is not None else
                                        int(torch.randint(0, 2**31 - 1, (1,))))
    states = [tokenizer.start_state(**(constraints or {})) for _ in range(n)]
    parts = _part_control(tokenizer, n, sampling, seed=gen.initial_seed() + 2)  # draws nothing from the sampler
    for b, st in enumerate(states):
        for t in prompt:
            st.advance(int(t))
            if parts is not None:  # the prompt's notes count toward the window: its last bars set the pace
                parts.advance(b, int(t), st)
    start_bars, start_secs = max(states[0].bars, 1), states[0].seconds  # a header-only prompt: bar 1 is new
    # A continuation's current bar is the prompt's (old); from nothing, the prompt has opened bar 1
    # and its content is new. Count so that `bars` new bars follow the prompt's last bar either way.
    if any(tokenizer.type_of[t] in (T_PITCH, T_DRUM) for t in prompt):
        start_bars += 1
    ctx = model.cfg.max_seq_len
    seqs = [list(prompt) for _ in range(n)]
    done = [False] * n
    ending = [False] * n  # rows in their last bar whose next Bar ends the piece
    eos, pad = tokenizer.eos_id, tokenizer.pad_id
    bar_ids = torch.from_numpy(np.isin(np.arange(tokenizer.vocab_size), tokenizer.ids_of_type[T_BAR]))
    # the repetition penalty looks at pitches only: structure tokens (Bar, Position...) are meant to repeat
    penalize = torch.from_numpy(np.isin(np.arange(tokenizer.vocab_size),
                                        np.concatenate([tokenizer.ids_of_type[T_PITCH], tokenizer.ids_of_type[T_DRUM]])))
    n_new = 0
    hard_limit = stop.limit()
    # per row: each asked-for instrument's Program id -> the bar it last played in (None: not yet);
    # an instrument of the prompt counts as playing in the prompt's last bar
    heard = {int(t) for t in prompt}
    last_bar = [{p: (start_bars - 1 if p in heard else None) for p in asked} if asked else None
                for asked in _asked_instruments(tokenizer, states, stop, sampling)]
    harmony = (_HarmonyBias(tokenizer, sampling, prompt, n)
               if (sampling.key is not None and sampling.key_bias) or (sampling.follow_chords and sampling.chord_bias)
               else None)
    header = prompt[: tokenizer.header_len(prompt)]  # BOS, style, key, instruments: always kept in view

    def opening(seq) -> list[int]:
        """The piece's first bars after the header (its meter, tempo, and the prompt's opening
        theme), up to ctx // 8 tokens and whole bars; kept in view when the window slides."""
        body = seq[len(header):len(header) + ctx // 8 + 1]
        bars = [j for j, t in enumerate(body) if tokenizer.type_of[t] == T_BAR]
        if len(bars) >= 2:
            return body[:bars[-1]]  # whole bars only
        # the first bar alone is too long: keep its meter and tempo (Bar TimeSig [Position Tempo])
        lead = body[:2]
        if len(body) >= 4 and tokenizer.type_of[body[3]] == T_TEMPO:
            lead = body[:4]
        return lead

    def window(seq):
        """The context to re-prefill when a sequence outgrows the model: header + opening + recent bars."""
        keep = ctx // 2
        tail = seq[-keep:]
        # start the tail at a Bar so the grammar context is sensible
        for j, t in enumerate(tail):
            if tokenizer.type_of[t] == T_BAR:
                tail = tail[j:]
                break
        return list(header), opening(seq), tail

    def run_prefill(rows):
        kv = model.layers[0].self_attn.kv_cache
        if kv is None or kv.k.shape[0] != n or kv.k.shape[2] != ctx:  # a slide reuses the same buffers
            model.setup_cache(n, ctx)
        width = max(len(r) for r in rows)
        # left-pad is not supported by RoPE positions here; all rows share the same length by construction
        assert all(len(r) == width for r in rows)
        return prefill(model, torch.tensor(rows))

    def fit(parts) -> list[list[int]]:
        """Rows of one width: the recent part of each is cut from its front where rows differ; a row
        whose opening is longer than the others leave room for keeps less of its opening (the most
        recent token always stays: the next one is predicted from it)."""
        width = min(sum(map(len, p)) for p in parts)
        rows = []
        for h, o, t in parts:
            if width - len(h) - len(o) < 1:
                o = o[:width - len(h) - 1]
            keep = width - len(h) - len(o)
            rows.append(h + o + t[len(t) - keep:])
        return rows

    repeat = None
    if sampling.repeat_rate is not None:
        from cadenza.engine.repeat import RepeatControl

        repeat = RepeatControl(tokenizer, n, sampling.repeat_rate, sampling.repeat_strength, prompts=seqs,
                               seed=gen.initial_seed() + 1)  # draws nothing from the sampler's stream
    model.eval()
    model.clear_cache()
    rows = [s if len(s) < ctx else sum(window(s), []) for s in seqs]
    logits = run_prefill(rows)
    step = _compiled_step(model) if compile else None
    pos = len(rows[0])
    while True:
        masks = torch.from_numpy(np.stack([tokenizer.allowed(st) for st in states]))
        # termination rules that depend on the musical clock
        limit_hit = (stop.max_tokens is not None and n_new >= stop.max_tokens) or n_new >= hard_limit
        for b, st in enumerate(states):
            if done[b]:
                masks[b] = False
                masks[b, pad] = True
                continue
            if limit_hit:  # out of tokens: no new bar; finish the current note, then end
                masks[b] &= ~bar_ids
                if st.complete():
                    masks[b] = False
                    masks[b, eos] = True
            elif stop.reached(st, start_bars, start_secs, n_new):
                # the last bar: it is written whole, and where a new bar would begin the piece ends.
                # The Bar stays a choice and is turned into EOS once sampled: masking it and offering
                # EOS instead would hand the Bar's probability to more notes at the bar's last position
                # (a model gives EOS little weight mid-piece), which piled up hundreds of notes there
                ending[b] = True
            elif stop.bars is not None or stop.seconds is not None:
                masks[b, eos] = False  # the user asked for a length: do not end early
            if st.last == T_VEL and not done[b] and hasattr(tokenizer, "durations_within"):
                left = stop.quarters_left(st, tokenizer, start_bars, start_secs)
                if left is not None and left < 16:  # near the end: no note rings past it
                    within = masks[b] & torch.from_numpy(tokenizer.durations_within(st, left))
                    if bool(within.any()):  # a length the grammar fixes (a prompt's note arrange replays) wins
                        masks[b] = within
        if sampling.repetition_penalty != 1.0:
            w = sampling.repetition_window  # left-pad: finished rows stop growing
            recent = torch.tensor([[pad] * max(0, w - len(s)) + s[-w:] for s in seqs])
            lg = apply_repetition_penalty(logits, recent, sampling.repetition_penalty, penalize)
        else:
            lg = logits
        if repeat is not None:
            lg = repeat.apply(lg, masks)
        if harmony is not None:
            lg = lg + harmony.biases()
        if parts is not None:
            pace = parts.biases(states, tokenizer.vocab_size)
            if pace is not None:
                lg = lg + pace
        for b, st in enumerate(states):
            if last_bar[b] and not done[b] and st.bars >= start_bars:  # in new bars, not the prompt's last
                never = [p for p, at in last_bar[b].items() if at is None]
                quiet = [p for p, at in last_bar[b].items()
                         if at is not None and sampling.reentry_bars and st.bars - at > sampling.reentry_bars
                         and parts is None]  # the part control keeps them playing instead
                if never or quiet:
                    lg = lg.clone() if lg is logits else lg
                    lg[b, never + quiet] += sampling.entry_bias
                if never and _past_half(st, stop, start_bars, start_secs) and bool(masks[b, never].any()):
                    # half the piece is written: where a note may start, one starts, on an instrument
                    # still silent (its pitch, length and loudness are the model's)
                    masks[b] = False
                    masks[b, never] = True
            if parts is not None and not done[b] and not limit_hit and not st.forced:
                _planned_entries(parts, b, st, masks, bar_ids, eos)
        if observe is not None:
            observe(lg, masks)
        nxt = sample(lg, sampling, masks, gen)
        for b in range(n):
            if ending[b] and bool(bar_ids[int(nxt[b])]):
                nxt[b] = eos
            ending[b] = False
        n_new += 1
        for b in range(n):
            if done[b]:
                continue
            t = int(nxt[b])
            if t == eos:
                done[b] = True
                yield b, t
                continue
            states[b].advance(t)
            seqs[b].append(t)
            if last_bar[b] and t in last_bar[b]:
                last_bar[b][t] = states[b].bars
            if repeat is not None:
                repeat.advance(b, t)
            if harmony is not None:
                harmony.advance(b, t)
            if parts is not None:
                parts.advance(b, t, states[b])
            if on_token:
                on_token(b, t)
            yield b, t
        if all(done):
            return
        if pos + 1 >= ctx:  # slide the window: header + opening + recent bars, re-prefilled
            rows = fit([window(s) for s in seqs])
            logits = run_prefill(rows)
            pos = len(rows[0])
        else:
            logits = decode_one(model, nxt, pos, step)
            pos += 1


class _HarmonyBias:
    """Per row, logit biases on pitches from the harmony asked for: a penalty for pitches outside the
    asked key's scale and the current bar's chord (``key_bias``), and a bonus for the tones of the bar's
    chord where the chords were given (``chord_bias``)."""

    def __init__(self, tokenizer, sampling: SamplingConfig, prompt: list[int], n: int):
        from cadenza.score.harmony import chord_tones
        from cadenza.score.keys import scale_of

        self.chord_of = getattr(tokenizer, "chord_of", {})
        self.scale = scale_of(*sampling.key) if sampling.key is not None else None
        self.tones = chord_tones
        self.key_bias = sampling.key_bias if self.scale is not None else 0.0
        self.chord_bias = sampling.chord_bias if sampling.follow_chords else 0.0
        ids = tokenizer.ids_of_type[T_PITCH]
        self.pitch_ids = torch.as_tensor(np.asarray(ids, dtype=np.int64))
        self.pcs = np.array([int(tokenizer.value_of[int(i)]) % 12 for i in ids])
        self.vocab = tokenizer.vocab_size
        # in a key, a chord with a tone outside its scale is penalized like such a pitch: the chord a bar
        # is written over frees its tones from the key penalty, so an unpenalized chromatic chord let
        # continuations wander off their prompt's key (bench/continuation.py key_agreement)
        self.chromatic_chords = [i for i, ch in self.chord_of.items()
                                 if ch is not None and self.key_bias and not chord_tones(ch) <= self.scale]
        last = next((self.chord_of[int(t)] for t in reversed(prompt) if int(t) in self.chord_of), None)
        self.chord = [last] * n
        self.cache: dict = {}

    def _vector(self, chord) -> torch.Tensor:
        if chord not in self.cache:
            tones = self.tones(chord) if chord is not None else frozenset()
            v = torch.zeros(self.vocab)
            if self.key_bias:
                out = ~np.isin(self.pcs, list(self.scale | tones))
                v[self.pitch_ids[torch.from_numpy(out)]] -= self.key_bias
            if self.chord_bias and tones:
                v[self.pitch_ids[torch.from_numpy(np.isin(self.pcs, list(tones)))]] += self.chord_bias
            v[self.chromatic_chords] -= self.key_bias
            self.cache[chord] = v
        return self.cache[chord]

    def biases(self) -> torch.Tensor:
        return torch.stack([self._vector(c) for c in self.chord])

    def advance(self, b: int, t: int) -> None:
        if t in self.chord_of:
            self.chord[b] = self.chord_of[t]


def _part_control(tokenizer, n: int, sampling: SamplingConfig, seed: int = 0):
    """The part control for ``n`` rows, or None when off or for a tokenizer without instruments."""
    from cadenza.engine.parts import PartControl

    if not sampling.pace or not sampling.pace_strength or not hasattr(tokenizer, "program_id"):
        return None
    rates = {tokenizer.program_id[p]: float(r) for p, r in sampling.pace.items() if p in tokenizer.program_id}
    plans = {tokenizer.program_id[p]: spec for p, spec in (sampling.plans or {}).items() if p in tokenizer.program_id}
    return (PartControl(tokenizer, rates, n, strength=sampling.pace_strength, plans=plans,
                        bars=sampling.plan_bars, seconds=sampling.plan_seconds, seed=seed) if rates else None)


def _asked_instruments(tokenizer, states, stop: StopConfig, sampling) -> list[set | None]:
    """Per row, the Program token ids of the instruments asked for (the programs the grammar allows,
    else the header's), for the entry bias; None where it does not apply (no bias, no length asked
    for, a tokenizer without instruments)."""
    if not sampling.entry_bias or (stop.bars is None and stop.seconds is None) \
            or not len(getattr(tokenizer, "ids_of_type", {}).get(T_PROG, ())):
        return [None] * len(states)
    out = []
    for st in states:
        asked = getattr(st, "programs", None) or getattr(st, "insts", None)
        out.append(set(asked) if asked else None)
    return out


def stream_tokens(model, tokenizer, prompt: list[int], max_new: int, n: int = 1,
                  sampling: SamplingConfig | None = None, header_len: int = 0, period: int = 1,
                  on_token: Callable[[int, int], None] | None = None) -> Iterator[tuple[int, int]]:
    """Yield (sequence index, token id) for ``max_new`` tokens after ``prompt``, for token streams with no
    musical clock (audio codec frames): the grammar's mask, the sampler, the KV cache and the sliding
    window of ``stream``, without bars. When the context is full the window slides to the header
    (``prompt[:header_len]``) and the most recent half context, cut at a multiple of ``period`` tokens
    after the header (a whole code frame), and is prefilled again.
    """
    sampling = (sampling or SamplingConfig()).validate()
    gen = torch.Generator().manual_seed(sampling.seed if sampling.seed is not None else
                                        int(torch.randint(0, 2**31 - 1, (1,))))
    states = [tokenizer.start_state() for _ in range(n)]
    for st in states:
        for t in prompt:
            st.advance(int(t))
    ctx = model.cfg.max_seq_len
    header = list(prompt[:header_len])
    seqs = [list(prompt) for _ in range(n)]

    def window(seq) -> list[int]:
        body = seq[header_len:]
        start = max(0, len(body) - (ctx // 2 - header_len))
        start += -start % period  # whole frames
        return header + body[start:]

    model.eval()
    model.clear_cache()
    model.setup_cache(n, ctx)
    rows = [s if len(s) < ctx else window(s) for s in seqs]
    logits = prefill(model, torch.tensor(rows))
    pos = len(rows[0])
    for _ in range(max_new):
        masks = torch.from_numpy(np.stack([tokenizer.allowed(st) for st in states]))
        nxt = sample(logits, sampling, masks, gen)
        for b in range(n):
            t = int(nxt[b])
            states[b].advance(t)
            seqs[b].append(t)
            if on_token:
                on_token(b, t)
            yield b, t
        if pos + 1 >= ctx:
            rows = [window(s) for s in seqs]
            logits = prefill(model, torch.tensor(rows))
            pos = len(rows[0])
        else:
            logits = decode_one(model, nxt, pos)
            pos += 1


def _planned_entries(parts, b: int, st, masks: torch.Tensor, bar_ids: torch.Tensor, eos: int) -> None:
    """Parts the piece's plan has play in the current bar that have not played in it yet: the bar does
    not end before they do, and once ``FORCE_AT`` of it is gone (``forcing``), where a note may start one
    of them starts it (its pitch, length and loudness are the model's)."""
    waiting = parts.waiting(b, st)
    if not waiting:
        return
    if parts.forcing(st) and bool(masks[b, waiting].any()):
        allowed = masks[b, waiting].clone()
        masks[b] = False
        masks[b, waiting] = allowed
    else:
        other = masks[b] & ~bar_ids
        other[eos] = False
        if bool(other.any()):
            masks[b] = other


def _past_half(st, stop: StopConfig, start_bars: int, start_secs: float) -> bool:
    if stop.bars is not None:
        return st.bars - start_bars + 1 > stop.bars / 2
    return st.seconds - start_secs >= stop.seconds / 2


def generate(model, tokenizer, prompt: list[int], n: int = 1, sampling: SamplingConfig | None = None,
             stop: StopConfig | None = None, constraints: dict | None = None,
             progress: Callable[[int], None] | None = None, compile: bool = False) -> GenerationResult:
    """Sample ``n`` continuations of ``prompt`` (token ids) under the tokenizer's grammar.

    ``constraints`` go to ``tokenizer.start_state`` (e.g. ``programs``, ``time_signature``).
    Every returned sequence ends in a complete state, so it decodes with nothing dropped.
    """
    seqs = [list(prompt) for _ in range(n)]
    count = 0
    for b, t in stream(model, tokenizer, prompt, n, sampling, stop, constraints, compile=compile):
        if t != tokenizer.eos_id:
            seqs[b].append(t)
        count += 1
        if progress:
            progress(count)
    return GenerationResult(seqs, len(prompt))
