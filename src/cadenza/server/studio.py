"""What the studio does, without HTTP: takes (immutable pieces), their JSON, and the work that
jobs run on worker threads (generate, continue, regenerate bars, harmonize, learn, surprise).

Every score kept here is tick-based at 480 ticks per quarter, the model's own resolution, so a
take's notes come back from any later edit exactly as they were.
"""

from __future__ import annotations

import collections
import secrets
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import symusic

from cadenza.errors import CadenzaError
from cadenza.score import instrument_name, pitch_name
from cadenza.score.bars import bar_starts
from cadenza.score.build import at_tpq
from cadenza.score.build import ticks_to_seconds as to_seconds

TPQ = 480


# ---------------------------------------------------------------------------------------- time
def normalize(score: symusic.Score) -> symusic.Score:
    return at_tpq(score, TPQ)


def meter_of(score: symusic.Score) -> tuple[int, int]:
    if len(score.time_signatures):
        ts = score.time_signatures[0]
        return int(ts.numerator), int(ts.denominator)
    return 4, 4


def tempo_of(score: symusic.Score) -> float:
    return float(score.tempos[0].qpm) if len(score.tempos) else 120.0


def bar_ticks(score: symusic.Score) -> np.ndarray:
    """Tick of each bar start through the end of the piece, plus the end of the last bar."""
    end = max(int(score.end()), 1)
    starts = bar_starts(score, end + 16 * TPQ * 4)
    k = int(np.searchsorted(starts, end, side="left"))  # bars that begin before the end
    return starts[: max(k, 1) + 1]


# --------------------------------------------------------------------------------------- notes
def note_json(pitch: int, start: float, duration: float, velocity: int, program: int, drum: bool, beat: float,
              beats: float, bar: int) -> dict:
    return {"pitch": int(pitch), "name": pitch_name(int(pitch)), "start": round(float(start), 6),
            "duration": round(float(duration), 6), "velocity": int(velocity), "program": int(program),
            "drum": bool(drum), "instrument": instrument_name(int(program), bool(drum)),
            "beat": round(float(beat), 6), "beats": round(float(beats), 6), "bar": int(bar)}


def event_json(ev) -> dict:
    """A streamed NoteEvent as the API's Note."""
    return note_json(ev.pitch, ev.start, ev.duration, ev.velocity, ev.program, ev.is_drum, ev.start_beats,
                     ev.duration_beats, ev.bar)


def score_notes(score: symusic.Score, bars: np.ndarray | None = None) -> list[dict]:
    bars = bar_ticks(score) if bars is None else bars
    out = []
    for tr in score.tracks:
        if not len(tr.notes):
            continue
        a = tr.notes.numpy()
        start, dur = a["time"].astype(np.int64), a["duration"].astype(np.int64)
        s0, s1 = to_seconds(score, start), to_seconds(score, start + dur)
        bar = np.searchsorted(bars, start, side="right")
        for k in range(len(start)):
            out.append(note_json(a["pitch"][k], s0[k], s1[k] - s0[k], a["velocity"][k], tr.program, tr.is_drum,
                                 start[k] / score.tpq, dur[k] / score.tpq, bar[k]))
    out.sort(key=lambda n: (n["start"], n["pitch"]))
    return out


# --------------------------------------------------------------------------------------- takes
@dataclass
class Take:
    score: symusic.Score  # tick based, tpq 480
    kind: str
    label: str
    parent: str | None = None
    model: str | None = None
    style: str | None = None
    id: str = field(default_factory=lambda: "t" + secrets.token_hex(6))
    created: float = field(default_factory=time.time)
    _json: dict | None = None

    def summary(self) -> dict:
        return {k: v for k, v in self.to_json().items() if k != "notes"}

    def to_json(self) -> dict:
        if self._json is None:
            s = self.score
            bars = bar_ticks(s)
            num, den = meter_of(s)
            notes = score_notes(s, bars)
            self._json = {
                "id": self.id, "parent": self.parent, "kind": self.kind, "label": self.label,
                "created": self.created, "model": self.model, "style": self.style, "tempo": round(tempo_of(s), 2),
                "meter": f"{num}/{den}", "bars": len(bars) - 1,
                "seconds": round(float(to_seconds(s, [s.end()])[0]), 6) if s.note_num() else 0.0,
                "bar_starts": [round(float(x), 6) for x in to_seconds(s, bars)],
                "tracks": [{"instrument": instrument_name(t.program, t.is_drum), "program": int(t.program),
                            "drum": bool(t.is_drum), "notes": len(t.notes)} for t in s.tracks if len(t.notes)],
                "notes": notes}
        return self._json


class TakeStore:
    """Takes in memory, newest last; beyond ``limit`` the oldest are forgotten."""

    def __init__(self, limit: int):
        self.limit = limit
        self._takes: collections.OrderedDict[str, Take] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.on_forget = None

    def add(self, take: Take) -> Take:
        take.to_json()  # computed once, on the worker thread
        with self._lock:
            self._takes[take.id] = take
            gone = []
            while len(self._takes) > self.limit:
                gone.append(self._takes.popitem(last=False)[0])
        for tid in gone:
            if self.on_forget:
                self.on_forget(tid)
        return take

    def get(self, take_id: str) -> Take | None:
        with self._lock:
            return self._takes.get(take_id)

    def all(self) -> list[Take]:
        with self._lock:
            return list(self._takes.values())


# ---------------------------------------------------------------------------------------- work
def check_upload(score: symusic.Score, name: str, max_notes: int, max_seconds: float) -> symusic.Score:
    from cadenza.errors import ScoreError

    n = score.note_num()
    if n > max_notes:
        raise ScoreError(f"{name} has {n} notes; the studio takes at most {max_notes}")
    secs = float(to_seconds(score, [score.end()])[0])
    if secs > max_seconds:
        raise ScoreError(f"{name} lasts {secs / 60:.1f} minutes; the studio takes at most {max_seconds / 60:.0f}")
    return normalize(score)


def stream_into(job, cm, prompt, keep=None, **kw) -> symusic.Score:
    """Run ``cm.stream_notes`` for a job: each note becomes a ``note`` event (those ``keep`` accepts),
    cancellation is checked at every token; returns the finished Score."""
    scores: list = []

    def on_token(_b, _t):
        job.check()

    for ev in cm.stream_notes(prompt, scores_out=scores, on_token=on_token, **kw):
        if keep is None or keep(ev):
            job.notes += 1
            job.emit("note", event_json(ev))
    job.check()
    return normalize(scores[0])


def programs_of(score: symusic.Score) -> list:
    return [(t.program, t.is_drum) for t in score.tracks if len(t.notes)]


def regenerate_bars(job, cm, take: Take, first: int, last: int, **kw) -> symusic.Score:
    """The take with bars ``first``-``last`` (1-based, inclusive) written anew, continuing the bars
    before them; every note starting outside them is kept exactly."""
    from cadenza.tokenizers.remi import T_BAR

    s = take.score
    bars = bar_ticks(s)
    n_bars = len(bars) - 1
    if not 1 <= first <= last:
        raise CadenzaError(f"bars {first}-{last}: give a range from bar 1 on, first <= last")
    if first > n_bars:
        raise CadenzaError(f"bars {first}-{last} are outside the piece, which has {n_bars} bars")
    all_bars = bar_starts(s, int(bars[-1]) + (last + 2) * 16 * TPQ)
    a, b = int(all_bars[first - 1]), int(all_bars[last])
    a_sec, b_sec = to_seconds(s, [a, b])
    before = s.clip(0, a, clip_end=False)
    meter = meter_of(s)
    instruments = programs_of(s)
    if before.note_num():
        # new bars counted after the prompt's last encoded bar (an empty bar at its end is not encoded)
        seen_bars = sum(1 for t in cm.tokenizer.encode(before) if cm.tokenizer.type_of[t] == T_BAR)
        prompt, new_bars = before, max(last - seen_bars, 1)
    else:
        prompt, new_bars = None, last
        kw.setdefault("tempo", tempo_of(s))
    kw.pop("bars", None)
    eps = 1e-6
    out = stream_into(job, cm, prompt, keep=lambda ev: a_sec - eps <= ev.start < b_sec - eps, bars=new_bars,
                      instruments=instruments, time_signature=meter, **kw)
    from cadenza.tasks.arrange import merge_region

    # the region's old notes out, the new ones in (they end by the region's end)
    return merge_region(s, out, a, b, clear=set(range(len(s.tracks))))


def learn_json(steps) -> dict:
    def cand(c):
        return {"pitch": c.pitch, "name": pitch_name(c.pitch), "p": round(c.p, 6)}

    return {"steps": [{"note": event_json(s.note), "chosen": cand(s.chosen),
                       "candidates": [cand(c) for c in s.candidates]} for s in steps]}


def surprise_json(pairs) -> dict:
    notes = [{**event_json(ev), "bits": round(bits, 4)} for ev, bits in pairs]
    mean = float(np.mean([n["bits"] for n in notes])) if notes else 0.0
    return {"notes": notes, "mean_bits": round(mean, 4)}
