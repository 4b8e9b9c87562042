"""REMI tokens (miditok) with programs, tempo, time signature and style tokens.

One token stream for all tracks: ``Bar TimeSig Position [Tempo] Program Pitch
Velocity Duration ...``. A piece starts with ``BOS`` and an optional
``Style_<name>`` token. miditok does the encoding and decoding; the grammar
below is ours because miditok only *checks* sequences after the fact, and the
engine needs to know, before sampling, which tokens are legal next.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import cached_property

import numpy as np
import symusic
from miditok import REMI, TokenizerConfig, TokSequence

from cadenza.errors import CadenzaError

DEFAULT_STYLES = ("folk", "chorale", "pop", "classical")


@dataclass
class RemiSpec:
    """Everything needed to rebuild the tokenizer; saved in the model's config.json."""

    styles: list[str] = field(default_factory=lambda: list(DEFAULT_STYLES))
    pitch_range: tuple[int, int] = (21, 109)
    positions_per_beat: int = 8  # 32nd notes in 4/4
    long_positions_per_beat: int = 4  # resolution for durations of 4-12 beats
    num_velocities: int = 8
    num_tempos: int = 32
    tempo_range: tuple[int, int] = (40, 250)
    scheme: str = "remi"

    def miditok_config(self) -> TokenizerConfig:
        specials = ["PAD", "BOS", "EOS"] + [f"Style_{s}" for s in self.styles]
        return TokenizerConfig(
            pitch_range=tuple(self.pitch_range),
            beat_res={(0, 4): self.positions_per_beat, (4, 12): self.long_positions_per_beat},
            num_velocities=self.num_velocities,
            special_tokens=specials,
            use_programs=True,
            one_token_stream_for_programs=True,
            use_tempos=True,
            num_tempos=self.num_tempos,
            tempo_range=tuple(self.tempo_range),
            use_time_signatures=True,
        )


# token types, as small ints for a fast grammar
(T_PAD, T_BOS, T_EOS, T_STYLE, T_BAR, T_TSIG, T_POS, T_TEMPO, T_PROG,
 T_PITCH, T_DRUM, T_VEL, T_DUR, T_NONE) = range(14)
_TYPE_OF = {
    "PAD": T_PAD, "BOS": T_BOS, "EOS": T_EOS, "Style": T_STYLE, "Bar": T_BAR,
    "TimeSig": T_TSIG, "Position": T_POS, "Tempo": T_TEMPO, "Program": T_PROG,
    "Pitch": T_PITCH, "PitchDrum": T_DRUM, "Velocity": T_VEL, "Duration": T_DUR,
}


class RemiState:
    """Grammar state of one sequence, plus the musical clock used for stopping."""

    __slots__ = ("tok", "last", "pos", "drum", "tsig", "bars", "beats", "seconds", "qpm", "notes",
                 "programs", "time_sigs")

    def __init__(self, tok: "RemiTokenizer", programs: frozenset[int] | None, time_sigs: frozenset[int] | None):
        self.tok = tok
        self.last = T_NONE
        self.pos = -1  # current position inside the bar
        self.drum = False
        self.tsig = (4, 4)
        self.bars = 0  # Bar tokens seen
        self.beats = 0.0  # quarter notes elapsed at the start of the current bar
        self.seconds = 0.0  # seconds elapsed at the start of the current bar
        self.qpm = tok.default_qpm  # what the decoder uses until a Tempo token
        self.notes = 0
        self.programs = programs  # allowed Program token ids, None = any
        self.time_sigs = time_sigs  # allowed TimeSig token ids, None = any

    def copy(self) -> "RemiState":
        new = RemiState.__new__(RemiState)
        for name in RemiState.__slots__:
            setattr(new, name, getattr(self, name))
        return new

    def bar_quarters(self) -> float:
        num, den = self.tsig
        return num * 4.0 / den

    def mask_key(self) -> tuple:
        return (self.last, self.pos if self.last in (T_POS, T_TEMPO, T_DUR) else -1,
                self.tsig if self.last in (T_POS, T_TEMPO, T_DUR) else None, self.drum)

    def complete(self) -> bool:
        return self.last in (T_DUR, T_TSIG, T_TEMPO, T_EOS, T_STYLE, T_BOS, T_POS, T_NONE) and self.last != T_POS

    def advance(self, token_id: int) -> None:
        tok = self.tok
        kind = tok.type_of[token_id]
        if kind == T_BAR:
            if self.bars > 0:  # close the previous bar on the clock
                q = self.bar_quarters()
                self.beats += q
                self.seconds += q * 60.0 / self.qpm
            self.bars += 1
            self.pos = -1
        elif kind == T_TSIG:
            self.tsig = tok.tsig_of[token_id]
        elif kind == T_POS:
            self.pos = tok.value_of[token_id]
        elif kind == T_TEMPO:
            self.qpm = float(tok.value_of[token_id])
        elif kind == T_PROG:
            self.drum = tok.value_of[token_id] == -1
        elif kind in (T_PITCH, T_DRUM):
            self.notes += 1
        self.last = kind


class RemiTokenizer:
    """miditok REMI behind cadenza's tokenizer protocol."""

    scheme = "remi"

    def __init__(self, spec: RemiSpec | None = None):
        self.spec = spec or RemiSpec()
        self._mt = REMI(self.spec.miditok_config())
        vocab = self._mt.vocab  # token string -> id
        self.vocab_size = len(vocab)
        self.id_to_token = [""] * self.vocab_size
        for t, i in vocab.items():
            self.id_to_token[i] = t
        self.pad_id, self.bos_id, self.eos_id = vocab["PAD_None"], vocab["BOS_None"], vocab["EOS_None"]
        self.style_ids = {s: vocab[f"Style_{s}"] for s in self.spec.styles}
        self.type_of = np.full(self.vocab_size, T_NONE, dtype=np.int8)
        self.value_of: list[float | int | None] = [None] * self.vocab_size
        self.tsig_of: dict[int, tuple[int, int]] = {}
        for i, t in enumerate(self.id_to_token):
            kind, _, val = t.partition("_")
            self.type_of[i] = _TYPE_OF[kind]
            if kind in ("Position", "Pitch", "PitchDrum", "Program", "Velocity"):
                self.value_of[i] = int(val)
            elif kind == "Tempo":
                self.value_of[i] = float(val)
            elif kind == "TimeSig":
                num, den = val.split("/")
                self.tsig_of[i] = (int(num), int(den))
        self.ids_of_type = {k: np.flatnonzero(self.type_of == k) for k in range(T_NONE)}
        self.program_id = {self.value_of[i]: int(i) for i in self.ids_of_type[T_PROG]}
        self.pitch_id = {self.value_of[i]: int(i) for i in self.ids_of_type[T_PITCH]}
        self.tsig_id = {v: k for k, v in self.tsig_of.items()}
        self.tempo_values = np.array([self.value_of[i] for i in self.ids_of_type[T_TEMPO]])
        self._masks: dict[tuple, np.ndarray] = {}

    # ---- protocol -------------------------------------------------------
    def to_config(self) -> dict:
        return asdict(self.spec)

    @classmethod
    def from_config(cls, cfg: dict) -> "RemiTokenizer":
        cfg = dict(cfg)
        for key in ("pitch_range", "tempo_range"):
            if key in cfg:
                cfg[key] = tuple(cfg[key])
        return cls(RemiSpec(**cfg))

    @property
    def styles(self) -> list[str]:
        return list(self.spec.styles)

    def header(self, style: str | None = None) -> list[int]:
        """``BOS`` plus the style token, the start of every sequence."""
        ids = [self.bos_id]
        if style is not None:
            if style not in self.style_ids:
                raise CadenzaError(f"unknown style '{style}': this model knows {', '.join(self.styles)}")
            ids.append(self.style_ids[style])
        return ids

    def encode(self, score: symusic.Score, style: str | None = None, eos: bool = False) -> list[int]:
        """Score -> ids, starting with the header; notes outside the pitch range are dropped by miditok."""
        seq = self._mt.encode(score)
        if isinstance(seq, list):  # defensive: one stream is configured, miditok may still wrap it
            seq = seq[0]
        ids = self.header(style) + list(seq.ids)
        if eos:
            ids.append(self.eos_id)
        return ids

    def decode(self, ids) -> symusic.Score:
        """ids -> Score (tpq 480). Special tokens are skipped; every note token group becomes a note."""
        body = [int(i) for i in ids if self.type_of[int(i)] not in (T_PAD, T_BOS, T_EOS, T_STYLE)]
        if not body:
            return symusic.Score(480)
        score = self._mt.decode(TokSequence(ids=body))
        return score.resample(480, min_dur=1)

    def tokens(self, ids) -> list[str]:
        return [self.id_to_token[int(i)] for i in ids]

    @property
    def pitch_ids(self) -> dict[int, int]:
        """Transposable pitch -> token id (drum pitches are PitchDrum tokens and never move)."""
        return self.pitch_id

    def window_starts(self, tokens: np.ndarray) -> np.ndarray:
        """Where a training window may start: at a Bar."""
        return np.flatnonzero(self.type_of[tokens] == T_BAR)

    # ---- grammar ---------------------------------------------------------
    def start_state(self, programs=None, time_signature=None) -> RemiState:
        """A fresh state; ``programs`` (GM numbers, -1 = drums) and ``time_signature`` constrain output."""
        prog_ids = None
        if programs is not None:
            prog_ids = frozenset(self.program_id[p] for p in programs)
        ts_ids = None
        if time_signature is not None:
            ts = tuple(time_signature)
            if ts not in self.tsig_id:
                known = ", ".join(f"{a}/{b}" for a, b in sorted(self.tsig_id))
                raise CadenzaError(f"unsupported meter {ts[0]}/{ts[1]}: this model knows {known}")
            ts_ids = frozenset([self.tsig_id[ts]])
        return RemiState(self, prog_ids, ts_ids)

    def positions_in_bar(self, tsig: tuple[int, int]) -> int:
        num, den = tsig
        # miditok counts positions per beat of the time signature's denominator
        return num * self.spec.positions_per_beat * 4 // den if den <= 4 else num * self.spec.positions_per_beat

    def allowed(self, state: RemiState) -> np.ndarray:
        key = state.mask_key() + (state.programs, state.time_sigs)
        mask = self._masks.get(key)
        if mask is None:
            mask = self._compute_mask(state)
            self._masks[key] = mask
        return mask

    def _compute_mask(self, st: RemiState) -> np.ndarray:
        m = np.zeros(self.vocab_size, dtype=bool)
        ids = self.ids_of_type

        def later_positions():
            n = self.positions_in_bar(st.tsig)
            for i in ids[T_POS]:
                if st.pos < self.value_of[i] < n:
                    m[i] = True

        def programs():
            if st.programs is None:
                m[ids[T_PROG]] = True
            else:
                m[list(st.programs)] = True

        last = st.last
        if last == T_NONE:
            m[self.bos_id] = True
        elif last == T_BOS:
            m[ids[T_STYLE]] = True
            m[ids[T_BAR]] = True
        elif last == T_STYLE:
            m[ids[T_BAR]] = True
        elif last == T_BAR:
            if st.time_sigs is None:
                m[ids[T_TSIG]] = True
            else:
                m[list(st.time_sigs)] = True
        elif last == T_TSIG:
            m[ids[T_POS]] = True
            m[ids[T_BAR]] = True
            m[self.eos_id] = True
        elif last == T_POS:
            m[ids[T_TEMPO]] = True
            programs()
        elif last == T_TEMPO:
            programs()
            later_positions()
            m[ids[T_BAR]] = True
            m[self.eos_id] = True
        elif last == T_PROG:
            m[ids[T_DRUM] if st.drum else ids[T_PITCH]] = True
        elif last in (T_PITCH, T_DRUM):
            m[ids[T_VEL]] = True
        elif last == T_VEL:
            m[ids[T_DUR]] = True
        elif last == T_DUR:
            programs()
            later_positions()
            m[ids[T_BAR]] = True
            m[self.eos_id] = True
        elif last == T_EOS:
            m[self.pad_id] = True
        return m

    def check(self, ids) -> list[str]:
        """Grammar errors of a sequence (empty when it is valid), for tests and data checks."""
        st = self.start_state()
        errors = []
        for n, i in enumerate(ids):
            if not self.allowed(st)[int(i)]:
                errors.append(f"token {n} {self.id_to_token[int(i)]} after {self.id_to_token[int(ids[n-1])] if n else 'start'}")
            st.advance(int(i))
        return errors

    @property
    def default_qpm(self) -> float:
        """The tempo miditok decodes a piece with before (or without) a Tempo token."""
        return float(getattr(self._mt, "default_tempo", 120.0))

    @cached_property
    def nearest_tempo_id(self):
        def find(qpm: float) -> int:
            k = int(np.argmin(np.abs(self.tempo_values - qpm)))
            return int(self.ids_of_type[T_TEMPO][k])
        return find
