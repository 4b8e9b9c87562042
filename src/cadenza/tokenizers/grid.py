"""Chorale grid tokens: Music Transformer's JSB serialization (Huang et al. 2019, sec. 3.1).

A chorale is a 4 x T grid (soprano, alto, tenor, bass at 16th-note steps). It is
read voice by voice within a step, then time advances: S1 A1 T1 B1 S2 A2 ...
One token per cell: a pitch or REST. There is no hold token, because the JSB data
does not tell a held note from a repeated one; decoding therefore joins equal
consecutive cells of a voice into one held note.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import symusic

from cadenza.errors import CadenzaError

VOICES = ("Soprano", "Alto", "Tenor", "Bass")
STEP_QUARTERS = 0.25  # a 16th note
PAD, BOS, EOS, REST = 0, 1, 2, 3
N_SPECIAL = 4


@dataclass
class GridSpec:
    pitch_range: tuple[int, int] = (21, 109)  # MIDI pitches [lo, hi)
    voices: int = 4
    scheme: str = "grid"


class GridState:
    """Grammar state: how many cells have been written (the voice is cells % voices)."""

    __slots__ = ("cells", "last", "voices")

    def __init__(self, voices: int):
        self.cells, self.last, self.voices = 0, None, voices

    def copy(self) -> "GridState":
        new = GridState(self.voices)
        new.cells, new.last = self.cells, self.last
        return new

    def mask_key(self) -> tuple:
        return (self.last is None, self.last == EOS, self.cells % self.voices == 0)

    def advance(self, token_id: int) -> None:
        if token_id >= REST:
            self.cells += 1
        self.last = token_id

    def complete(self) -> bool:
        return self.cells % self.voices == 0

    @property
    def steps(self) -> int:
        return self.cells // self.voices


class GridTokenizer:
    """The chorale grid behind cadenza's tokenizer protocol."""

    scheme = "grid"

    def __init__(self, spec: GridSpec | None = None):
        self.spec = spec or GridSpec()
        lo, hi = self.spec.pitch_range
        self.lo, self.hi = lo, hi
        self.vocab_size = N_SPECIAL + (hi - lo)
        self.pad_id, self.bos_id, self.eos_id, self.rest_id = PAD, BOS, EOS, REST
        self.styles: list[str] = []
        self.id_to_token = ["PAD", "BOS", "EOS", "REST"] + [f"Pitch_{p}" for p in range(lo, hi)]
        self._masks: dict[tuple, np.ndarray] = {}

    def to_config(self) -> dict:
        return asdict(self.spec)

    @classmethod
    def from_config(cls, cfg: dict) -> "GridTokenizer":
        cfg = dict(cfg)
        if "pitch_range" in cfg:
            cfg["pitch_range"] = tuple(cfg["pitch_range"])
        return cls(GridSpec(**cfg))

    # ---- grids ------------------------------------------------------------
    def pitch_id(self, pitch: int) -> int:
        if not self.lo <= pitch < self.hi:
            raise CadenzaError(f"pitch {pitch} is outside this model's range {self.lo}-{self.hi - 1}")
        return N_SPECIAL + pitch - self.lo

    def encode_grid(self, grid, bos: bool = True) -> list[int]:
        """grid: (T, voices) MIDI pitches, -1 = rest -> ids (BOS first), voice by voice within a step."""
        g = np.asarray(grid, dtype=np.int64).reshape(-1)
        ids = np.where(g < 0, REST, N_SPECIAL + g - self.lo)
        if ((g >= 0) & ((g < self.lo) | (g >= self.hi))).any():
            bad = int(g[(g >= 0) & ((g < self.lo) | (g >= self.hi))][0])
            raise CadenzaError(f"pitch {bad} is outside this model's range {self.lo}-{self.hi - 1}")
        return ([BOS] if bos else []) + ids.tolist()

    def decode_grid(self, ids) -> np.ndarray:
        """ids -> (T, voices) grid; special tokens are skipped, a trailing partial step is dropped."""
        cells = [int(i) for i in ids if int(i) >= REST]
        v = self.spec.voices
        cells = cells[: len(cells) // v * v]
        arr = np.array(cells, dtype=np.int64).reshape(-1, v)
        return np.where(arr == REST, -1, arr - N_SPECIAL + self.lo)

    # ---- scores -------------------------------------------------------------
    def grid_to_score(self, grid, tempo: float = 80.0, tpq: int = 480) -> symusic.Score:
        grid = np.asarray(grid)
        step = int(tpq * STEP_QUARTERS)
        score = symusic.Score(tpq)
        score.tempos.append(symusic.Tempo(0, qpm=tempo))
        score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
        for v in range(grid.shape[1] if grid.ndim == 2 else 0):
            name = VOICES[v] if v < len(VOICES) else f"Voice {v + 1}"
            tr = symusic.Track(name, 52, False)  # GM 52: choir aahs
            col = grid[:, v]
            t = 0
            while t < len(col):
                if col[t] < 0:
                    t += 1
                    continue
                u = t + 1
                while u < len(col) and col[u] == col[t]:
                    u += 1
                tr.notes.append(symusic.Note(t * step, (u - t) * step, int(col[t]), 80))
                t = u
            score.tracks.append(tr)
        return score

    def score_to_grid(self, score: symusic.Score) -> np.ndarray:
        """Four tracks (soprano first) -> (T, 4) grid at 16th notes; the highest note wins a cell."""
        v = self.spec.voices
        tracks = [t for t in score.tracks if len(t.notes) and not t.is_drum]
        if len(tracks) != v:
            raise CadenzaError(f"a chorale needs {v} voices (tracks), this score has {len(tracks)}")
        tracks.sort(key=lambda t: -np.mean([n.pitch for n in t.notes]))
        step = score.tpq * STEP_QUARTERS
        T = int(np.ceil(max(t.end() for t in tracks) / step))
        grid = -np.ones((T, v), dtype=np.int64)
        for j, tr in enumerate(tracks):
            for n in tr.notes:
                a, b = int(round(n.start / step)), max(int(round(n.end / step)), int(round(n.start / step)) + 1)
                cur = grid[a:b, j]
                grid[a:b, j] = np.maximum(cur, n.pitch)
        return grid

    def encode(self, score: symusic.Score, style: str | None = None, eos: bool = False) -> list[int]:
        ids = self.encode_grid(self.score_to_grid(score))
        return ids + [EOS] if eos else ids

    def decode(self, ids) -> symusic.Score:
        return self.grid_to_score(self.decode_grid(ids))

    def tokens(self, ids) -> list[str]:
        return [self.id_to_token[int(i)] for i in ids]

    def header(self, style: str | None = None) -> list[int]:
        return [BOS]

    @property
    def pitch_ids(self) -> dict[int, int]:
        return {p: N_SPECIAL + p - self.lo for p in range(self.lo, self.hi)}

    def window_starts(self, tokens: np.ndarray) -> np.ndarray:
        """Where a training window may start: at the soprano cell of a time step."""
        tokens = np.asarray(tokens)
        is_cell = tokens >= REST
        bos = np.flatnonzero(tokens == BOS)
        out = []
        for k, b in enumerate(bos):
            e = bos[k + 1] if k + 1 < len(bos) else len(tokens)
            cells = np.flatnonzero(is_cell[b:e]) + b
            out.append(cells[:: self.spec.voices])
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    # ---- grammar ------------------------------------------------------------
    def start_state(self, **_constraints) -> GridState:
        return GridState(self.spec.voices)

    def allowed(self, state: GridState) -> np.ndarray:
        key = state.mask_key()
        m = self._masks.get(key)
        if m is None:
            m = np.zeros(self.vocab_size, dtype=bool)
            if state.last is None:
                m[BOS] = True
            elif state.last == EOS:
                m[PAD] = True
            else:
                m[REST:] = True
                m[EOS] = state.complete()
            self._masks[key] = m
        return m
