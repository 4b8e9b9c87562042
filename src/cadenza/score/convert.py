"""The one place where music21 streams and symusic Scores are converted into each other.

Both directions go through Standard MIDI bytes: music21's MIDI writer and reader are its most
complete paths (programs, tempo, meter, key), and symusic reads and writes MIDI exactly.
"""

from __future__ import annotations

import music21
import symusic
from music21.midi import translate

from cadenza.errors import ScoreError
from cadenza.score.build import TPQ
from cadenza.score.instruments import instrument_name


def from_music21(stream: music21.stream.Stream) -> symusic.Score:
    """A music21 stream (Score, Part, ...) as a tick-based symusic Score."""
    try:
        data = translate.streamToMidiFile(stream).writestr()
        score = symusic.Score.from_midi(data)
    except Exception as e:  # music21 raises many kinds; callers want one ScoreError
        raise ScoreError(f"cannot convert music21 stream: {_one_line(e)}") from None
    # music21 writes 10080 ticks per quarter; the rest of cadenza expects a small common tpq.
    # 480 keeps sixteenths, triplets and 32nds exact.
    return score.resample(TPQ, min_dur=1) if score.ticks_per_quarter != TPQ else score


def to_music21(score: symusic.Score) -> music21.stream.Score:
    """A symusic Score as a music21 Score, quantized to sixteenths and triplet eighths.

    One part per track that has notes, named after the track (or its GM instrument when unnamed),
    with the score's tempo, time and key signatures.
    """
    tracks = [t for t in score.tracks if len(t.notes)]
    # Rebuild a Score holding only tracks with notes so that music21's parts line up with them.
    clean = symusic.Score(score.ticks_per_quarter)
    for attr in ("tempos", "time_signatures", "key_signatures"):
        for ev in getattr(score, attr):
            getattr(clean, attr).append(ev)
    # An empty first track: symusic writes tempo and meter events into the first MIDI track, and
    # music21 treats them as conductor events (given to every part) only when that track has no
    # notes; otherwise only the first part would get a 3/4 and the rest would default to 4/4.
    clean.tracks.append(symusic.Track("", 0, False))
    for t in tracks:
        # Unnamed: music21 would otherwise also guess an instrument from the track name
        # ('Bass' -> the singing voice) next to the one from the program change.
        copy = t.copy()
        copy.name = ""
        clean.tracks.append(copy)
    try:
        midi = music21.midi.MidiFile()
        midi.readstr(clean.dumps_midi())
        m21 = translate.midiFileToStream(midi, quantizePost=True)
    except Exception as e:
        raise ScoreError(f"cannot convert score to music21: {_one_line(e)}") from None
    parts = list(m21.parts)
    for part, track in zip(parts, tracks):
        part.partName = track.name.strip() or instrument_name(track.program, track.is_drum)
        part.partId = None  # let music21 make unique ids; names from MIDI can clash
    return m21


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
