"""Scores: the one in-memory type is symusic.Score (tick based).

Read and write MIDI, ABC and MusicXML; build scores from typed notes and chord symbols; parse
General MIDI instrument names. music21 is only used at the edges (see convert.py). This package
never imports torch or miditok.
"""

from cadenza.score.build import count_notes, score_seconds
from cadenza.score.chords import chord_pitches, parse_chords
from cadenza.score.edit import quantize, set_program, set_tempo, transpose
from cadenza.score.instruments import GM_PROGRAMS, instrument_name, parse_instrument, parse_instruments
from cadenza.score.io import SUFFIXES, read_abc_tunes, read_score, write_score
from cadenza.score.notes import parse_notes, pitch_name



def __getattr__(name: str):
    # convert.py imports music21 (about half a second); load it only when someone asks for it.
    if name in ("from_music21", "to_music21"):
        from cadenza.score import convert

        return getattr(convert, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "GM_PROGRAMS",
    "SUFFIXES",
    "chord_pitches",
    "count_notes",
    "from_music21",
    "instrument_name",
    "parse_chords",
    "parse_instrument",
    "parse_instruments",
    "parse_notes",
    "pitch_name",
    "quantize",
    "read_abc_tunes",
    "read_score",
    "score_seconds",
    "set_program",
    "set_tempo",
    "to_music21",
    "transpose",
    "write_score",
]
