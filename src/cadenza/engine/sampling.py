"""Sampling on tensors: temperature, repetition control, top-k, top-p, masks."""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real

import torch

from cadenza.errors import CadenzaError
from cadenza.limits import LIMITS

SEED_MAX = LIMITS.seed_max  # seeds are 0..SEED_MAX (what the CLI and the studio accept; torch takes any of them)


MIN_TEMPERATURE, MAX_TEMPERATURE = LIMITS.temperature_min, LIMITS.temperature_max

@dataclass
class SamplingConfig:
    temperature: float = 1.0
    top_k: int = 0  # 0 = off
    top_p: float = 0.95  # 1.0 = off
    repetition_penalty: float = 1.0  # >1 lowers the odds of tokens in the recent window; 1.0 = off
    repetition_window: int = 64
    repeat_rate: float | None = None  # fraction of bars that may restate a recent bar (engine/repeat.py); None = off
    repeat_strength: float = 8.0  # logit bonus for restating (8: about nine in ten started restatements complete)
    # every instrument asked for plays: in a piece of a given length, an instrument that has not played
    # yet gets this logit bonus on its Program token wherever a note may start, and once half the piece
    # is written it gets a note at the next place one may start (its pitch, length and loudness are the
    # model's); 0 = off. bench/arrange.py's instruments_all_played measures it
    entry_bias: float = 4.0
    # and stays in: an instrument asked for that has been silent for more than this many bars gets the
    # entry bias again (no note is forced); 0 = off. In a 4-minute piece for six instruments a bass and
    # strings entered with one and two notes and were not heard again
    reentry_bars: int = 8
    # keeping to a key asked for: (tonic pitch class, "major"/"minor"), and a logit penalty for a pitch
    # outside that key's scale unless it is a tone of the bar's chord (a borrowed chord's tones are
    # free); 0 = off. The model alone wrote 89% of its note time in a requested key's scale where real
    # pieces of the same styles have 94% in their own (bench/arrange.py keys)
    # every instrument keeps its part (engine/parts.py): {GM program (-1 drums): notes per quarter-note
    # beat} for the instruments of the piece, and the strength of the pull toward that pace; None or 0 =
    # off (then ``reentry_bars`` nudges back an instrument silent for long)
    pace: dict[int, float] | None = None
    pace_strength: float = 3.0
    # and rests and enters as real parts do: {GM program: its family's plan statistics} (engine/parts.py
    # style_plans; ``pace`` is then its pace in the bars it plays) and the piece's length in bars; each
    # instrument with statistics gets a plan of playing and resting bars, drawn per row. None/0 = no plan.
    # ``plan_seconds``: the piece's length in seconds where the model chooses its tempo; the plan's bars
    # are then counted at the tempo it chose (counted at 120 bpm, a 72-bar piece got a plan of 120 bars
    # and rests capped at 15 bars where 9 was meant)
    plans: dict[int, dict] | None = None
    plan_bars: int = 0
    plan_seconds: float = 0.0
    key: tuple[int, str] | None = None
    key_bias: float = 1.5
    # following chords given (follow_chords: the caller gave a chord per bar): a logit bonus for the
    # tones of the bar's chord; 0 = off. Over given progressions the model alone put 71% of its note
    # time on chord tones where the real songs have 77%; with 0.3, 78% (bench/arrange.py chords)
    follow_chords: bool = False
    chord_bias: float = 0.3
    seed: int | None = None

    def validate(self) -> "SamplingConfig":
        for name, v in (("temperature", self.temperature), ("top-p", self.top_p),
                        ("repetition penalty", self.repetition_penalty)):
            if isinstance(v, bool) or not isinstance(v, Real) or not math.isfinite(v):
                raise CadenzaError(f"{name} must be a finite number (got {v})")
        if not MIN_TEMPERATURE <= self.temperature <= MAX_TEMPERATURE:  # below, logits / T overflow (1e-320 crashed)
            raise CadenzaError(f"temperature must be from {MIN_TEMPERATURE:g} to {MAX_TEMPERATURE:g} "
                               f"(got {self.temperature})")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, Integral) or self.top_k < 0:
            raise CadenzaError(f"top-k must be 0 (off) or positive (got {self.top_k})")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, Integral)
                                      or not 0 <= self.seed <= SEED_MAX):
            raise CadenzaError(f"seed must be a whole number from 0 to {SEED_MAX} (got {self.seed})")
        if not 0 < self.top_p <= 1:
            raise CadenzaError(f"top-p must be in (0, 1] (got {self.top_p})")
        if self.repeat_rate is not None and not 0 <= self.repeat_rate <= 1:
            raise CadenzaError(f"repeat rate must be between 0 and 1 (got {self.repeat_rate})")
        if self.entry_bias < 0:
            raise CadenzaError(f"entry bias must be 0 (off) or positive (got {self.entry_bias})")
        if self.chord_bias < 0:
            raise CadenzaError(f"chord bias must be 0 (off) or positive (got {self.chord_bias})")
        if self.key_bias < 0:
            raise CadenzaError(f"key bias must be 0 (off) or positive (got {self.key_bias})")
        if self.pace_strength < 0:
            raise CadenzaError(f"pace strength must be 0 (off) or positive (got {self.pace_strength})")
        if self.reentry_bars < 0:
            raise CadenzaError(f"re-entry bars must be 0 (off) or positive (got {self.reentry_bars})")
        if self.repetition_penalty < 1:
            raise CadenzaError(f"repetition penalty must be >= 1 (got {self.repetition_penalty})")
        return self


def apply_repetition_penalty(logits: torch.Tensor, recent: torch.Tensor, penalty: float,
                             penalize: torch.Tensor | None = None) -> torch.Tensor:
    """CTRL-style penalty on tokens in ``recent`` (B, W); ``penalize`` (V,) bool limits which tokens count."""
    if penalty == 1.0 or recent.numel() == 0:
        return logits
    hit = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, recent, True)
    if penalize is not None:
        hit &= penalize
    return torch.where(hit, torch.where(logits > 0, logits / penalty, logits * penalty), logits)


def sample(logits: torch.Tensor, cfg: SamplingConfig, mask: torch.Tensor | None,
           generator: torch.Generator | None) -> torch.Tensor:
    """logits (B, V) -> token ids (B,). ``mask`` (B, V) bool marks legal tokens."""
    logits = logits.float() / cfg.temperature
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf"))
    if cfg.top_k:
        kth = torch.topk(logits, min(cfg.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if cfg.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        p = sorted_logits.softmax(-1)
        drop = p.cumsum(-1) - p > cfg.top_p  # keep the smallest set reaching top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(1, order, sorted_logits)
    probs = logits.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)
