"""MusicXML reading speed: cadenza's reader against music21's own stream -> MIDI path, in the same run.

    python bench/musicxml_read.py

Prints one ``name: value`` line per figure (progress on stderr). Both sides parse the file with music21
(``converter.parse``, timed apart as ``parse_s``); they differ in how the stream becomes a symusic Score:
``cadenza_s`` is ``cadenza.score.read_score`` end to end (checks, parse, cadenza's walk), ``music21_midi_s``
is the parse plus ``midi.translate.streamToMidiFile`` and symusic reading those bytes, the path cadenza
took before issue 18. ``*_notes`` counts what each gives (the MIDI path also counts grace notes, which it
stretches, see tests/test_musicxml_read.py); ``music21_midi_s: refused`` where music21 gives up.

Works: Beethoven's Grosse Fuge op. 133 and quartet op. 132 (music21's corpus) and a made-up measure of
30,000 eighths (the fuzzer's find: over 20 s before).
"""

from __future__ import annotations

import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from foundation import emit, log  # noqa: E402

warnings.filterwarnings("ignore")


def one_measure(notes: int) -> Path:
    note = "<note><pitch><step>G</step><octave>4</octave></pitch><duration>1</duration></note>"
    text = ('<?xml version="1.0" encoding="UTF-8"?><score-partwise version="4.0"><part-list><score-part id="P1">'
            '<part-name>Flute</part-name></score-part></part-list><part id="P1"><measure number="1"><attributes>'
            f'<divisions>2</divisions></attributes>{note * notes}</measure></part></score-partwise>')
    path = Path(tempfile.mkdtemp(prefix="cadenza-bench-")) / f"measure{notes}.musicxml"
    path.write_text(text)
    return path


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    import music21
    import symusic
    from music21.midi import translate

    from cadenza.score import read_score

    works = {"grosse_fuge": music21.corpus.getWork("beethoven/opus133"),
             "op132": music21.corpus.getWork("beethoven/opus132"), "measure30000": one_measure(30_000)}
    for name, path in works.items():
        log(f"{name}: {path}")
        score, ours = timed(lambda: read_score(path, force=True))
        emit(f"{name}_cadenza_s", round(ours, 2))
        emit(f"{name}_cadenza_notes", score.note_num())
        stream, parse_s = timed(lambda: music21.converter.parse(str(path), forceSource=True))
        emit(f"{name}_parse_s", round(parse_s, 2))
        try:
            midi, seconds = timed(lambda: symusic.Score.from_midi(translate.streamToMidiFile(stream).writestr()))
        except Exception as e:  # noqa: BLE001 - music21 refuses some files: that is the figure
            log(f"  music21's MIDI path: {e}")
            emit(f"{name}_music21_midi_s", "refused")
            continue
        emit(f"{name}_music21_midi_s", round(parse_s + seconds, 2))
        emit(f"{name}_music21_midi_notes", midi.note_num())
        emit(f"{name}_speedup", round((parse_s + seconds) / max(ours, 1e-9), 1))  # music21's path / cadenza's


if __name__ == "__main__":
    main()
