"""How much input cadenza takes: one table, checked before any work starts.

The CLI and the studio check the same numbers (the studio's settings start from them; a CLI command
with ``--force`` lifts the ones marked *force* below, for a user who knows their machine). The README's
"Limits" table lists them; a test keeps the two in step.

Each figure is far above what real music needs and far below what hurts a laptop: the largest
piece in the shared corpora (ASAP, a Liszt performance) has about 20,000 notes and lasts 22 minutes;
the 10,000-track MIDI, the 1.9 GB unzipped ``.mxl``, the note 2^28 ticks long and ``--bars 1000000000``
of issue 18 are what they stop.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Limits:
    # files (score or audio) as read
    file_bytes: int = 20_000_000  # a file as given (an .mxl still zipped)          force
    unzipped_bytes: int = 50_000_000  # an .mxl's MusicXML once unzipped            force
    tracks: int = 256  # tracks of a score                                          force
    notes: int = 200_000  # notes of a score                                        force
    # MusicXML measures: music21's reader is quadratic in a part's measures (4,000 take 3.7 s, 8,000 ~15 s)
    measures_per_part: int = 5_000  # force
    measures: int = 50_000  # all parts together                                    force
    beats: int = 255  # a time signature's beats: a MIDI file holds at most 255 (ASAP has a cadenza bar of 175/4)
    score_seconds: float = 3600.0  # a score's length, at its own tempos            force
    note_seconds: float = 600.0  # one note's length                                force
    tempo_min: float = 10.0  # quarter notes per minute
    tempo_max: float = 1000.0
    ticks_per_quarter_max: int = 32767  # (and more than 0: a MIDI file's division)
    # what is asked of a generation (the CLI, the studio's API and its page all take these ranges)
    temperature_min: float = 0.01  # below it, logits / T overflow (1e-320 crashed); 0.01 is all but greedy
    temperature_max: float = 3.0  # past it, every pitch is about as likely as any other
    seed_max: int = 4_294_967_295  # seeds are 0 to 2^32 - 1
    bars: int = 512  # force
    seconds: float = 900.0  # force
    max_tokens: int = 200_000  # force
    variations: int = 16  # pieces at once (each holds its own KV cache)
    particles: int = 256  # candidate harmonizations of a melody at once (harmonize --particles)
    # audio in
    audio_seconds: float = 600.0  # force
    audio_channels: int = 8
    # the studio's requests
    body_bytes: int = 1_000_000  # a JSON request body
    upload_bytes: int = 2_000_000  # an uploaded file
    job_seconds: float = 600.0  # wall time of one request's work; past it, it stops


LIMITS = Limits()

FORCE = ("file_bytes", "unzipped_bytes", "tracks", "notes", "measures_per_part", "measures", "score_seconds",
         "note_seconds", "bars", "seconds",
         "max_tokens", "audio_seconds")


def table() -> dict[str, float]:
    """{name: value} of every limit (for the studio's /api/options and the README's table)."""
    return asdict(LIMITS)


def cap(name: str, force: bool = False) -> float:
    """The limit ``name``, or infinity where ``force`` lifts it (the names in FORCE)."""
    return float("inf") if force and name in FORCE else getattr(LIMITS, name)
