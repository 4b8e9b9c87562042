"""cadenza's own small synthesizer: every score stays audible when no SoundFont is installed.

Hand-written on purpose: the alternatives need a SoundFont (FluidSynth, symusic, TinySoundFont),
and symusic's built-in fonts are downloaded at run time, which cadenza must not do. It is a
wavetable synthesizer: each General MIDI family (program // 8) has its own harmonic recipe and
envelope (a plucked, decaying piano or guitar; a sustained organ; a bowed string with a slow attack;
a bright brass; a hollow, odd-harmonic reed ...), and the drum channel gets noise and pitch-swept
sine sounds by drum type (kick, snare, toms, hi-hats, cymbals, hand percussion). Tables are
band-limited per octave (no partial above Nyquist, so no aliasing), and a note is a table lookup
times its envelope, vectorized per note: minutes of music render in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import symusic

TABLE = 4096


@dataclass(frozen=True)
class Timbre:
    partials: tuple[float, ...]  # amplitude of harmonic k+1
    attack: float  # seconds
    decay: float | None  # time constant of the fall while held (None: sustained)
    sustain: float  # level a sustained sound settles to (after 4x attack)
    release: float  # time constant after the note-off, seconds
    gain: float = 1.0


def _saw(n: int, bright: float = 1.0) -> tuple[float, ...]:
    return tuple(1.0 / (k ** (1.0 / bright)) for k in range(1, n + 1))


def _pulse(n: int, duty: float) -> tuple[float, ...]:
    return tuple(abs(np.sin(np.pi * k * duty)) / k for k in range(1, n + 1))


def _odd(n: int) -> tuple[float, ...]:
    return tuple((1.0 / k if k % 2 else 0.0) for k in range(1, n + 1))


# One recipe per GM family (program // 8). Release time constants are short (10-40 ms) so notes
# end where the score says; the decays give each family its character.
FAMILIES: dict[int, Timbre] = {
    0: Timbre((1, 0.55, 0.3, 0.22, 0.1, 0.08, 0.04, 0.02), 0.004, 0.9, 1.0, 0.012),  # piano
    1: Timbre((1, 0, 0.45, 0, 0.2, 0, 0.08), 0.002, 0.45, 1.0, 0.02),  # chromatic percussion
    2: Timbre((1, 0.9, 0.55, 0.0, 0.45, 0.0, 0.0, 0.35, 0, 0, 0, 0.2), 0.012, None, 0.9, 0.012),  # organ
    3: Timbre((1, 0.7, 0.45, 0.3, 0.2, 0.12, 0.08, 0.05), 0.003, 0.6, 1.0, 0.012),  # guitar
    4: Timbre((1, 0.45, 0.18, 0.08, 0.03), 0.006, 1.4, 1.0, 0.012, 1.3),  # bass
    5: Timbre(_saw(14, 0.8), 0.06, None, 0.85, 0.04),  # strings
    6: Timbre(_saw(10, 0.7), 0.08, None, 0.85, 0.04),  # ensemble, choir
    7: Timbre(_saw(16, 1.2), 0.03, None, 0.8, 0.025),  # brass
    8: Timbre(_odd(13), 0.025, None, 0.85, 0.02),  # reed
    9: Timbre((1, 0.12, 0.06, 0.02), 0.04, None, 0.9, 0.02),  # pipe (flute)
    10: Timbre(_pulse(16, 0.25), 0.008, None, 0.9, 0.015),  # synth lead (a 25% pulse)
    11: Timbre(_saw(8, 0.6), 0.25, None, 0.85, 0.06),  # synth pad
    12: Timbre((1, 0.3, 0.3, 0.2), 0.15, None, 0.8, 0.05),  # synth effects
    13: Timbre((1, 0.8, 0.5, 0.35, 0.25, 0.15), 0.002, 0.4, 1.0, 0.012),  # ethnic (plucked)
    14: Timbre((1, 0.2, 0.5, 0.1), 0.002, 0.25, 1.0, 0.012),  # percussive
    15: Timbre((1, 0.5, 0.4), 0.01, 0.5, 1.0, 0.02),  # sound effects
}


def midi_hz(pitch: int | np.ndarray) -> np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(pitch, dtype=np.float64) - 69) / 12)


@lru_cache(maxsize=256)
def _table(family: int, octave: int, sample_rate: int) -> np.ndarray:
    """One period of the family's wave, with only the partials that stay below Nyquist for every
    pitch of this octave (band-limited: high notes get fewer harmonics, never aliases)."""
    top = midi_hz(12 * (octave + 1) + 11)  # highest pitch of the octave
    x = np.arange(TABLE) / TABLE
    wave = np.zeros(TABLE)
    for k, a in enumerate(FAMILIES[family].partials, start=1):
        if a and k * top < 0.45 * sample_rate:
            wave += a * np.sin(2 * np.pi * k * x)
    if not wave.any():
        wave = np.sin(2 * np.pi * x)
    return (wave / np.abs(wave).max()).astype(np.float32)


def _envelope(t: np.ndarray, held: float, tb: Timbre) -> np.ndarray:
    """Level at times ``t`` (s from the onset) of a note held ``held`` seconds."""
    env = np.minimum(t / tb.attack, 1.0) if tb.attack > 0 else np.ones_like(t)
    if tb.decay is not None:
        env = env * np.exp(-t / tb.decay)
    elif tb.sustain < 1:
        env = env * (tb.sustain + (1 - tb.sustain) * np.exp(-np.maximum(t - tb.attack, 0) / (4 * tb.attack)))
    after = t > held
    if after.any():
        at_off = env[np.searchsorted(t, held) - 1] if np.searchsorted(t, held) > 0 else env[0]
        env[after] = at_off * np.exp(-(t[after] - held) / tb.release)
    return env


def _tone(pitch: int, seconds: float, velocity: int, program: int, sample_rate: int) -> np.ndarray:
    tb = FAMILIES[(program // 8) % 16]
    tail = 7 * tb.release  # -60 dB
    n = max(1, int((seconds + tail) * sample_rate))
    t = np.arange(n) / sample_rate
    f = float(midi_hz(pitch))
    octave = max(0, min(10, pitch // 12 - 1))
    idx = (np.arange(n) * (f * TABLE / sample_rate)).astype(np.int64) & (TABLE - 1)
    wave = _table((program // 8) % 16, octave, sample_rate)[idx]
    return wave * (_envelope(t, seconds, tb) * _velocity(velocity) * tb.gain).astype(np.float32)


def _velocity(v: int) -> float:
    return (max(1, min(127, v)) / 127.0) ** 1.6


# GM drum keys by kind
KICK, SNARE, TOM, HAT_CLOSED, HAT_OPEN, CYMBAL, CLAP, HAND = range(8)


def _drum_kind(key: int) -> int:
    if key in (35, 36):
        return KICK
    if key in (38, 40, 37):
        return SNARE
    if key in (41, 43, 45, 47, 48, 50):
        return TOM
    if key in (42, 44):
        return HAT_CLOSED
    if key == 46:
        return HAT_OPEN
    if key in (49, 51, 52, 53, 55, 57, 59):
        return CYMBAL
    if key in (39, 54, 56, 58):
        return CLAP
    return HAND


@lru_cache(maxsize=128)
def _drum(key: int, sample_rate: int) -> np.ndarray:
    """A drum hit at full velocity (deterministic noise: the same file renders the same)."""
    kind = _drum_kind(key)
    rng = np.random.default_rng(key)
    dur = {KICK: 0.45, SNARE: 0.25, TOM: 0.4, HAT_CLOSED: 0.08, HAT_OPEN: 0.45, CYMBAL: 1.4, CLAP: 0.2,
           HAND: 0.2}[kind]
    n = int(dur * sample_rate)
    t = np.arange(n) / sample_rate
    noise = rng.standard_normal(n)
    bright = np.diff(noise, prepend=0.0)  # a first difference: a crude high-pass, for metal
    if kind == KICK:
        f = 50 + 110 * np.exp(-t / 0.03)
        x = np.sin(2 * np.pi * np.cumsum(f) / sample_rate) * np.exp(-t / 0.15) + 0.15 * noise * np.exp(-t / 0.004)
    elif kind == SNARE:
        x = 0.5 * np.sin(2 * np.pi * 185 * t) * np.exp(-t / 0.05) + 0.6 * noise * np.exp(-t / 0.07)
    elif kind == TOM:
        base = 80 + (key - 41) * 12
        f = base * (1 + 0.5 * np.exp(-t / 0.05))
        x = np.sin(2 * np.pi * np.cumsum(f) / sample_rate) * np.exp(-t / 0.14)
    elif kind == HAT_CLOSED:
        x = 0.5 * bright * np.exp(-t / 0.015)
    elif kind == HAT_OPEN:
        x = 0.45 * bright * np.exp(-t / 0.12)
    elif kind == CYMBAL:
        x = 0.4 * bright * np.exp(-t / 0.45)
    elif kind == CLAP:
        x = 0.6 * noise * (np.exp(-t / 0.01) + 0.6 * np.exp(-np.maximum(t - 0.012, 0) / 0.04) * (t > 0.012))
    else:  # hand percussion, woodblocks, cowbell...: a short pitched knock
        f = 200 + (key % 12) * 40
        x = 0.7 * np.sin(2 * np.pi * f * t) * np.exp(-t / 0.05) + 0.2 * noise * np.exp(-t / 0.01)
    x[: min(n, int(0.001 * sample_rate))] *= np.linspace(0, 1, min(n, int(0.001 * sample_rate)))  # no click
    return (x / np.abs(x).max()).astype(np.float32)


def _track_pan(tr, index: int, count: int) -> float:
    """-1 (left) .. 1 (right): the track's first pan controller, else tracks spread across the field."""
    for c in tr.controls:
        if c.number == 10:
            return (c.value - 64) / 64
    if tr.is_drum or count == 1:
        return 0.0
    return -0.5 + index / (count - 1)


def _track_gain(tr) -> float:
    vol = next((c.value for c in tr.controls if c.number == 7), 100)
    expr = next((c.value for c in tr.controls if c.number == 11), 127)
    return (vol / 127) ** 2 * (expr / 127) ** 2 / (100 / 127) ** 2


def synthesize(score: symusic.Score, sample_rate: int = 44100, progress=None) -> np.ndarray:
    """Render every note of ``score`` (pedal already applied) to (N, 2) float32, not normalized."""
    sec = score.to("second")
    end = sec.end()
    out = np.zeros((int((end + 2.0) * sample_rate) + 1, 2), dtype=np.float32)
    tracks = [t for t in sec.tracks if len(t.notes)]
    total = sum(len(t.notes) for t in tracks) or 1
    done = 0
    for i, tr in enumerate(tracks):
        pan = _track_pan(tr, i, len(tracks))
        lr = np.array([np.cos((pan + 1) * np.pi / 4), np.sin((pan + 1) * np.pi / 4)], dtype=np.float32)
        gain = _track_gain(tr) * (0.8 if tr.is_drum else 1.0)
        mono = np.zeros(len(out), dtype=np.float32)
        for n in tr.notes:
            if n.duration <= 0:
                continue
            a = int(round(n.start * sample_rate))
            if tr.is_drum:
                x = _drum(int(n.pitch), sample_rate) * np.float32(_velocity(n.velocity))
            else:
                x = _tone(int(n.pitch), float(n.duration), int(n.velocity), int(tr.program), sample_rate)
            b = min(len(mono), a + len(x))
            mono[a:b] += x[: b - a] * np.float32(gain)
            done += 1
            if progress and done % 256 == 0:
                progress(done / total)
        out += mono[:, None] * lr[None, :]
    return out
