"""Write a Score as ABC text.

music21 can read ABC but has no ABC writer, and symusic's dumps_abc shells out to midi2abc
(noisy, names the temp file as title, no control over the grid), so we write ABC ourselves:
one voice per track, L:1/16 with every note on the 1/16 grid, ties across bar lines, chords as
[CEG], K:C with explicit accidentals so no key signature can change a pitch.
"""

from __future__ import annotations

import symusic

from cadenza.score.instruments import instrument_name

UNITS_PER_QUARTER = 4  # L:1/16
_NAMES = ["C", "^C", "D", "^D", "E", "F", "^F", "G", "^G", "A", "^A", "B"]
BARS_PER_LINE = 4


def _pitch(p: int, sharps_in_bar: set[str]) -> str:
    """ABC spelling of MIDI pitch p; C4 (60) is 'C', C5 is 'c'."""
    name = _NAMES[p % 12]
    letter = name[-1]
    octave = p // 12 - 1
    if name.startswith("^"):
        sharps_in_bar.add(letter)
        acc = "^"
    else:
        # A sharp earlier in the bar would carry over to this letter; cancel it explicitly.
        acc = "=" if letter in sharps_in_bar else ""
    if octave >= 5:
        return acc + letter.lower() + "'" * (octave - 5)
    return acc + letter + "," * (4 - octave)


def _events(track: symusic.Track, unit: float) -> list[tuple[int, int, list[int]]]:
    """(start, length, pitches) per distinct onset on the 1/16 grid; a chord lasts until its longest
    note ends or the next onset comes, whichever is first (a voice here cannot overlap itself)."""
    by_onset: dict[int, tuple[set[int], int]] = {}
    for n in track.notes:
        on = round(n.time / unit)
        off = max(on + 1, round((n.time + n.duration) / unit))
        pitches, end = by_onset.get(on, (set(), on + 1))
        pitches.add(n.pitch)
        by_onset[on] = (pitches, max(end, off))
    onsets = sorted(by_onset)
    events = []
    for i, on in enumerate(onsets):
        pitches, end = by_onset[on]
        if i + 1 < len(onsets):
            end = min(end, onsets[i + 1])
        events.append((on, end - on, sorted(pitches)))
    return events


def _length(n: int) -> str:
    return "" if n == 1 else str(n)


def _voice(track: symusic.Track, unit: float, bar: int) -> str:
    out: list[str] = []
    sharps: set[str] = set()
    now, bars_done = 0, 0

    def barline() -> None:
        nonlocal bars_done
        bars_done += 1
        sharps.clear()
        if out and out[-1] == " ":
            out.pop()
        out.append(" |\n" if bars_done % BARS_PER_LINE == 0 else " | ")

    def emit(length: int, pitches: list[int] | None) -> None:
        """Write a note/chord/rest of `length` units from `now`, split (tied) at bar lines."""
        nonlocal now
        while length > 0:
            room = bar - now % bar
            part = min(length, room)
            tie = "-" if pitches and part < length else ""
            if not pitches:
                out.append("z" + _length(part))
            elif len(pitches) == 1:
                out.append(_pitch(pitches[0], sharps) + _length(part) + tie)
            else:
                inner = "".join(_pitch(p, sharps) for p in pitches)
                out.append("[" + inner + "]" + _length(part) + tie)
            out.append(" ")
            now += part
            length -= part
            if now % bar == 0:
                barline()

    for start, length, pitches in _events(track, unit):
        if start > now:
            emit(start - now, None)
        emit(length, pitches)
    text = "".join(out).rstrip()
    if not text.endswith("|"):
        text += " |"
    return text


def score_to_abc(score: symusic.Score, title: str = "Untitled") -> str:
    """ABC text for the score, one voice per non-empty track."""
    tpq = score.ticks_per_quarter
    unit = tpq / UNITS_PER_QUARTER
    ts = score.time_signatures[0] if len(score.time_signatures) else None
    num, den = (ts.numerator, ts.denominator) if ts is not None else (4, 4)
    bar = max(1, round(num * 16 / den))
    qpm = round(score.tempos[0].qpm) if len(score.tempos) else 120
    lines = [
        "X:1",
        "T:" + (" ".join(title.split()) or "Untitled"),
        f"M:{num}/{den}",
        "L:1/16",
        f"Q:1/4={qpm}",
        "K:C",
        "%%MIDI chordattack 0",  # abc2midi may otherwise stagger the notes of a chord
    ]
    tracks = [t for t in score.tracks if len(t.notes)]
    for i, track in enumerate(tracks, 1):
        name = (track.name.strip() or instrument_name(track.program, track.is_drum)).replace('"', "'")
        lines.append(f'V:{i} name="{name}"')
        if track.is_drum:
            lines.append("%%MIDI channel 10")
        else:
            lines.append(f"%%MIDI program {track.program}")
        lines.append(_voice(track, unit, bar))
    if not tracks:
        lines.append(f"z{bar} |")
    return "\n".join(lines) + "\n"
