"""The one place where music21 streams and symusic Scores are converted into each other.

music21 -> symusic walks the stream itself (``from_music21``): music21's own MIDI writer strips ties
and assigns channels in quadratic time (Beethoven's Grosse Fuge, 8,982 notes, took 29 s to read, a
30,000-note measure minutes) and refuses a piece whose repeats it cannot expand. The walk is linear,
plays such repeats as written, and gives the same notes, velocities, programs, tempos, meters and
keys as the MIDI path (tests/test_score.py compares them on music21's corpus). symusic -> music21
goes through MIDI bytes: music21's MIDI reader quantizes and spells.
"""

from __future__ import annotations

import logging

import music21
import symusic
from music21 import harmony, instrument, note, stream, volume
from music21.midi import translate

from cadenza.errors import ScoreError
from cadenza.score.build import TPQ
from cadenza.score.instruments import instrument_name

_REPEATS = ("Repeat", "RepeatExpression", "RepeatBracket")


def _quiet_music21() -> None:
    """music21 writes its warnings straight to stderr (``Environment.warn``), before or between cadenza's
    one-line messages ('musicxml.m21ToXml: WARNING: we are out of midi channels! help!' for a 17-part
    score, harmless in MusicXML); they go to the ``music21`` logger instead (level INFO: not shown)."""
    log = logging.getLogger("music21")
    music21.environment.Environment.warn = lambda self, msg, header=None: log.info("%s", msg)


_quiet_music21()


def from_music21(source: music21.stream.Stream) -> symusic.Score:
    """A music21 stream (Score, Part, ...) as a symusic Score at ``TPQ`` ticks per quarter: one track per
    part, repeats expanded where music21 can (as written where it cannot), ties joined, grace notes and
    chord symbols left out (as music21's MIDI writer does)."""
    try:
        parts = _expanded_parts(source)
        score = symusic.Score(TPQ)
        _conductor(score, parts[0] if parts else source)
        for part in parts:
            track = _track(part)
            if track is not None:
                score.tracks.append(track)
    except ScoreError:
        raise
    except Exception as e:  # music21 raises many kinds; callers want one ScoreError
        raise ScoreError(f"cannot convert music21 stream: {_one_line(e)}") from None
    return score


def _expanded_parts(source: stream.Stream) -> list[stream.Stream]:
    parts = list(source.parts) if isinstance(source, stream.Score) else [source]
    out = []
    for part in parts:
        if part.recurse().getElementsByClass(_REPEATS).first() is not None:
            try:  # a deep copy: only for parts that have repeats
                part = part.expandRepeats()
            except Exception:  # noqa: BLE001 - music21 'badly formed repeats': the part plays as written
                pass
        out.append(part)
    return out


def _ticks(quarters) -> int:
    return int(round(float(quarters) * TPQ))


def _conductor(score: symusic.Score, part: stream.Stream) -> None:
    """Tempos, meters and keys of the first part (each at most once per offset), 120 bpm and 4/4 when absent."""
    flat = part.flatten()
    for klass, add in (("MetronomeMark", _tempo), ("TimeSignature", _meter), ("KeySignature", _key)):
        last = -1
        for el in flat.getElementsByClass(klass):
            at = _ticks(flat.elementOffset(el))
            if at > last:
                add(score, at, el)
            last = at
    if not len(score.tempos):
        score.tempos.append(symusic.Tempo(0, qpm=120.0))
    if not len(score.time_signatures):
        score.time_signatures.append(symusic.TimeSignature(0, 4, 4))


def _tempo(score, at, mm) -> None:
    qpm = mm.getQuarterBPM()
    if qpm:
        score.tempos.append(symusic.Tempo(at, qpm=float(qpm)))


def _meter(score, at, ts) -> None:
    score.time_signatures.append(symusic.TimeSignature(at, int(ts.numerator), int(ts.denominator)))


def _key(score, at, ks) -> None:
    score.key_signatures.append(symusic.KeySignature(at, int(ks.sharps), int(getattr(ks, "mode", "") == "minor")))


def _track(part: stream.Stream) -> symusic.Track | None:
    # the first instrument anywhere in the part (getInstrument misses one inside a measure: a humdrum file's)
    inst = part.recurse().getElementsByClass(instrument.Instrument).first() or instrument.Instrument()
    drums = isinstance(inst, instrument.UnpitchedPercussion) or inst.midiChannel == 9
    name = part.partName or inst.partName or inst.instrumentName or ""
    track = symusic.Track(str(name), _program(inst), bool(drums))
    volume.realizeVolume(part)  # dynamics -> each note's velocity, in one pass (as the MIDI writer does)
    flat = part.flatten()
    notes = _notes(flat)
    if not notes and not len(flat.notesAndRests):
        return None
    for t, d, pitch, vel in notes:
        track.notes.append(symusic.Note(t, max(d, 1), pitch, vel))
    return track


def _program(inst: instrument.Instrument) -> int:
    """The part's GM program; a file that names the instrument but not its program (a humdrum 'Soprano')
    gets the program music21 gives that instrument (Voice Oohs), as music21's MIDI writer does."""
    if inst.midiProgram is not None:
        return int(inst.midiProgram)
    try:
        return int(type(inst)().midiProgram or 0)
    except Exception:  # noqa: BLE001 - an instrument class that needs arguments: the default program
        return 0


def _notes(flat: stream.Stream) -> list[list[int]]:
    """[start, duration, pitch, velocity] of every sounding note, tied notes joined into one (by pitch,
    in one pass: music21's stripTies is quadratic)."""
    out: list[list[int]] = []
    open_ties: dict[int, list[int]] = {}  # pitch -> the note its tie continues
    for el in flat.notes:
        if el.duration.isGrace or (isinstance(el, harmony.Harmony) and not el.writeAsChord):
            continue
        start, length = _ticks(flat.elementOffset(el)), _ticks(el.duration.quarterLength)
        vel = int(round(el.volume.cachedRealized * 127))
        for n in (el.notes if el.isChord else (el,)):
            pitch = _pitch(n)
            tie = (n.tie or el.tie) if el.isChord else el.tie
            held = open_ties.get(pitch)
            # a tie's next note of the same pitch, right at its end, continues it (with or without a 'stop':
            # MusicXML files often leave the stop out)
            if held is not None and held[0] + held[1] == start and (tie is None or tie.type != "start"):
                held[1] += length
            else:
                held = [start, length, pitch, vel]
                out.append(held)
            if tie is not None and tie.type in ("start", "continue"):
                open_ties[pitch] = held
            else:
                open_ties.pop(pitch, None)
    return [n for n in out if n[1] > 0]


def _pitch(n) -> int:
    if isinstance(n, note.Unpitched):
        from music21.midi.translate import _get_unpitched_pitch_value

        return _get_unpitched_pitch_value(n)
    return int(n.pitch.midi)


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
