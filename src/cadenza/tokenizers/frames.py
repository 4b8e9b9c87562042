"""Piano-roll frame tokens: each frame is its sounding pitches, lowest first, then an end-of-frame token.

This is the serialization of the polyphonic benchmark (Boulanger-Lewandowski et al. 2012; guide
section 1b): a piece is a sequence of binary frames over the 88 keys, and one sorted pitch order
per set makes the token sequence of a frame unique, so the model's token probabilities multiply
to an exact frame probability. The grammar allows only rising pitches inside a frame, so no
probability is spent on orders that cannot occur. A silent frame is a lone end-of-frame token.
Decoding joins a pitch sounding in consecutive frames into one held note (the roll has no onsets).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import symusic

from cadenza.errors import CadenzaError

PAD, BOS, EOS, EOF = 0, 1, 2, 3
N_SPECIAL = 4


@dataclass
class FrameSpec:
    pitch_range: tuple[int, int] = (21, 109)  # MIDI pitches [lo, hi): the 88 piano keys
    frame_quarters: float = 0.25  # one frame of the written score (a 16th note)
    scheme: str = "frames"


class FrameState:
    """Grammar state: the last pitch in the current frame (None at a frame start)."""

    __slots__ = ("frames", "last", "top")

    def __init__(self):
        self.frames, self.last, self.top = 0, None, None

    def copy(self) -> "FrameState":
        new = FrameState()
        new.frames, new.last, new.top = self.frames, self.last, self.top
        return new

    def mask_key(self) -> tuple:
        return (self.last is None, self.last == EOS, self.top)

    def advance(self, token_id: int) -> None:
        if token_id == EOF:
            self.frames += 1
            self.top = None
        elif token_id >= N_SPECIAL:
            self.top = token_id
        self.last = token_id

    def complete(self) -> bool:
        return self.top is None


class FrameTokenizer:
    """Binary piano-roll frames behind cadenza's tokenizer protocol."""

    scheme = "frames"

    def __init__(self, spec: FrameSpec | None = None):
        self.spec = spec or FrameSpec()
        lo, hi = self.spec.pitch_range
        self.lo, self.hi = lo, hi
        self.vocab_size = N_SPECIAL + (hi - lo)
        self.pad_id, self.bos_id, self.eos_id, self.eof_id = PAD, BOS, EOS, EOF
        self.styles: list[str] = []
        self.id_to_token = ["PAD", "BOS", "EOS", "EOF"] + [f"Pitch_{p}" for p in range(lo, hi)]
        self._masks: dict[tuple, np.ndarray] = {}

    def to_config(self) -> dict:
        return asdict(self.spec)

    @classmethod
    def from_config(cls, cfg: dict) -> "FrameTokenizer":
        cfg = dict(cfg)
        if "pitch_range" in cfg:
            cfg["pitch_range"] = tuple(cfg["pitch_range"])
        return cls(FrameSpec(**cfg))

    # ---- frames -----------------------------------------------------------
    def encode_frames(self, frames, bos: bool = True) -> list[int]:
        """frames: a list of pitch collections (one per frame) -> ids (BOS first)."""
        out = [BOS] if bos else []
        for k, f in enumerate(frames):
            ps = sorted({int(p) for p in f})
            for p in ps:
                if not self.lo <= p < self.hi:
                    raise CadenzaError(f"pitch {p} in frame {k} is outside this model's range {self.lo}-{self.hi - 1}")
                out.append(N_SPECIAL + p - self.lo)
            out.append(EOF)
        return out

    def decode_frames(self, ids) -> list[list[int]]:
        """ids -> frames; a trailing unfinished frame is dropped."""
        frames, cur = [], []
        for i in ids:
            i = int(i)
            if i == EOF:
                frames.append(cur)
                cur = []
            elif i >= N_SPECIAL:
                cur.append(i - N_SPECIAL + self.lo)
        return frames

    def frames_to_score(self, frames, tempo: float = 120.0, tpq: int = 480) -> symusic.Score:
        step = int(round(tpq * self.spec.frame_quarters))
        score = symusic.Score(tpq)
        score.tempos.append(symusic.Tempo(0, qpm=tempo))
        score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
        tr = symusic.Track("Piano", 0, False)
        active: dict[int, int] = {}  # pitch -> first frame
        for t, f in enumerate(list(frames) + [[]]):
            now = set(int(p) for p in f)
            for p in [p for p in active if p not in now]:
                s = active.pop(p)
                tr.notes.append(symusic.Note(s * step, (t - s) * step, p, 80))
            for p in now:
                active.setdefault(p, t)
        tr.notes.sort(key=lambda n: (n.start, n.pitch))
        score.tracks.append(tr)
        return score

    def score_to_frames(self, score: symusic.Score) -> list[list[int]]:
        """Every non-drum note of every track, sampled at frame steps (a note sounds in a frame it covers)."""
        step = score.tpq * self.spec.frame_quarters
        notes = [n for t in score.tracks if not t.is_drum for n in t.notes]
        if not notes:
            return []
        T = int(np.ceil(max(n.end for n in notes) / step))
        frames: list[set] = [set() for _ in range(T)]
        for n in notes:
            a = int(round(n.start / step))
            b = max(int(round(n.end / step)), a + 1)
            for t in range(a, min(b, T)):
                frames[t].add(int(n.pitch))
        return [sorted(f) for f in frames]

    def encode(self, score: symusic.Score, style: str | None = None, eos: bool = False) -> list[int]:
        ids = self.encode_frames(self.score_to_frames(score))
        return ids + [EOS] if eos else ids

    def decode(self, ids) -> symusic.Score:
        return self.frames_to_score(self.decode_frames(ids))

    def tokens(self, ids) -> list[str]:
        return [self.id_to_token[int(i)] for i in ids]

    def header(self, style: str | None = None) -> list[int]:
        return [BOS]

    @property
    def pitch_ids(self) -> dict[int, int]:
        return {p: N_SPECIAL + p - self.lo for p in range(self.lo, self.hi)}

    def window_starts(self, tokens: np.ndarray) -> np.ndarray:
        """Where a window may start: the first token of a frame (after BOS or an end-of-frame)."""
        tokens = np.asarray(tokens)
        prev = np.concatenate([[PAD], tokens[:-1]])
        return np.flatnonzero(((prev == BOS) | (prev == EOF)) & (tokens != PAD) & (tokens != EOS))

    # ---- grammar ------------------------------------------------------------
    def start_state(self, **_constraints) -> FrameState:
        return FrameState()

    def allowed(self, state: FrameState) -> np.ndarray:
        key = state.mask_key()
        m = self._masks.get(key)
        if m is None:
            m = np.zeros(self.vocab_size, dtype=bool)
            if state.last is None:
                m[BOS] = True
            elif state.last == EOS:
                m[PAD] = True
            else:
                m[(state.top + 1) if state.top is not None else N_SPECIAL:] = True
                m[EOF] = True
                m[EOS] = state.top is None
            self._masks[key] = m
        return m

    def frame_count(self, ids) -> int:
        return int(np.sum(np.asarray(ids) == EOF))
