"""New notes into the tracks they continue: track identity for a model that knows only programs.

The REMI models name a note's instrument (its General MIDI program), not its track. Real files often
hold several tracks on one program: a melody, a counter-melody and an accompaniment all on piano
(POP909), two hands, two violins. Merging new notes by program put them all in one track. Here each
new note goes to the prompt's track of its program that it continues best: the one whose register
(a running centre of its recent notes) is nearest, a track that plays one note at a time taking at
most one note per onset, a track silent at the end of the prompt paying a little to come back. The
highest notes of an onset are placed first, so a melody keeps the top line.

Until a model carries track identity itself (the note-level family of issue 20), this is how new
notes find their tracks; a program the prompt does not have gets a new track, as before.
"""

from __future__ import annotations

import numpy as np
import symusic

from cadenza.score.instruments import instrument_name

RECENT_NOTES = 32  # a track's register: the median of its last notes in the prompt
SILENT_COST = 1.0  # a track that did not play in the prompt's last notes of its program pays this
DRIFT = 0.1  # a track's centre moves this far toward each note it takes


class _Part:
    """One prompt track as a home for new notes: its register, spread and whether it is a line."""

    def __init__(self, track: symusic.Track, recent_from: int):
        a = track.notes.numpy()
        last = a["pitch"][-RECENT_NOTES:] if len(a["pitch"]) else np.array([60])
        self.centre = float(np.median(last))
        self.spread = max(float(np.std(last)), 3.0)
        onsets = len(np.unique(a["time"])) if len(a["time"]) else 1
        self.line = len(a["time"]) > 0 and len(a["time"]) / onsets <= 1.15
        self.recent = bool(len(a["time"]) and a["time"].max() >= recent_from)
        self.track = track

    def cost(self, pitch: int) -> float:
        return abs(pitch - self.centre) / self.spread + (0.0 if self.recent else SILENT_COST)

    def take(self, pitch: int) -> None:
        self.centre += DRIFT * (pitch - self.centre)
        self.recent = True


def _assign(parts: list[_Part], notes: dict[str, np.ndarray]) -> list[int]:
    """Index of the part each note goes to (notes: one program's note arrays, ``Track.notes.numpy()``)."""
    out = [0] * len(notes["time"])
    order = np.lexsort((-notes["pitch"], notes["time"]))  # by onset, highest pitch first
    k = 0
    while k < len(order):
        j = k
        while j < len(order) and notes["time"][order[j]] == notes["time"][order[k]]:
            j += 1
        taken: set[int] = set()
        for i in order[k:j]:
            p = int(notes["pitch"][i])
            free = [n for n, part in enumerate(parts) if not (part.line and n in taken)]
            best = min(free or range(len(parts)), key=lambda n: parts[n].cost(p))
            out[i] = best
            taken.add(best)
            parts[best].take(p)
        k = j
    return out


def merge_new_notes(prompt: symusic.Score, new: symusic.Score, recent_from: int | None = None) -> symusic.Score:
    """``prompt`` (ticks) with the notes of ``new`` (same resolution) added to the tracks they continue.

    ``recent_from``: the tick from which a prompt track counts as still playing (default: the start
    of the prompt's last quarter of notes, at least 4 beats back from its end)."""
    out = prompt.copy()
    if recent_from is None:
        recent_from = max(0, int(prompt.end()) - 16 * int(prompt.tpq))
    for tr in new.tracks:
        homes = [t for t in out.tracks if t.program == tr.program and t.is_drum == tr.is_drum]
        if any(len(t.notes) for t in homes):  # an empty track of the prompt (a placeholder) is no home
            homes = [t for t in homes if len(t.notes)]
        if not homes:
            target = symusic.Track(instrument_name(tr.program, tr.is_drum), tr.program, tr.is_drum)
            out.tracks.append(target)
            homes = [out.tracks[-1]]
        if len(homes) == 1 or tr.is_drum:
            for n in tr.notes:
                homes[0].notes.append(n)
            homes[0].notes.sort()
            continue
        parts = [_Part(t, recent_from) for t in homes]
        a = tr.notes.numpy()
        where = _assign(parts, a)
        for n, k in zip(tr.notes, where):
            homes[k].notes.append(n)
        for t in homes:
            t.notes.sort()
    return out
