"""Audio codec tokens: each code frame's ``n_q`` residual codes in order, after a BOS and a style token.

The codec (``cadenza.audio.codec``) turns every 32 ms of sound into ``n_q`` codes, one per residual
codebook; they are flattened frame by frame (MusicGen's "flattened" pattern: exact, and the one
that needs no change to a decoder-only transformer). Each codebook has its own block of ids, and the
grammar allows at position k of a frame only codebook k's block, so every sequence decodes to whole
frames. The tokenizer speaks the protocol (grammar, header, config) but reads code arrays, not scores.
Nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from cadenza.errors import CadenzaError

PAD, BOS, EOS = 0, 1, 2
N_SPECIAL = 3


@dataclass
class AudioSpec:
    n_q: int = 4
    codebook_size: int = 256
    styles: list[str] = field(default_factory=list)
    scheme: str = "audio"


class AudioState:
    """Grammar state: code tokens since the header (the codebook due next is ``codes % n_q``)."""

    __slots__ = ("codes", "n_q", "code_base")

    def __init__(self, n_q: int, code_base: int):
        self.codes, self.n_q, self.code_base = 0, n_q, code_base

    def copy(self) -> "AudioState":
        new = AudioState(self.n_q, self.code_base)
        new.codes = self.codes
        return new

    def mask_key(self) -> tuple:
        return (self.codes % self.n_q,)

    def advance(self, token_id: int) -> None:
        if token_id >= self.code_base:  # BOS and the style token are not codes
            self.codes += 1

    def complete(self) -> bool:
        return self.codes % self.n_q == 0


class AudioTokenizer:
    scheme = "audio"

    def __init__(self, spec: AudioSpec | None = None):
        self.spec = spec = spec or AudioSpec()
        self.n_q, self.size = spec.n_q, spec.codebook_size
        self.styles = list(spec.styles)
        self.style_base = N_SPECIAL
        self.code_base = N_SPECIAL + len(self.styles)
        self.vocab_size = self.code_base + self.n_q * self.size
        self.pad_id, self.bos_id, self.eos_id = PAD, BOS, EOS
        self._masks: dict[tuple, np.ndarray] = {}

    def to_config(self) -> dict:
        return asdict(self.spec)

    @classmethod
    def from_config(cls, cfg: dict) -> "AudioTokenizer":
        return cls(AudioSpec(**{k: v for k, v in cfg.items() if k in AudioSpec.__dataclass_fields__}))

    # ---- protocol ------------------------------------------------------------------------------
    def encode(self, score, style: str | None = None) -> list[int]:
        raise CadenzaError("this is an audio model: it continues recordings, not scores (use `cadenza audio`)")

    decode = encode

    def header(self, style: str | None = None) -> list[int]:
        if not self.styles:
            return [BOS]
        if style is None:
            style = self.styles[0]
        if style not in self.styles:
            raise CadenzaError(f"unknown style '{style}' (this audio model knows: {', '.join(self.styles)})")
        return [BOS, self.style_base + self.styles.index(style)]

    def start_state(self, **constraints) -> AudioState:
        return AudioState(self.n_q, self.code_base)

    def allowed(self, state: AudioState) -> np.ndarray:
        key = state.mask_key()
        m = self._masks.get(key)
        if m is None:
            m = np.zeros(self.vocab_size, dtype=bool)
            q = key[0]
            m[self.code_base + q * self.size: self.code_base + (q + 1) * self.size] = True
            self._masks[key] = m
        return m

    @property
    def pitch_ids(self) -> dict[int, int]:
        return {}

    # ---- codes ---------------------------------------------------------------------------------
    def encode_codes(self, codes: np.ndarray, style: str | None = None, header: bool = True) -> list[int]:
        """codes (n_q, T) -> ids: the header (if asked), then frame by frame, codebook by codebook."""
        codes = np.asarray(codes, dtype=np.int64)
        if codes.ndim != 2 or codes.shape[0] != self.n_q:
            raise CadenzaError(f"expected codes of shape ({self.n_q}, frames), got {codes.shape}")
        if codes.size and (codes.min() < 0 or codes.max() >= self.size):
            raise CadenzaError(f"codes must be in 0..{self.size - 1}")
        offsets = self.code_base + self.size * np.arange(self.n_q)[:, None]
        body = (codes + offsets).T.reshape(-1).tolist()
        return (self.header(style) if header else []) + body

    def decode_codes(self, ids) -> np.ndarray:
        """ids -> codes (n_q, T); header tokens are skipped and a trailing unfinished frame dropped."""
        ids = np.asarray([int(i) for i in ids if int(i) >= self.code_base], dtype=np.int64)
        n = len(ids) // self.n_q * self.n_q
        flat = ids[:n].reshape(-1, self.n_q) - self.code_base
        codes = flat - self.size * np.arange(self.n_q)[None, :]
        if codes.size and (codes.min() < 0 or codes.max() >= self.size):
            raise CadenzaError("token sequence has codes out of their codebook's place")
        return codes.T.copy()
