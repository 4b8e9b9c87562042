"""Harmony as the models see it: one chord per bar from a small vocabulary, and the key of a piece.

Chords: 12 roots x 11 qualities (triads, suspensions, the common sevenths) plus "no chord". The
bar's chord is what the multi-track models are conditioned on ("follow these chords") and what
``chord_tone_ratio`` measures against. Chord recognition and key estimation are hand-written
template matches over duration-weighted pitch-class histograms (numpy, microseconds per bar):
music21's analysers give the same kind of answer but cost milliseconds per bar, too slow for
tokenizing tens of thousands of bars. No torch here.
"""

from __future__ import annotations

import re

import numpy as np
import symusic

from cadenza.errors import ScoreError

PITCH_CLASSES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
# (name, intervals above the root); order matters only for ties (simpler chords first)
QUALITIES: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("maj", (0, 4, 7)), ("min", (0, 3, 7)), ("7", (0, 4, 7, 10)), ("min7", (0, 3, 7, 10)),
    ("maj7", (0, 4, 7, 11)), ("dim", (0, 3, 6)), ("aug", (0, 4, 8)), ("sus4", (0, 5, 7)),
    ("sus2", (0, 2, 7)), ("m7b5", (0, 3, 6, 10)), ("dim7", (0, 3, 6, 9)),
)
QUALITY_NAMES = tuple(q for q, _ in QUALITIES)
_SHORT = {"maj": "", "min": "m", "7": "7", "min7": "m7", "maj7": "maj7", "dim": "dim", "aug": "aug",
          "sus4": "sus4", "sus2": "sus2", "m7b5": "m7b5", "dim7": "dim7"}
Chord = tuple[int, str]  # (root pitch class, quality name); None means no chord


def chord_vocabulary() -> list[str]:
    """Every chord label, e.g. 'C:maj', 'F#:min7' (Harte-style, as POP909 writes them), and 'N'."""
    return [f"{r}:{q}" for r in PITCH_CLASSES for q in QUALITY_NAMES] + ["N"]


def chord_label(chord: Chord | None) -> str:
    return "N" if chord is None else f"{PITCH_CLASSES[chord[0]]}:{chord[1]}"


def chord_symbol(chord: Chord | None) -> str:
    """The lead-sheet spelling: 'Am7', 'C', 'N.C.'."""
    return "N.C." if chord is None else PITCH_CLASSES[chord[0]] + _SHORT[chord[1]]


def chord_tones(chord: Chord) -> frozenset[int]:
    root, q = chord
    return frozenset((root + i) % 12 for i in dict(QUALITIES)[q])


def _nearest_quality(intervals) -> str:
    """The vocabulary quality sharing most tones with ``intervals`` (a 9th chord is a 7th, a 6th a triad)."""
    pcs = {i % 12 for i in intervals}
    best = max(QUALITIES, key=lambda q: (len(pcs & set(q[1])) - 0.5 * len(set(q[1]) - pcs), -len(q[1])))
    return best[0]


def parse_chord(text: str) -> Chord | None:
    """A chord symbol ('Am7', 'G/B', 'C9', 'N.C.') or a Harte label ('A:min7', 'B:maj/3', 'N') as the
    vocabulary's (root, quality); None for no chord. Raises ScoreError for what is not a chord."""
    from cadenza.score.chords import _ACC, _NO_CHORD, _ROOT, _parse

    t = (text or "").strip()
    if t in ("N", "X") or t in _NO_CHORD:
        return None
    m = re.fullmatch(r"([A-G])(#|b)?:([^/(]*)(?:\((.*)\))?(?:/.*)?", t)
    if m:  # Harte: root:quality[(extensions)][/bass]
        root = (_ROOT[m[1]] + _ACC[m[2] or ""]) % 12
        q = m[3] or "maj"
        if q in QUALITY_NAMES:  # the vocabulary's own labels ('C:m7b5')
            return root, q
        harte = {"maj": (0, 4, 7), "min": (0, 3, 7), "dim": (0, 3, 6), "aug": (0, 4, 8), "sus4": (0, 5, 7),
                 "sus2": (0, 2, 7), "7": (0, 4, 7, 10), "maj7": (0, 4, 7, 11), "min7": (0, 3, 7, 10),
                 "hdim7": (0, 3, 6, 10), "dim7": (0, 3, 6, 9), "maj6": (0, 4, 7, 9), "min6": (0, 3, 7, 9),
                 "9": (0, 4, 7, 10, 14), "maj9": (0, 4, 7, 11, 14), "min9": (0, 3, 7, 10, 14),
                 "minmaj7": (0, 3, 7, 11), "5": (0, 7), "1": (0,)}
        if q not in harte:
            raise ScoreError(f"unknown chord label '{text}'")
        iv = harte[q]
        if q in ("5", "1"):
            return root, "maj"
        return root, q if q in QUALITY_NAMES else ("m7b5" if q == "hdim7" else _nearest_quality(iv))
    parsed = _parse(t)
    if parsed is None:
        raise ScoreError(f"unknown chord symbol '{text}'")
    root, intervals, _bass = parsed
    if tuple(intervals) == (0, 7):
        return root, "maj"
    return root, _nearest_quality(intervals)


def bar_chords(text: str, where: str = "chords") -> list[str]:
    """'| Am | F | C G |' -> ['Am', 'F', 'C'] (a bar's first chord: the models know one chord per bar;
    '%' repeats the previous bar); without bar lines, one chord per bar: 'C G Am F'. Each is checked."""
    bars = [b.split() for b in (text or "").split("|") if b.strip()] if "|" in (text or "") else \
        [[c] for c in (text or "").split()]
    if not bars:
        raise ScoreError(f"{where} has no chord symbols")
    out: list[str] = []
    for k, bar in enumerate(bars, 1):
        sym = (out[-1] if out else "N.C.") if bar[0] == "%" else bar[0]
        try:
            parse_chord(sym)
        except ScoreError as e:
            raise ScoreError(f"{where} bar {k}: {e}") from None
        out.append(sym)
    return out


# ------------------------------------------------------------------------------- pitch classes
def pitched_notes(score: symusic.Score):
    """The note arrays (symusic numpy) of the tracks that are not drums and have notes."""
    for t in score.tracks:
        if not t.is_drum and len(t.notes):
            yield t.notes.numpy()


def bar_histograms(score: symusic.Score, bar_starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(chroma (bars, 12), bass (bars, 12)): per bar, the note time of each pitch class sounding in
    it, and the same for the lowest sounding note at each onset (a root-position hint)."""
    edges = np.append(np.asarray(bar_starts, np.int64), np.iinfo(np.int64).max // 2)
    n = len(bar_starts)
    chroma = np.zeros((n, 12))
    bass = np.zeros((n, 12))
    starts, ends, pitches = [], [], []
    for a in pitched_notes(score):
        starts.append(a["time"].astype(np.int64))
        ends.append(a["time"].astype(np.int64) + np.maximum(a["duration"].astype(np.int64), 1))
        pitches.append(a["pitch"].astype(np.int64))
    if not starts:
        return chroma, bass
    s, e, p = np.concatenate(starts), np.concatenate(ends), np.concatenate(pitches)
    first = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, n - 1)
    last = np.clip(np.searchsorted(edges, e - 1, side="right") - 1, 0, n - 1)
    for k in range(len(s)):  # a note may span bars: each bar gets its share
        for b in range(first[k], last[k] + 1):
            overlap = min(e[k], edges[b + 1]) - max(s[k], edges[b])
            if overlap > 0:
                chroma[b, p[k] % 12] += overlap
    # the lowest pitch starting at each onset, weighted by its duration in the bar
    order = np.lexsort((p, s))
    s, e, p, first = s[order], e[order], p[order], first[order]
    lowest = np.ones(len(s), bool)
    lowest[1:] = s[1:] != s[:-1]
    for k in np.flatnonzero(lowest):
        b = first[k]
        bass[b, p[k] % 12] += min(e[k], edges[b + 1]) - s[k]
    return chroma, bass


def _templates() -> tuple[np.ndarray, list[Chord]]:
    rows, chords = [], []
    for root in range(12):
        for q, iv in QUALITIES:
            t = np.full(12, -0.6)
            t[[(root + i) % 12 for i in iv]] = 1.0
            rows.append(t)
            chords.append((root, q))
    return np.array(rows), chords


_TEMPLATES, _CHORDS = _templates()
_ROOTS = np.array([r for r, _ in _CHORDS])
# a four-note chord must earn its extra tone: it has to carry over a fifth of the bar's note time.
# Weights chosen on POP909 songs 001-030 (bar-level majority of its annotated chords): 55% of bars
# get exactly the annotated chord, 71% its root (the rest: mostly 7th-vs-triad and relative
# minor/major confusions, and bars whose annotation changes mid-bar). Where a corpus has chord
# annotations (POP909), training uses them instead.
# Rarer qualities pay a small prior too: a melody's passing tone over a triad otherwise reads as a
# suspension (without it a third of the bars of chorales came out sus2/sus4).
_PRIOR = {"sus4": 0.12, "sus2": 0.15, "aug": 0.1, "dim": 0.05}
_EXTRA = np.array([0.3 * max(0, len(dict(QUALITIES)[q]) - 3) + _PRIOR.get(q, 0.0) for _, q in _CHORDS])
_BASS_WEIGHT = 0.3


def recognize_chords(score: symusic.Score, bar_starts: np.ndarray) -> list[Chord | None]:
    """The chord of each bar: the template that best covers the bar's pitch classes (a bass note on
    the root adds weight); None where the bar has no pitched notes."""
    chroma, bass = bar_histograms(score, bar_starts)
    out: list[Chord | None] = []
    for c, b in zip(chroma, bass):
        total = c.sum()
        if total <= 0:
            out.append(None)
            continue
        scores = _TEMPLATES @ (c / total) - _EXTRA
        if b.sum() > 0:
            scores = scores + _BASS_WEIGHT * (b / b.sum())[_ROOTS]
        out.append(_CHORDS[int(np.argmax(scores))])
    return out


def chord_tone_ratio(score: symusic.Score, bar_starts: np.ndarray, chords: list[Chord | None]) -> float:
    """Share of pitched note time (bars with a chord) on tones of the bar's chord."""
    chroma, _ = bar_histograms(score, bar_starts)
    on = total = 0.0
    for c, ch in zip(chroma, chords):
        if ch is None:
            continue
        total += c.sum()
        on += c[list(chord_tones(ch))].sum()
    return on / total if total else float("nan")
