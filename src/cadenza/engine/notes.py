"""Notes as they are generated: an incremental REMI decoder for streaming.

``NoteDecoder`` follows a token stream and emits a ``NoteEvent`` the moment a note's last token
(its Duration) arrives, with its time in seconds on the piece's own clock (tempo changes
included). The engine's ``stream`` yields tokens; ``stream_notes`` turns them into notes; the CLI's
``--stream``, ``cadenza live`` and the studio all read this one iterator.

Hand-written rather than calling miditok's decoder per note because that re-decodes the whole
sequence each time (quadratic); a test checks that it gives exactly miditok's notes.
"""

from __future__ import annotations

from dataclasses import dataclass

from cadenza.tokenizers.remi import (T_BAR, T_DRUM, T_DUR, T_PITCH, T_POS, T_PROG, T_TEMPO, T_TSIG, T_VEL,
                                     RemiTokenizer)


@dataclass(frozen=True)
class NoteEvent:
    pitch: int
    start: float  # seconds from the start of the piece
    duration: float  # seconds
    velocity: int
    program: int  # General MIDI program (0-127); drums: 0 with is_drum
    is_drum: bool
    start_beats: float  # quarter notes from the start of the piece
    duration_beats: float
    bar: int  # 1-based bar number
    take: int = 0  # which variation (sequence) of a batch

    @property
    def end(self) -> float:
        return self.start + self.duration


class NoteDecoder:
    """Token ids in, finished notes out (``feed`` returns a NoteEvent or None)."""

    def __init__(self, tokenizer: RemiTokenizer, take: int = 0, tempos: list[tuple[float, float]] | None = None):
        """``tempos``: a fixed tempo map [(quarter notes, qpm), ...] to time the notes by (a prompt's
        own tempos, which a continuation keeps); Tempo tokens are then ignored."""
        self.tok = tokenizer
        self.take = take
        self.fixed = sorted(tempos) if tempos else None
        self.tsig = (4, 4)
        self.bars = 0
        self.bar_beats = 0.0  # quarter notes at the start of the current bar
        self.pos_beats = 0.0  # quarter notes at the current position
        # tempo map: (beats, seconds, qpm) of the last tempo change; seconds at `beats` follow it
        self.tempo_beats, self.tempo_secs, self.qpm = 0.0, 0.0, tokenizer.default_qpm
        self.program, self.drum = 0, False
        self.pitch = None
        self.velocity = 0

    def seconds_at(self, beats: float) -> float:
        """Seconds at a time in quarter notes, under the tempo known so far (tempo changes that come
        later in the stream apply from their own position on, so earlier notes keep their times)."""
        if self.fixed:
            secs, (b0, q0) = 0.0, self.fixed[0]
            secs = b0 * 60.0 / q0  # before the first change: its tempo
            for b1, q1 in self.fixed[1:]:
                if b1 >= beats:
                    break
                secs += (b1 - b0) * 60.0 / q0
                b0, q0 = b1, q1
            return secs + (beats - b0) * 60.0 / q0
        return self.tempo_secs + (beats - self.tempo_beats) * 60.0 / self.qpm

    def _bar_quarters(self) -> float:
        num, den = self.tsig
        return num * 4.0 / den

    def _unit(self) -> float:
        """Quarter notes per Position step."""
        num, den = self.tsig
        ppb = self.tok.spec.positions_per_beat
        return 1.0 / ppb if den <= 4 else 4.0 / den / ppb

    def _duration_quarters(self, token_id: int) -> float:
        return self.tok.duration_beats[token_id] * 4.0 / self.tsig[1]

    def feed(self, token_id: int) -> NoteEvent | None:
        kind = self.tok.type_of[token_id]
        if kind == T_BAR:
            if self.bars > 0:
                self.bar_beats += self._bar_quarters()
            self.bars += 1
            self.pos_beats = self.bar_beats
        elif kind == T_TSIG:
            self.tsig = self.tok.tsig_of[token_id]
        elif kind == T_POS:
            self.pos_beats = self.bar_beats + self.tok.value_of[token_id] * self._unit()
        elif kind == T_TEMPO and not self.fixed:
            self.tempo_secs = self.seconds_at(self.pos_beats)
            self.tempo_beats = self.pos_beats
            self.qpm = float(self.tok.value_of[token_id])
        elif kind == T_PROG:
            v = self.tok.value_of[token_id]
            self.drum = v == -1
            self.program = 0 if self.drum else int(v)
        elif kind in (T_PITCH, T_DRUM):
            self.pitch = int(self.tok.value_of[token_id])
        elif kind == T_VEL:
            self.velocity = int(self.tok.value_of[token_id])
        elif kind == T_DUR and self.pitch is not None:
            q = self._duration_quarters(token_id)
            start = self.seconds_at(self.pos_beats)
            ev = NoteEvent(self.pitch, start, self.seconds_at(self.pos_beats + q) - start, self.velocity,
                           self.program, self.drum, self.pos_beats, q, self.bars, self.take)
            self.pitch = None
            return ev
        return None
