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
    # conditioning the model reads before the notes it writes: "key" (a Key token in the header),
    # "instruments" (one Inst token per instrument in the header), "chords" (a Chord token after
    # each bar's TimeSig: the harmony of the bar about to be written) and "infill": given material
    # first in each bar (``Given`` notes ``Free`` notes: the melody to accompany, the tracks kept
    # while others are rewritten) and bars from after a gap up front (``Future`` bars ``Now``: the
    # music an infill must lead into). Empty for the first models.
    controls: list[str] = field(default_factory=list)

    def miditok_config(self) -> TokenizerConfig:
        from cadenza.score.harmony import PITCH_CLASSES, chord_vocabulary

        specials = ["PAD", "BOS", "EOS"] + [f"Style_{s}" for s in self.styles]
        unknown = set(self.controls) - set(CONTROLS)
        if unknown:
            raise CadenzaError(f"unknown tokenizer controls {sorted(unknown)} (known: {', '.join(CONTROLS)})")
        if "key" in self.controls:
            specials += [f"Key_{pc}:{mode}" for mode in ("major", "minor") for pc in PITCH_CLASSES]
        if "instruments" in self.controls:
            specials += [f"Inst_{p}" for p in range(128)] + ["Inst_drums"]
        if "chords" in self.controls:
            specials += [f"Chord_{c}" for c in chord_vocabulary()]
        if "infill" in self.controls:
            specials += ["Given", "Free", "Future", "Now"]
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


CONTROLS = ("key", "instruments", "chords", "infill")

# token types, as small ints for a fast grammar (T_NONE: "nothing yet", never a token's type)
(T_PAD, T_BOS, T_EOS, T_STYLE, T_BAR, T_TSIG, T_POS, T_TEMPO, T_PROG,
 T_PITCH, T_DRUM, T_VEL, T_DUR, T_NONE, T_KEY, T_INST, T_CHORD, T_GIVEN, T_FREE, T_FUTURE, T_NOW) = range(21)
TOKEN_TYPES = [t for t in range(21) if t != T_NONE]
MARKER_TYPES = (T_GIVEN, T_FREE, T_FUTURE, T_NOW)
# A writing model may put at most this many notes at one position (all instruments), and on one
# instrument at most as many as its player sounds at once (``cadenza.score.roles.max_at_once``: one
# for a bass or a wind, ten for a piano; never more than MAX_NOTES_PER_PROGRAM), each pitch once, and
# only inside the instrument's range: the bundled model, taught chords on basses by re-instrumented
# training windows, wrote 11-note "bass" clusters from MIDI 26 to 105. A checked or scored sequence
# (reading) is not capped. Orchestral tutti and a piano's two hands stay well under.
HOLD_TEMPO = -1.0  # start_state(fixed_tempo=HOLD_TEMPO): the model's first Tempo token is the piece's tempo
MAX_NOTES_AT_ONCE = 24
MAX_NOTES_PER_PROGRAM = 12
HEADER_TYPES = (T_BOS, T_STYLE, T_KEY, T_INST)
_TYPE_OF = {
    "PAD": T_PAD, "BOS": T_BOS, "EOS": T_EOS, "Style": T_STYLE, "Bar": T_BAR,
    "TimeSig": T_TSIG, "Position": T_POS, "Tempo": T_TEMPO, "Program": T_PROG,
    "Pitch": T_PITCH, "PitchDrum": T_DRUM, "Velocity": T_VEL, "Duration": T_DUR,
    "Key": T_KEY, "Inst": T_INST, "Chord": T_CHORD,
    "Given": T_GIVEN, "Free": T_FREE, "Future": T_FUTURE, "Now": T_NOW,
}


def _duration_beats(token: str) -> float:
    """'Duration_1.4.8' -> 1.5: B beats + P/R beat, a beat being the meter's denominator."""
    b, p, r = (int(x) for x in token.split("_", 1)[1].split("."))
    return b + p / r


class RemiState:
    """Grammar state of one sequence, plus the musical clock used for stopping."""

    __slots__ = ("tok", "last", "pos", "drum", "tsig", "bars", "beats", "seconds", "qpm", "notes",
                 "programs", "time_sigs", "insts", "last_inst", "plan", "forced", "pending", "given", "future",
                 "reading", "pos_notes", "cur_prog", "fixed_tempo", "bar_secs", "tempo_q")

    def __init__(self, tok: "RemiTokenizer", programs: frozenset[int] | None, time_sigs: frozenset[int] | None,
                 plan: dict[int, list[int]] | None = None):
        self.tok = tok
        self.last = T_NONE
        self.pos = -1  # current position inside the bar
        self.drum = False
        self.tsig = (4, 4)
        self.bars = 0  # Bar tokens seen
        self.beats = 0.0  # quarter notes elapsed at the start of the current bar
        self.seconds = 0.0  # seconds elapsed at the start of the current bar
        # the current bar's tempo changes: seconds up to its last Tempo, at quarter note ``tempo_q`` of it
        # (a bar whose tempo changes went on the clock at its last tempo: 240 s asked gave 243.6)
        self.bar_secs, self.tempo_q = 0.0, 0.0
        self.qpm = tok.default_qpm  # what the decoder uses until a Tempo token
        self.notes = 0
        self.programs = programs  # allowed Program token ids, None = any
        self.time_sigs = time_sigs  # allowed TimeSig token ids, None = any
        self.insts: frozenset[int] | None = None  # Program token ids of the header's Inst tokens
        self.last_inst = -2  # the last Inst value (they come in ascending order, drums = -1 first)
        self.plan = plan  # bar number (1-based) -> the tokens that must follow that bar's TimeSig
        self.forced: tuple[int, ...] = ()  # tokens that must come next, in order
        self.pending: tuple[int, ...] = ()  # forced after this bar's Chord (a plan of given notes only)
        self.given = False  # inside a bar's given block (Given ... Free)
        self.future = False  # inside the bars from after a gap (Future ... Now)
        # reading a sequence (data, a prompt being scored) rather than writing one: only then may
        # Given and Future blocks open where nothing forces them. They are material a user gives;
        # a model that opened one itself would write "given" notes or bars off the clock (a piece
        # that never reaches its length)
        self.reading = False
        # (Program token id, pitch token id) of each note at the current position (for the caps and
        # so that no instrument strikes one pitch twice at once); immutable, so copies share it safely
        self.pos_notes: tuple[tuple[int, int], ...] = ()
        self.cur_prog = -1  # the current Program token id
        # the tempo (qpm) asked for or the prompt's, else 0: the model then writes no Tempo token of its
        # own, and the clock runs at this exact tempo (a Tempo token holds the nearest of 32 values).
        # HOLD_TEMPO (-1): the model's first Tempo token becomes the piece's fixed tempo
        self.fixed_tempo = 0.0

    def copy(self) -> "RemiState":
        new = RemiState.__new__(RemiState)
        for name in RemiState.__slots__:
            setattr(new, name, getattr(self, name))
        return new

    def bar_quarters(self) -> float:
        num, den = self.tsig
        return num * 4.0 / den

    def bar_end_seconds(self) -> float:
        """Seconds from the start at the end of the current bar, its tempo staying as it is now."""
        return self.seconds + self.bar_secs + (self.bar_quarters() - self.tempo_q) * 60.0 / self.qpm

    def mask_key(self) -> tuple:
        if self.forced:
            return ("forced", self.forced[0])
        return (self.last, self.pos if self.last in (T_POS, T_TEMPO, T_DUR) else -1,
                self.tsig if self.last in (T_POS, T_TEMPO, T_DUR, T_CHORD, T_TSIG, T_GIVEN, T_FREE) else None,
                self.drum,
                self.last_inst if self.last == T_INST else None,  # (reading is in the key too)
                self.insts if self.last in (T_POS, T_TEMPO, T_DUR) else None, self.given, self.future,
                self.reading, self.capped() if self.last == T_DUR else None,
                self.cur_prog if self.last == T_PROG and not self.reading else None,
                (self.fixed_tempo > 0) - (self.fixed_tempo < 0) if self.last == T_POS else None)

    def capped(self):
        """While writing: "full" when a position holds MAX_NOTES_AT_ONCE notes, else the Program token
        ids whose notes at this position reached their instrument's cap (a frozenset), or None."""
        if self.reading or not self.pos_notes:
            return None
        if len(self.pos_notes) >= MAX_NOTES_AT_ONCE:
            return "full"
        counts: dict[int, int] = {}
        for p, _ in self.pos_notes:
            counts[p] = counts.get(p, 0) + 1
        cap = self.tok.at_once
        full = frozenset(p for p, c in counts.items() if c >= cap.get(p, MAX_NOTES_PER_PROGRAM))
        return full or None

    def complete(self) -> bool:
        """True where the piece may end (EOS may come next)."""
        return self.last in (T_DUR, T_TSIG, T_TEMPO, T_EOS, T_STYLE, T_BOS, T_NONE, T_KEY, T_INST, T_CHORD,
                             T_FREE) and not (self.last == T_TSIG and self.tok.chords_on) \
            and not self.forced and not self.given and not self.future

    def advance(self, token_id: int) -> None:
        tok = self.tok
        kind = tok.type_of[token_id]
        if self.forced:
            self.forced = self.forced[1:]
        if kind == T_BAR:
            if self.bars > 0 and not self.future:  # close the previous bar on the clock
                self.beats += self.bar_quarters()
                self.seconds = self.bar_end_seconds()
                self.bar_secs, self.tempo_q = 0.0, 0.0
            if not self.future:  # the bars after a gap are context: the clock is the piece's own
                self.bars += 1
            self.pos = -1
            self.pos_notes = ()
        elif kind == T_TSIG:
            self.tsig = tok.tsig_of[token_id]
            if self.plan and not self.future:
                todo = tuple(self.plan.get(self.bars, ()))
                if todo and tok.chords_on and tok.type_of[todo[0]] != T_CHORD:
                    self.pending = todo  # the model chooses the chord, then the given block follows
                else:
                    self.forced = todo
        elif kind == T_CHORD and self.pending:
            self.forced, self.pending = self.pending, ()
        elif kind in (T_GIVEN, T_FREE):
            self.given = kind == T_GIVEN
            self.pos = -1
            self.pos_notes = ()
        elif kind == T_FUTURE:
            self.future = True
        elif kind == T_NOW:
            self.future = False
        elif kind == T_POS:
            self.pos = tok.value_of[token_id]
            self.pos_notes = ()
        elif kind == T_TEMPO and not self.future:
            at = max(self.pos, 0) / tok.positions_in_bar(self.tsig) * self.bar_quarters()
            self.bar_secs += (at - self.tempo_q) * 60.0 / self.qpm
            self.tempo_q = at
            self.qpm = self.fixed_tempo if self.fixed_tempo > 0 else float(tok.value_of[token_id])
            if self.fixed_tempo < 0 and not self.reading:  # HOLD_TEMPO: the first one is the piece's tempo
                self.fixed_tempo = self.qpm
        elif kind == T_PROG:
            self.drum = tok.value_of[token_id] == -1
            self.cur_prog = token_id
        elif kind in (T_PITCH, T_DRUM):
            self.notes += 1
            self.pos_notes = self.pos_notes + ((self.cur_prog, token_id),)
        elif kind == T_INST:
            p = tok.value_of[token_id]
            self.last_inst = p
            self.insts = (self.insts or frozenset()) | {tok.program_id[p]}
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
            elif kind == "Inst":
                self.value_of[i] = -1 if val == "drums" else int(val)
        self.ids_of_type = {k: np.flatnonzero(self.type_of == k) for k in TOKEN_TYPES}
        self.key_on, self.insts_on, self.chords_on, self.infill_on = (c in self.spec.controls for c in CONTROLS)
        ids_of = lambda name: int(vocab[name]) if name in vocab else None  # noqa: E731
        self.given_id, self.free_id, self.future_id, self.now_id = (ids_of(f"{n}_None") for n in
                                                                    ("Given", "Free", "Future", "Now"))
        self._init_controls(vocab)
        self.program_id = {self.value_of[i]: int(i) for i in self.ids_of_type[T_PROG]}
        self.pitch_id = {self.value_of[i]: int(i) for i in self.ids_of_type[T_PITCH]}
        self.tsig_id = {v: k for k, v in self.tsig_of.items()}
        self.tempo_values = np.array([self.value_of[i] for i in self.ids_of_type[T_TEMPO]])
        self._masks: dict[tuple, np.ndarray] = {}
        # Duration token id -> its length in beats of the meter's denominator ("Duration_B.P.R": B beats
        # + P/R beat), for the streaming decoder and the end-of-piece duration mask
        self._dur_ids = self.ids_of_type[T_DUR]
        self._dur_beats = np.array([_duration_beats(self.id_to_token[i]) for i in self._dur_ids])
        self.duration_beats = dict(zip(map(int, self._dur_ids), self._dur_beats.tolist()))
        self._init_roles()

    def _init_roles(self) -> None:
        """Per Program token id: the pitch token ids inside the instrument's range and how many notes it
        may sound at once (``cadenza.score.roles``), for a writing model."""
        from cadenza.score.roles import max_at_once, range_of

        pitch_ids = self.ids_of_type[T_PITCH]
        pitch_vals = np.array([self.value_of[i] for i in pitch_ids])
        self.in_range: dict[int, np.ndarray] = {}
        self.at_once: dict[int, int] = {}
        for p, i in self.program_id.items():
            if p == -1:
                self.at_once[i] = min(max_at_once(0, True), MAX_NOTES_PER_PROGRAM)
                continue
            lo, hi = range_of(int(p))
            self.in_range[i] = pitch_ids[(pitch_vals >= lo) & (pitch_vals <= hi)]
            self.at_once[i] = min(max_at_once(int(p)), MAX_NOTES_PER_PROGRAM)

    def _init_controls(self, vocab: dict[str, int]) -> None:
        from cadenza.score.harmony import PITCH_CLASSES, chord_label, parse_chord

        self.key_id: dict[tuple[int, str], int] = {}
        self.key_of: dict[int, tuple[int, str]] = {}
        for pc, name in enumerate(PITCH_CLASSES):
            for mode in ("major", "minor"):
                i = vocab.get(f"Key_{name}:{mode}")
                if i is not None:
                    self.key_id[(pc, mode)], self.key_of[i] = i, (pc, mode)
        self.inst_id = {self.value_of[i]: int(i) for i in self.ids_of_type[T_INST]}
        self.chord_of: dict[int, tuple[int, str] | None] = {}
        self.chord_id: dict[str, int] = {}
        for i in self.ids_of_type[T_CHORD]:
            label = self.id_to_token[i].split("_", 1)[1]
            self.chord_of[int(i)] = parse_chord(label)
            self.chord_id[label] = int(i)
        self._chord_label = chord_label
        # token id -> its id a semitone up (keys and chords turn around the circle; others stay)
        up = np.arange(self.vocab_size)
        for (pc, mode), i in self.key_id.items():
            up[i] = self.key_id[((pc + 1) % 12, mode)]
        for i, ch in self.chord_of.items():
            if ch is not None:
                up[i] = self.chord_id[chord_label(((ch[0] + 1) % 12, ch[1]))]
        self._rotations = [np.arange(self.vocab_size)]  # [k]: token id -> its id k semitones up
        for _ in range(11):
            self._rotations.append(up[self._rotations[-1]])

    def rotate_controls(self, ids: np.ndarray, semitones: int) -> np.ndarray:
        """Key and Chord tokens moved by ``semitones`` (for transposition; pitches are moved elsewhere)."""
        return self._rotations[semitones % 12][ids]

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

    def header(self, style: str | None = None, key: tuple[int, str] | None = None,
               instruments=None) -> list[int]:
        """The start of every sequence: ``BOS``, then the style, the key and the instruments (programs,
        -1 = drums) where given and where the tokenizer has those controls."""
        ids = [self.bos_id]
        if style is not None:
            if style not in self.style_ids:
                raise CadenzaError(f"unknown style '{style}': this model knows {', '.join(self.styles)}")
            ids.append(self.style_ids[style])
        if key is not None and self.key_on:
            ids.append(self.key_id[(int(key[0]) % 12, key[1])])
        if instruments is not None and self.insts_on:
            ids.extend(self.inst_id[p] for p in sorted(set(int(p) for p in instruments)))
        return ids

    def header_len(self, ids) -> int:
        """How many leading tokens of ``ids`` are its header."""
        n = 0
        while n < len(ids) and self.type_of[int(ids[n])] in HEADER_TYPES:
            n += 1
        return n

    def encode(self, score: symusic.Score, style: str | None = None, eos: bool = False, key="auto",
               chords="auto", instruments="auto", given: list[int] | None = None) -> list[int]:
        """Score -> ids, starting with the header; notes outside the pitch range are dropped by miditok.

        With the tokenizer's controls: ``key`` ((tonic pitch class, mode), None, or "auto": estimated),
        ``instruments`` (programs, -1 = drums; "auto": those that play) and ``chords`` (one per bar,
        (root, quality) or None; "auto": recognized from the notes) are written into the sequence.
        ``given`` (track indices; "infill" control): every bar starts with those tracks' notes in a
        ``Given ... Free`` block, then the other tracks' notes.
        """
        body = self._body(score)
        if given is not None:
            if not self.infill_on:
                raise CadenzaError("this tokenizer has no infill control: it cannot mark given tracks")
            body = self._with_given(score, body, set(given))
        if self.key_on and isinstance(key, str):
            from cadenza.score.keys import estimate_key

            key = estimate_key(score)
        if self.insts_on and isinstance(instruments, str):
            instruments = sorted({-1 if t.is_drum else int(t.program) for t in score.tracks if len(t.notes)})
        if self.chords_on:
            body = self._with_chords(score, body, chords)
        ids = self.header(style, key if self.key_on else None, instruments if self.insts_on else None) + body
        if eos:
            ids.append(self.eos_id)
        return ids

    def _body(self, score: symusic.Score) -> list[int]:
        seq = self._mt.encode(score)
        if isinstance(seq, list):  # defensive: one stream is configured, miditok may still wrap it
            seq = seq[0]
        return list(seq.ids)

    def split_bars(self, body) -> list[list[int]]:
        """Token ids cut at each Bar: one list per bar, each starting with its Bar token (tokens before
        the first Bar, if any, are dropped)."""
        bars: list[list[int]] = []
        for t in body:
            if self.type_of[t] == T_BAR:
                bars.append([])
            if bars:
                bars[-1].append(int(t))
        return bars

    def _notes_only(self, bar: list[int]) -> list[int]:
        """A bar's notes with their positions, without Bar/TimeSig/Tempo (a given block carries no tempo)."""
        out, pos = [], None
        for t in bar:
            kind = self.type_of[t]
            if kind == T_POS:
                pos = t
            elif kind == T_PROG:
                if pos is not None:
                    out.append(pos)
                    pos = None
                out.append(t)
            elif kind in (T_PITCH, T_DRUM, T_VEL, T_DUR):
                out.append(t)
        return out

    def given_blocks(self, score: symusic.Score, n_bars: int | None = None) -> dict[int, list[int]]:
        """{bar number from 1: ``Given`` + that bar's notes of ``score`` + ``Free``}, for every bar up to
        ``n_bars`` (default: the score's own), empty bars included: the plan ``start_state(given=)`` forces."""
        bars = self.split_bars(self._body(score)) if score.note_num() else []
        n = len(bars) if n_bars is None else n_bars
        return {k + 1: [self.given_id] + (self._notes_only(bars[k]) if k < len(bars) else []) + [self.free_id]
                for k in range(n)}

    def _with_given(self, score: symusic.Score, body: list[int], given: set[int]) -> list[int]:
        tick = score if str(score.ttype).endswith("Tick") else score.to("tick")
        part = tick.copy()
        part.tracks = [t for k, t in enumerate(tick.tracks) if k in given]
        rest = tick.copy()
        rest.tracks = [t for k, t in enumerate(tick.tracks) if k not in given]
        full = self.split_bars(body)
        blocks = self.given_blocks(part, len(full))
        free = self.split_bars(self._body(rest)) if rest.note_num() else []
        out = []
        for k, bar in enumerate(full):
            head = bar[:2]  # Bar TimeSig
            # the free part keeps this bar's tempo changes; without free notes, the full bar's tempo tokens
            tail = free[k][2:] if k < len(free) else [t for j, t in enumerate(bar) if self.type_of[t] == T_TEMPO
                                                        or (self.type_of[t] == T_POS and j + 1 < len(bar)
                                                            and self.type_of[bar[j + 1]] == T_TEMPO)]
            out += head + blocks[k + 1] + tail
        return out

    def free_part(self, ids) -> list[int]:
        """``ids`` without the given blocks' notes and markers and without the bars after a gap:
        what the model wrote itself (with the bars' structure, so it still decodes in place)."""
        out, given, future = [], False, False
        for t in map(int, ids):
            kind = self.type_of[t]
            if kind == T_GIVEN:
                given = True
            elif kind == T_FREE:
                given = False
            elif kind == T_FUTURE:
                future = True
            elif kind == T_NOW:
                future = False
            elif not (given or future):
                out.append(t)
        return out

    def future_first(self, ids, gap_start: int, gap_end: int, n_future: int = 4) -> list[int]:
        """An infill prompt from a whole sequence: header, ``Future``, the ``n_future`` bars from bar
        ``gap_end`` on (0-based bar indices), ``Now``, then the bars before ``gap_start``. A model with
        the infill control then writes bars ``gap_start`` .. ``gap_end - 1`` leading into the future."""
        h = self.header_len(ids)
        bars = self.split_bars(ids[h:])
        if bars and self.type_of[bars[-1][-1]] == T_EOS:
            bars[-1] = bars[-1][:-1]
        future = [t for b in bars[gap_end:gap_end + n_future] for t in b]
        return list(ids[:h]) + ([self.future_id] + future + [self.now_id] if future else []) + \
            [t for b in bars[:gap_start] for t in b]

    def _with_chords(self, score: symusic.Score, body: list[int], chords) -> list[int]:
        """A Chord token after each bar's TimeSig (miditok writes a Bar for every bar from tick 0)."""
        n_bars = sum(1 for t in body if self.type_of[t] == T_BAR)
        if isinstance(chords, str):
            from cadenza.score.bars import bar_starts
            from cadenza.score.harmony import recognize_chords

            tick = score if str(score.ttype).endswith("Tick") else score.to("tick")
            until = int(tick.end()) + 64 * int(tick.tpq)  # miditok's bars end at the last note's bar
            starts = bar_starts(tick, until)[:n_bars] if n_bars else []
            chords = recognize_chords(tick, starts) if n_bars else []
        chords = list(chords) + [None] * max(0, n_bars - len(chords))
        out, bar = [], -1
        for t in body:
            out.append(t)
            kind = self.type_of[t]
            if kind == T_BAR:
                bar += 1
            elif kind == T_TSIG:
                out.append(self.chord_id[self._chord_label(chords[bar])])
        return out

    def controls_of(self, ids) -> dict:
        """What the sequence says of its key, instruments and the chord of each bar."""
        key = next((self.key_of[int(i)] for i in ids if int(i) in self.key_of), None)
        insts = [self.value_of[int(i)] for i in ids if self.type_of[int(i)] == T_INST]
        chords = [self.chord_of[int(i)] for i in ids if self.type_of[int(i)] == T_CHORD]
        return {"key": key, "instruments": insts, "chords": chords}

    def decode(self, ids) -> symusic.Score:
        """ids -> Score (tpq 480). Special tokens are skipped; every note token group becomes a note."""
        skip = (T_PAD, T_BOS, T_EOS, T_STYLE, T_KEY, T_INST, T_CHORD, T_GIVEN, T_FREE)
        body, future = [], False
        for i in map(int, ids):  # the bars from after a gap (Future ... Now) are context, not notes here
            kind = self.type_of[i]
            future = (future or kind == T_FUTURE) and kind != T_NOW
            if not future and kind not in skip + (T_NOW,):
                body.append(i)
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
    def start_state(self, programs=None, time_signature=None, chords=None, given=None, forced=None,
                    reading: bool = False, fixed_tempo: float | None = None) -> RemiState:
        """A fresh state; ``programs`` (GM numbers, -1 = drums) and ``time_signature`` constrain output;
        ``chords`` ({bar number from 1: (root, quality) or None}) fixes those bars' Chord tokens;
        ``given`` ({bar number: token ids of its given block, ``Given`` ... ``Free``}) fixes the
        material each of those bars starts with (see ``given_blocks``); ``forced`` ({bar number: token
        ids}) more tokens each of those bars must begin with (after its chord and given block), e.g.
        a Position and a Tempo. ``reading``: the state checks or scores an existing sequence, where
        Given/Future blocks may open anywhere the grammar has them (when writing, only a plan opens them).
        ``fixed_tempo`` (qpm): the tempo is the user's or the prompt's; the model writes no Tempo token of
        its own (forced ones still come) and the clock runs at exactly this tempo, so the piece's length
        is the one asked for."""
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
        plan: dict[int, list[int]] = {}
        if chords:
            if not self.chords_on:
                raise CadenzaError("this model has no chord control; it cannot follow chords")
            for b, c in chords.items():
                plan.setdefault(int(b), []).append(self.chord_id[self._chord_label(c)])
        if given:
            if not self.infill_on:
                raise CadenzaError("this model cannot take given material (it has no infill control)")
            for b, block in given.items():
                plan.setdefault(int(b), []).extend(int(t) for t in block)
        for b, toks in (forced or {}).items():
            plan.setdefault(int(b), []).extend(int(t) for t in toks)
        st = RemiState(self, prog_ids, ts_ids, plan or None)
        st.reading = bool(reading)
        st.fixed_tempo = float(fixed_tempo or 0.0)
        if st.fixed_tempo > 0:
            st.qpm = st.fixed_tempo
        return st

    def positions_in_bar(self, tsig: tuple[int, int]) -> int:
        num, den = tsig
        # miditok counts positions per beat of the time signature's denominator
        return num * self.spec.positions_per_beat * 4 // den if den <= 4 else num * self.spec.positions_per_beat

    def allowed(self, state: RemiState) -> np.ndarray:
        key = state.mask_key() + (state.programs, state.time_sigs)  # (the chord plan is in mask_key)
        mask = self._masks.get(key)
        if mask is None:
            mask = self._compute_mask(state)
            self._masks[key] = mask
        if state.last == T_PROG and state.pos_notes and not state.reading and not state.forced:
            # a pitch this instrument already strikes at this onset is not struck again (not cached:
            # it depends on the notes written, not on the grammar state alone)
            used = [n for p, n in state.pos_notes if p == state.cur_prog]
            if used and mask[used].any():
                left = mask.copy()
                left[used] = False
                if left.any():
                    return left
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
            allowed = st.programs if st.programs is not None else st.insts  # asked for, else the header's
            if allowed is None:
                m[ids[T_PROG]] = True
            else:
                m[list(allowed)] = True

        def header_after(kind):  # the header's order: BOS Style? Key? Inst* (ascending) Bar
            if kind == T_BOS:
                m[ids[T_STYLE]] = True
            if kind in (T_BOS, T_STYLE):
                m[ids[T_KEY]] = True
            if kind in (T_BOS, T_STYLE, T_KEY):
                m[ids[T_INST]] = True
            if kind == T_INST:
                for p, i in self.inst_id.items():
                    m[i] = p > st.last_inst
            # a writing model that lists instruments lists a pitched one: drums alone made a piece over
            # given chords with no harmony in it
            m[ids[T_BAR]] = not (kind == T_INST and st.last_inst == -1 and not st.reading)

        if st.forced:
            m[st.forced[0]] = True
            return m

        def bar_may_end():  # where a Bar could come: a new bar, the end, or the end of a block
            if st.given:
                m[self.free_id] = True
                return
            m[ids[T_BAR]] = True
            if st.future:
                m[self.now_id] = True
            else:
                m[self.eos_id] = True

        last = st.last
        if last == T_NONE:
            m[self.bos_id] = True
        elif last in (T_BOS, T_STYLE, T_KEY, T_INST):
            header_after(last)
            if self.infill_on and st.reading:
                m[self.future_id] = True
        elif last in (T_FUTURE, T_NOW):
            m[ids[T_BAR]] = True
        elif last == T_BAR:
            if st.time_sigs is None:
                m[ids[T_TSIG]] = True
            else:
                m[list(st.time_sigs)] = True
        elif last == T_TSIG and self.chords_on:
            m[ids[T_CHORD]] = True
        elif last in (T_TSIG, T_CHORD):
            later_positions()  # only positions inside the bar (its meter is known now)
            bar_may_end()
            if self.infill_on and st.reading:
                m[self.given_id] = True
        elif last == T_GIVEN:
            later_positions()
            m[self.free_id] = True
        elif last == T_FREE:
            later_positions()
            bar_may_end()
        elif last == T_POS:
            if st.fixed_tempo <= 0:
                m[ids[T_TEMPO]] = True
            if st.fixed_tempo >= 0:  # HOLD_TEMPO not yet chosen: the piece's first position names its tempo
                programs()
        elif last == T_TEMPO:
            programs()
            later_positions()
            bar_may_end()
        elif last == T_PROG:
            if st.drum:
                m[ids[T_DRUM]] = True
            else:  # writing: only pitches the instrument plays
                m[ids[T_PITCH] if st.reading else self.in_range.get(st.cur_prog, ids[T_PITCH])] = True
        elif last in (T_PITCH, T_DRUM):
            m[ids[T_VEL]] = True
        elif last == T_VEL:
            m[ids[T_DUR]] = True
        elif last == T_DUR:
            cap = st.capped()
            if cap != "full":
                programs()
                if cap is not None:
                    m[list(cap)] = False
            later_positions()
            bar_may_end()
        elif last == T_EOS:
            m[self.pad_id] = True
        return m

    def durations_within(self, state: RemiState, quarters: float) -> np.ndarray:
        """(V,) bool: the Duration tokens of notes at the current position that end within ``quarters``
        quarter notes (at least the shortest one): near the end asked for, nothing rings past it."""
        ids, beats = self._dur_ids, self._dur_beats
        ok = beats * 4.0 / state.tsig[1] <= quarters + 1e-9
        ok[np.argmin(beats)] = True
        m = np.zeros(self.vocab_size, dtype=bool)
        m[ids[ok]] = True
        return m

    def quarters_to_bar_end(self, state: RemiState) -> float:
        """Quarter notes from the current position to the end of the current bar."""
        n = self.positions_in_bar(state.tsig)
        return (n - max(state.pos, 0)) / n * state.bar_quarters()

    def check(self, ids) -> list[str]:
        """Grammar errors of a sequence (empty when it is valid), for tests and data checks."""
        st = self.start_state(reading=True)
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
