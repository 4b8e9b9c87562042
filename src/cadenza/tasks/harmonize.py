"""Four-part chorale harmonization and editing with a chorale-grid model.

The melody (or a whole chorale to edit) becomes the model's grid (S A T B per 16th step); the
cells the user wants written are *free*, every other cell is *fixed*. ``engine.fill`` then samples
the free cells knowing every fixed one, before and after (the whole melody, and kept notes after a
regenerated region): see the explanation there. The soprano is never free unless a region names
it, and the soprano part of the result is the given melody's own notes (so repeated notes, ties and
rhythms finer than the grid come back exactly as given).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import numpy as np
import symusic
import torch

from cadenza.errors import CadenzaError, shown
from cadenza.eval.voice_leading import RANGES
from cadenza.score.notes import pitch_name
from cadenza.tokenizers.grid import N_SPECIAL, REST, STEP_QUARTERS, VOICES

VOICE_NAMES = {"soprano": 0, "s": 0, "alto": 1, "a": 1, "tenor": 2, "t": 2, "bass": 3, "b": 3}
# Where each voice may be sampled: alto, tenor and bass in the textbook SATB ranges the voice-leading
# counts use (the model alone strays out of them twice as often as Bach). The soprano is never
# sampled, only checked for fit.
SAMPLE_RANGES = {0: (58, 84), 1: RANGES[1], 2: RANGES[2], 3: RANGES[3]}
SOPRANO_FIT = (60, 81)  # C4-A5: the melody is transposed when it leaves this range


@dataclass
class Region:
    voices: tuple[int, ...]
    start: int  # grid steps, [start, end)
    end: int
    text: str


@dataclass
class Harmonization:
    scores: list[symusic.Score]
    grids: list[np.ndarray]
    transposed: int = 0  # semitones the input was moved to fit the voices
    notes: list[str] = field(default_factory=list)  # messages for the user (e.g. the transposition)


# ---- reading the input ------------------------------------------------------------------------

def _where(tick: int, tpq: int, bar_q: float) -> str:
    q = tick / tpq
    bar = int(q // bar_q)
    return f"bar {bar + 1} beat {q - bar * bar_q + 1:g}"


def _melody_notes(score: symusic.Score, name: str) -> tuple[list, list[symusic.Track] | None]:
    """The melody's notes, or None for the melody and the four voices of a chorale."""
    tracks = [t for t in score.tracks if len(t.notes) and not t.is_drum]
    if not tracks:
        raise CadenzaError(f"{name} has no notes to harmonize")
    if len(tracks) == 4:
        return None, tracks
    if len(tracks) != 1:
        raise CadenzaError(f"{name} has {len(tracks)} parts: give a melody (one part) or a four-part chorale")
    notes = sorted(tracks[0].notes, key=lambda n: (n.start, -n.pitch))
    bar_q = _bar_quarters(score)
    for a, b in zip(notes, notes[1:]):
        if b.start < a.end:
            kind = "chords" if b.start == a.start else "overlapping notes"
            raise CadenzaError(f"{name} has {kind}: two notes sound together at "
                               f"{_where(b.start, score.tpq, bar_q)} (pitches {a.pitch} and {b.pitch}); "
                               "give a single melodic line")
    return notes, None


def _bar_quarters(score: symusic.Score) -> float:
    if len(score.time_signatures):
        ts = score.time_signatures[0]
        return ts.numerator * 4 / ts.denominator
    return 4.0


def _steps_per_beat(score: symusic.Score) -> int:
    den = score.time_signatures[0].denominator if len(score.time_signatures) else 4
    return max(1, 16 // den)  # 16th steps in one 1/den note


def _to_cells(notes, tpq: int, T: int) -> np.ndarray:
    step = tpq * STEP_QUARTERS
    col = -np.ones(T, dtype=np.int64)
    for n in notes:
        a = int(round(n.start / step))
        b = max(int(round(n.end / step)), a + 1)
        col[a:b] = np.maximum(col[a:b], n.pitch)
    return col


def _fit_shift(pitches: np.ndarray, lo: int, hi: int) -> int:
    """Semitones to move a melody so it fits [lo, hi]: 0 if it fits, whole octaves when they do."""
    if pitches.min() >= lo and pitches.max() <= hi:
        return 0
    best = None
    for s in range(-36, 37):
        out = int(((pitches + s) < lo).sum() + ((pitches + s) > hi).sum())
        key = (out, s % 12 != 0, abs(s))
        if best is None or key < best[0]:
            best = (key, s)
    return best[1]


# ---- regions ----------------------------------------------------------------------------------

REGION_RE = re.compile(r"^(?:(?P<voices>[A-Za-z, ]+):)?\s*(?P<a>\d+(?:\.\d+)?)\s*(?:-\s*(?P<b>\d+(?:\.\d+)?))?$")


def parse_regions(spec: str, flag: str, steps_per_bar: int, steps_per_beat: int, total: int,
                  default_voices: tuple[int, ...]) -> list[Region]:
    """'bass:1-4', 'alto,tenor:5-8', '5-8', '3.3-4.2' (bar.beat), several joined by ';'."""
    out = []
    n_bars = -(-total // steps_per_bar)
    for part in [p.strip() for p in spec.split(";") if p.strip()]:
        m = REGION_RE.match(part)
        if not m:
            raise CadenzaError(f"cannot read {flag} {shown(part)}: use VOICES:BARS, e.g. 'bass:1-4', "
                               "'alto,tenor:5-8', '5-8' or '3.3-4.2' (bar.beat)")
        voices = default_voices
        if m["voices"]:
            vs = []
            for v in (x.strip().lower() for x in m["voices"].split(",")):
                if v not in VOICE_NAMES:
                    raise CadenzaError(f"unknown voice {shown(v, 20)} in {flag} {shown(part)} "
                                       "(use soprano, alto, tenor, bass)")
                vs.append(VOICE_NAMES[v])
            voices = tuple(sorted(set(vs)))

        def point(text: str, end: bool) -> int:
            bar, _, beat = text.partition(".")
            b, bt = int(bar), int(beat) if beat else None
            if b < 1 or (bt is not None and bt < 1):
                raise CadenzaError(f"{flag} {shown(part)}: bars and beats count from 1")
            s = (b - 1) * steps_per_bar
            if bt is None:
                return s + steps_per_bar if end else s
            return s + (bt if end else bt - 1) * steps_per_beat

        a = point(m["a"], False)
        e = point(m["b"] or m["a"], True)
        if e <= a:
            raise CadenzaError(f"{flag} {shown(part)} is empty: its end comes before its start")
        if a >= total:
            raise CadenzaError(f"{flag} {shown(part)} is outside the piece, which has "
                               f"{n_bars} bar{'s' * (n_bars != 1)}")
        out.append(Region(voices, a, min(e, total), part))
    return out


# ---- the task ---------------------------------------------------------------------------------

class Harmonizer:
    """A chorale-grid model with its tokenizer: ``harmonize`` and edit chorales."""

    def __init__(self, model, tokenizer, config: dict):
        if getattr(tokenizer, "scheme", "") != "grid":
            raise CadenzaError(f"model {config.get('name')} is a {config.get('family')} model; "
                               "harmonizing needs a chorale-grid model (e.g. --model chorale)")
        self.model, self.tok, self.config = model, tokenizer, config
        V = tokenizer.vocab_size
        masks = torch.zeros(5, V, dtype=torch.bool)
        for v, (lo, hi) in SAMPLE_RANGES.items():
            masks[v, REST] = True
            masks[v, N_SPECIAL + max(lo, tokenizer.lo) - tokenizer.lo:N_SPECIAL + min(hi + 1, tokenizer.hi) - tokenizer.lo] = True
        masks[4, :] = True  # the BOS position (never scored)
        self.masks = masks
        # the pitch of each token id (-1: rest or special), for the voice-leading rule
        self.pitch_of = torch.full((tokenizer.vocab_size,), -1, dtype=torch.long)
        for pitch, token_id in tokenizer.pitch_ids.items():
            self.pitch_of[token_id] = pitch

    def _no_parallels(self, seq: torch.Tensor, i: int) -> torch.Tensor:
        """(B, V) mask for free cell ``i``: no pitch that makes parallel fifths or octaves (unisons
        included, by similar or contrary motion) with a voice above it, already decided at this step.

        The chorale model alone writes them about 10x as often as Bach (bench/chorales.py, vl_*):
        at its likelihood (Music Transformer's level) such slips keep a few percent of the mass. We
        sample from the model conditioned on the textbook rule instead (fill's ``constrain``), which
        keeps everything else the model's choice.
        """
        B, V = seq.shape[0], self.pitch_of.shape[0]
        ok = torch.ones(B, V, dtype=torch.bool)
        t, v = divmod(i - 1, 4)
        if t == 0 or v == 0:
            return ok
        prev = self.pitch_of[seq[:, 1 + 4 * (t - 1):1 + 4 * t]]  # (B, 4) pitches at the step before
        cur = self.pitch_of[seq[:, 1 + 4 * t:1 + 4 * t + v]]  # (B, v) voices above, this step
        cand = self.pitch_of[None, :]  # (1, V)
        pv = prev[:, v:v + 1]
        moves = (cand >= 0) & (pv >= 0) & (cand != pv)
        for u in range(v):
            pu, cu = prev[:, u:u + 1], cur[:, u:u + 1]
            u_moved = (pu >= 0) & (cu >= 0) & (pu != cu)
            before = (pu - pv) % 12
            perfect = (pv >= 0) & ((before == 0) | (before == 7))
            ok &= ~(u_moved & perfect & moves & ((cu - cand) % 12 == before))
        return ok

    @classmethod
    def load(cls, name: str | os.PathLike | None = "chorale") -> "Harmonizer":
        from cadenza.model import load_model_folder
        from cadenza.tasks.compose import checked_folder, find_model

        path = find_model(name or "chorale")
        _, tokenizer = checked_folder(path)  # the config, weights' header and tokenizer first: one line if broken
        model, cfg = load_model_folder(path)
        return cls(model, tokenizer, cfg)

    def harmonize(self, score: symusic.Score, *, name: str = "the melody", keep: str | None = None,
                  regenerate: str | None = None, key: str | None = None, variations: int = 1,
                  temperature: float = 0.9, particles: int = 8, seed: int | None = None,
                  rules: bool = True, progress=None) -> Harmonization:
        from cadenza.engine.fill import fill
        from cadenza.engine.sampling import SamplingConfig

        if variations < 1:
            raise CadenzaError(f"variations must be at least 1 (got {variations})")
        if not temperature > 0:
            raise CadenzaError(f"temperature must be greater than 0 (got {temperature})")
        melody, voices = _melody_notes(score, name)
        tpq = score.tpq
        step_ticks = tpq * STEP_QUARTERS
        if step_ticks != int(step_ticks):
            raise CadenzaError(f"{name}: {tpq} ticks per quarter cannot hold 16th notes")
        end = max(t.end() for t in score.tracks if len(t.notes))
        T = int(np.ceil(end / step_ticks))
        bar_q = _bar_quarters(score)
        spb = int(round(bar_q / STEP_QUARTERS))
        grid = -np.ones((T, 4), dtype=np.int64)
        originals: list[list] = [[] for _ in range(4)]
        if melody is not None:
            if keep:
                raise CadenzaError("--keep needs a four-part chorale to keep notes from; this input is a melody")
            grid[:, 0] = _to_cells(melody, tpq, T)
            originals[0] = list(melody)
            free = np.zeros((T, 4), dtype=bool)
            free[:, 1:] = True
            if regenerate:
                raise CadenzaError("--regenerate needs a four-part chorale to edit; a melody is harmonized whole")
        else:
            voices = sorted(voices, key=lambda t: -np.mean([n.pitch for n in t.notes]))
            for v, tr in enumerate(voices):
                grid[:, v] = _to_cells(tr.notes, tpq, T)
                originals[v] = list(tr.notes)
            spbeat = _steps_per_beat(score)
            free = np.zeros((T, 4), dtype=bool)
            regions = parse_regions(regenerate, "--regenerate", spb, spbeat, T, (1, 2, 3)) if regenerate \
                else [Region((1, 2, 3), 0, T, "all")]
            for r in regions:
                free[r.start:r.end, list(r.voices)] = True
            for r in parse_regions(keep, "--keep", spb, spbeat, T, (0, 1, 2, 3)) if keep else []:
                free[r.start:r.end, list(r.voices)] = False
        sounding = grid[:, 0][grid[:, 0] >= 0]
        if not len(sounding):
            raise CadenzaError(f"{name} has no soprano notes to harmonize")
        shift = _fit_shift(sounding, *SOPRANO_FIT) if melody is not None else 0
        messages = []
        if shift:
            lo, hi = int(sounding.min()), int(sounding.max())
            messages.append(f"the melody's range ({pitch_name(lo)}-{pitch_name(hi)}) does not fit the soprano "
                            f"({pitch_name(SOPRANO_FIT[0])}-{pitch_name(SOPRANO_FIT[1])}): transposed "
                            f"{'up' if shift > 0 else 'down'} {_interval(abs(shift))}")
            grid[grid >= 0] += shift
        if (grid[grid >= 0] < self.tok.lo).any() or (grid[grid >= 0] >= self.tok.hi).any():
            raise CadenzaError(f"{name} has notes outside the model's range {self.tok.lo}-{self.tok.hi - 1}")
        template = self.tok.encode_grid(np.where(free, -1, grid))
        free_flat = np.concatenate([[False], free.reshape(-1)])
        mask_index = np.concatenate([[4], np.tile(np.arange(4), T)])
        sampling = SamplingConfig(temperature=temperature, top_p=1.0, repetition_penalty=1.0, seed=seed).validate()
        res = fill(self.model, template, free_flat, self.masks, mask_index, particles=particles,
                   groups=variations, sampling=sampling, head=self.tok.header(),
                   starts=self.tok.window_starts(np.array(template)),
                   constrain=self._no_parallels if rules else None, progress=progress)
        grids = [self.tok.decode_grid(ids) for ids in res.ids]
        scores = [self._score(g, free, originals, shift, score, key) for g in grids]
        return Harmonization(scores, grids, shift, messages)

    def _score(self, grid: np.ndarray, free: np.ndarray, originals, shift: int, src: symusic.Score,
               key: str | None) -> symusic.Score:
        from cadenza.score.keys import key_signature, transpose_sharps

        tpq = src.tpq
        step = int(tpq * STEP_QUARTERS)
        out = symusic.Score(tpq)
        for ev in src.tempos:
            out.tempos.append(ev)
        if not len(out.tempos):
            out.tempos.append(symusic.Tempo(0, qpm=80.0))
        for ev in src.time_signatures:
            out.time_signatures.append(ev)
        if key:
            out.key_signatures.append(key_signature(key))
        for ev in src.key_signatures:
            if not key:
                out.key_signatures.append(symusic.KeySignature(ev.time, transpose_sharps(ev.key, shift), ev.tonality))
        T = len(grid)
        for v in range(4):
            tr = symusic.Track(VOICES[v], 52, False)  # GM 52: choir aahs
            rewrite = free[:, v].copy()
            for n in originals[v]:
                a, b = int(round(n.start / step)), max(int(round(n.end / step)), int(round(n.start / step)) + 1)
                if rewrite[a:b].any():
                    rewrite[a:b] = True  # a given note touched by the region is rewritten from the grid
            for n in originals[v]:
                a, b = int(round(n.start / step)), max(int(round(n.end / step)), int(round(n.start / step)) + 1)
                if not rewrite[a:b].any():
                    tr.notes.append(symusic.Note(n.start, n.duration, n.pitch + shift, n.velocity))
            t = 0
            while t < T:
                if not rewrite[t] or grid[t, v] < 0:
                    t += 1
                    continue
                u = t + 1
                while u < T and rewrite[u] and grid[u, v] == grid[t, v]:
                    u += 1
                tr.notes.append(symusic.Note(t * step, (u - t) * step, int(grid[t, v]), 80))
                t = u
            tr.notes.sort(key=lambda n: (n.start, n.pitch))
            out.tracks.append(tr)
        return out


def _interval(s: int) -> str:
    if s % 12 == 0:
        k = s // 12
        return f"{k} octave{'s' * (k != 1)}"
    return f"{s} semitone{'s' * (s != 1)}"
