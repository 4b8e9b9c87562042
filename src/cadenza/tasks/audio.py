"""Continuing and generating audio with an audio model (codec + prior), on the one engine.

A recording is encoded by the model's codec into code frames, flattened into tokens behind a style
header, continued by ``engine.stream_tokens`` (grammar mask, sampler, KV cache, sliding window), and
the new frames are decoded with the prompt's last frames as context: the decoder sees the prompt's
codes and Griffin-Lim holds the prompt's own STFT frames fixed, so the continuation picks up its phase.
The prompt's samples are returned untouched; the continuation follows them.

Sampling defaults to temperature 1 with no nucleus cut: with 0.9 and top-p 0.95 the prior settles on
repeating one frame (a held chord that never changes) after a second or two.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from cadenza.errors import CadenzaError, ModelError
from cadenza.limits import LIMITS

DEFAULT_AUDIO_MODEL = "audio"
DECODE_CONTEXT_FRAMES = 32  # code frames of the prompt (about 1 s) decoded with the continuation
MIN_PROMPT_FRAMES = 4  # code frames a prompt needs to be continued
MAX_SECONDS = 600.0  # new audio asked for at once (force lifts it)


@dataclass
class AudioResult:
    samples: np.ndarray  # (N,) or (N, channels) float32: prompt (unchanged) then continuation
    sample_rate: int
    prompt_samples: int  # where the continuation begins
    style: str | None
    wall_s: float

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.sample_rate

    @property
    def continuation(self) -> np.ndarray:
        return self.samples[self.prompt_samples:]


def _check_seconds(seconds: float, frame_seconds: float = 0.0, force: bool = False) -> float:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) \
            or seconds <= 0:
        raise CadenzaError(f"seconds must be a positive number (got {seconds})")
    if seconds < frame_seconds:  # less than one code frame would write an empty file
        raise CadenzaError(f"seconds must be at least one codec frame, {frame_seconds:.3f} s (got {seconds})")
    if seconds > MAX_SECONDS and not force:
        raise CadenzaError(f"seconds must be at most {MAX_SECONDS:.0f} (got {seconds}; --force lifts this limit)")
    return float(seconds)


def _check_prompt(audio: np.ndarray, sample_rate: int, frame_seconds: float, force: bool = False) -> None:
    """A recording to continue: not too many channels, not longer than LIMITS.audio_seconds (unless
    ``force``), long enough to encode, not silent."""
    seconds = len(audio) / sample_rate
    if audio.ndim == 2 and audio.shape[1] > LIMITS.audio_channels:
        raise CadenzaError(f"the prompt has {audio.shape[1]} channels: at most {LIMITS.audio_channels}")
    if seconds > LIMITS.audio_seconds and not force:
        raise CadenzaError(f"the prompt is {seconds:.0f} s long: at most {LIMITS.audio_seconds:.0f} s "
                           "(cut it, or --force lifts this limit)")
    if seconds < MIN_PROMPT_FRAMES * frame_seconds:
        raise CadenzaError(f"the prompt is too short: at least {MIN_PROMPT_FRAMES * frame_seconds:.2f} s needed")
    if not len(audio) or float(np.abs(audio).max()) < 1e-4:
        raise CadenzaError(f"the prompt is silent ({seconds:.0f} s without sound): nothing to continue")


def _audio_folder(name) -> tuple[Path, dict]:
    """(folder, config) of an audio model by name or folder, its config checked; no weight is read."""
    from cadenza.model import read_config
    from cadenza.tasks.compose import find_model

    path = find_model(name or DEFAULT_AUDIO_MODEL)
    cfg = read_config(path)
    if cfg.get("family") != "audio-lm" or not isinstance(cfg.get("codec"), dict):
        raise ModelError(f"model {cfg.get('name', path.name)} is a {cfg.get('family', '?')} model, not an audio "
                         f"model (the bundled one is '{DEFAULT_AUDIO_MODEL}')")
    return path, cfg


def check_request(name, seconds: float, prompt: tuple[np.ndarray, int] | None = None, force: bool = False) -> None:
    """``cadenza audio``'s length and prompt (samples, sample rate), checked before the model loads."""
    from cadenza.audio.codec import CodecConfig

    path, cfg = _audio_folder(name)
    try:
        c = CodecConfig.from_dict(cfg["codec"])
        frame_seconds = c.frame_samples / c.sample_rate
    except (TypeError, ValueError, ZeroDivisionError) as e:
        raise ModelError(f"{path / 'config.json'}: the codec section cannot be read ({e})") from None
    _check_seconds(seconds, frame_seconds, force)
    if prompt is not None:
        _check_prompt(np.asarray(prompt[0]), prompt[1], frame_seconds, force)


def load_audio_model(name: str | os.PathLike | None = None) -> "AudioModel":
    """An audio model by bundled name or folder (default: the bundled ``audio`` model)."""
    from cadenza.audio.codec import CodecConfig, SpectralCodec
    from cadenza.model import load_model_folder
    from cadenza.model.folder import load_extra
    from cadenza.tasks.compose import checked_folder
    from cadenza.tokenizers import tokenizer_from_config

    path, _ = _audio_folder(name)
    checked_folder(path)
    prior, cfg = load_model_folder(path)
    codec = SpectralCodec(CodecConfig.from_dict(cfg["codec"]))
    state = load_extra(path, "codec.safetensors")
    missing, unexpected = codec.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelError(f"{path}/codec.safetensors does not match the codec config "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return AudioModel(prior, codec.eval(), tokenizer_from_config(cfg["tokenizer"]), cfg, path)


class AudioModel:
    def __init__(self, prior, codec, tokenizer, config: dict, path: Path | None = None):
        self.prior, self.codec, self.tokenizer, self.config, self.path = prior, codec, tokenizer, config, path
        self.name = config.get("name", path.name if path else "audio")
        self.styles: list[str] = list(tokenizer.styles)
        self.sample_rate = codec.cfg.sample_rate

    def __repr__(self) -> str:
        return f"AudioModel({self.name!r}, styles={self.styles})"

    # ---- pieces ----------------------------------------------------------------------------------
    def prepare(self, audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, float]:
        """(mono float32 at the codec's rate brought to the training peak, the gain applied)."""
        import librosa

        from cadenza.audio.codec import PEAK

        y = np.asarray(audio, dtype=np.float32)
        if y.ndim == 2:
            y = y.mean(axis=1)
        if sample_rate != self.sample_rate:
            y = librosa.resample(y, orig_sr=sample_rate, target_sr=self.sample_rate)
        peak = float(np.abs(y).max()) if len(y) else 0.0
        if peak < 1e-4:
            raise CadenzaError("the prompt is silent: nothing to continue")
        gain = PEAK / peak
        return np.ascontiguousarray(y * gain, dtype=np.float32), gain

    def encode(self, y: np.ndarray) -> np.ndarray:
        """Mono samples at the codec's rate -> codes (n_q, frames)."""
        return self.codec.encode(torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))[None])[0].numpy()

    def best_style(self, codes: np.ndarray) -> str | None:
        """The style under which the prior finds the prompt most likely (its last context's worth)."""
        if len(self.styles) <= 1:
            return self.styles[0] if self.styles else None
        frames = (self.prior.cfg.max_seq_len - 2) // self.tokenizer.n_q
        body = self.tokenizer.encode_codes(codes[:, -frames:], header=False)
        rows = torch.tensor([self.tokenizer.header(s) + body for s in self.styles])
        self.prior.clear_cache()
        with torch.no_grad():
            logp = self.prior(rows[:, :-1]).log_softmax(-1)
        nll = -logp[:, 1:].gather(-1, rows[:, 2:, None]).squeeze(-1).sum(1)
        return self.styles[int(nll.argmin())]

    def sample_codes(self, prompt_codes: np.ndarray, frames: int, style: str | None, temperature: float = 1.0,
                     top_p: float = 1.0, top_k: int = 0, seed: int | None = None,
                     progress: Callable[[int], None] | None = None) -> np.ndarray:
        """``frames`` new code frames after ``prompt_codes`` (n_q, T) -> (n_q, frames)."""
        from cadenza.engine.generate import stream_tokens
        from cadenza.engine.sampling import SamplingConfig

        tok = self.tokenizer
        header = tok.header(style)
        ids = tok.encode_codes(prompt_codes, header=False)
        sampling = SamplingConfig(temperature=temperature, top_p=top_p, top_k=top_k, seed=seed)
        new = []
        for _, t in stream_tokens(self.prior, tok, header + ids, frames * tok.n_q, sampling=sampling,
                                  header_len=len(header), period=tok.n_q):
            new.append(t)
            if progress and len(new) % tok.n_q == 0:
                progress(len(new) // tok.n_q)
        return tok.decode_codes(new)

    def decode(self, codes: np.ndarray, context: np.ndarray | None = None, context_audio: np.ndarray | None = None,
               seed: int = 0) -> np.ndarray:
        """New codes (n_q, T) -> samples (T * frame_samples,) at the codec's rate. ``context``: the prompt's
        last code frames, decoded along (the decoder's convolutions see across the seam); ``context_audio``:
        the prompt's samples from the first context frame on, whose STFT frames Griffin-Lim keeps."""
        c = self.codec.cfg
        k = 0 if context is None else context.shape[1]
        allc = codes if not k else np.concatenate([context, codes], 1)
        known = None
        if k and context_audio is not None:
            a = torch.from_numpy(np.ascontiguousarray(context_audio, dtype=np.float32))[None]
            known = self.codec.stft(a)[..., :k * c.stride]
        y = self.codec.decode(torch.from_numpy(allc.astype(np.int64))[None], known=known, seed=seed)[0].numpy()
        return y[k * c.frame_samples:]

    # ---- tasks -----------------------------------------------------------------------------------
    def continue_audio(self, audio: np.ndarray, sample_rate: int, seconds: float, *, style: str | None = None,
                       temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0, seed: int | None = None,
                       progress: Callable[[int, int], None] | None = None, force: bool = False) -> AudioResult:
        """The prompt (its samples untouched, at its own rate and channels) followed by ``seconds`` more.
        ``force`` lifts the limits on lengths (MAX_SECONDS, LIMITS.audio_seconds)."""
        c = self.codec.cfg
        seconds = _check_seconds(seconds, c.frame_samples / c.sample_rate, force)
        t0 = time.time()
        audio = np.asarray(audio, dtype=np.float32)
        _check_prompt(audio, sample_rate, c.frame_samples / c.sample_rate, force)
        y, gain = self.prepare(audio, sample_rate)
        codes = self.encode(y) if len(y) >= 4 * c.frame_samples else np.zeros((c.n_q, 0))
        if codes.shape[1] < 4:
            raise CadenzaError(f"the prompt is too short: at least {4 * c.frame_samples / c.sample_rate:.2f} s needed")
        if style is not None and style not in self.styles:
            raise CadenzaError(f"unknown style '{style}' (this audio model knows: {', '.join(self.styles)})")
        style = style or self.best_style(codes)
        L = codes.shape[1] * c.frame_samples  # samples covered by whole code frames
        skip = len(y) - L  # the prompt's samples after its last whole frame: the continuation starts after them
        frames = math.ceil((seconds * c.sample_rate + skip) / c.frame_samples)
        new = self.sample_codes(codes, frames, style, temperature, top_p, top_k, seed,
                                progress=(lambda k: progress(k, frames)) if progress else None)
        k = min(DECODE_CONTEXT_FRAMES, codes.shape[1])
        ctx_audio = y[L - k * c.frame_samples:min(len(y), L + c.n_fft // 2)]
        cont = self.decode(new, codes[:, -k:], ctx_audio, seed=seed or 0)[skip:skip + int(round(seconds * c.sample_rate))]
        cont = cont / gain
        if sample_rate != c.sample_rate:
            import librosa

            cont = librosa.resample(cont, orig_sr=c.sample_rate, target_sr=sample_rate)
        cont = np.clip(cont, -1.0, 1.0).astype(np.float32)
        if audio.ndim == 2:
            cont = np.repeat(cont[:, None], audio.shape[1], 1)
        out = np.concatenate([audio, cont], 0)
        return AudioResult(out, int(sample_rate), len(audio), style, time.time() - t0)

    def generate_audio(self, seconds: float, *, style: str | None = None, temperature: float = 1.0,
                       top_p: float = 1.0, top_k: int = 0, seed: int | None = None,
                       progress: Callable[[int, int], None] | None = None, force: bool = False) -> AudioResult:
        """``seconds`` of new audio in a style, from nothing but the style token (``force``: no MAX_SECONDS)."""
        c = self.codec.cfg
        seconds = _check_seconds(seconds, c.frame_samples / c.sample_rate, force)
        if style is not None and style not in self.styles:
            raise CadenzaError(f"unknown style '{style}' (this audio model knows: {', '.join(self.styles)})")
        t0 = time.time()
        frames = math.ceil(seconds * c.sample_rate / c.frame_samples)
        new = self.sample_codes(np.zeros((self.tokenizer.n_q, 0), np.int64), frames, style, temperature, top_p, top_k,
                                seed, progress=(lambda k: progress(k, frames)) if progress else None)
        y = self.decode(new, seed=seed or 0)[:int(round(seconds * c.sample_rate))]
        peak = float(np.abs(y).max()) if len(y) else 0.0
        if peak > 1.0:
            y = y / peak
        return AudioResult(y.astype(np.float32), c.sample_rate, 0, style or (self.styles[0] if self.styles else None),
                           time.time() - t0)
