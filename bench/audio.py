"""Audio: transcription of rendered melodies (and, as they land, the codec and the audio prior).

    python bench/audio.py [--data ../shared/data] [--melodies 20] [--seconds 20] [--only transcription]

Prints one ``name: value`` line per figure (progress on stderr). Protocols (issue 8):

- ``transcription_f1`` (with ``_precision`` and ``_recall``): ``--melodies`` validation tunes of the
  Nottingham folk corpus (the split training uses), the melody (first track) of each, its first
  ``--seconds`` seconds, rendered through the project's SoundFont renderer (FluidSynth with the General
  MIDI SoundFont when present; the renderer used is printed) on piano, flute, violin and clarinet in turn,
  then transcribed by ``cadenza.audio.transcribe``. Note-level F1 with mir_eval's conventions: a note is
  found when its onset is within 50 ms and its pitch within 50 cents (exact semitone); offsets ignored.
  Aim: >= 0.9. ``transcription_realtime_factor``: seconds of audio per second of transcription.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from foundation import emit, log, validation_pieces  # noqa: E402

PROGRAMS = [(0, "piano"), (73, "flute"), (40, "violin"), (71, "clarinet")]


def _melody(piece, seconds: float):
    """The first track's notes starting in the first ``seconds`` seconds, as a one-track score."""
    import symusic

    from cadenza.score.build import ticks_to_seconds

    s = piece.copy()
    s.tracks = [s.tracks[0]]
    starts = ticks_to_seconds(s, np.array([n.time for n in s.tracks[0].notes]))
    keep = np.flatnonzero(starts < seconds)
    t = s.tracks[0]
    arr = t.notes.numpy()
    t.notes = symusic.Note.from_numpy(arr["time"][keep], arr["duration"][keep], arr["pitch"][keep],
                                      arr["velocity"][keep], "tick")
    return s


def _intervals(score):
    from cadenza.score.build import ticks_to_seconds

    notes = sorted((n.time, n.end, n.pitch) for t in score.tracks for n in t.notes)
    on = ticks_to_seconds(score, np.array([n[0] for n in notes]))
    off = ticks_to_seconds(score, np.array([n[1] for n in notes]))
    hz = 440.0 * 2 ** ((np.array([n[2] for n in notes], dtype=float) - 69) / 12)
    return np.stack([on, np.maximum(off, on + 1e-3)], axis=1), hz


def bench_transcription(a) -> None:
    import mir_eval

    from cadenza.audio.transcribe import transcribe_array
    from cadenza.render import render_audio

    p_all, r_all, f_all = [], [], []
    audio_s = wall = 0.0
    renderer = None
    for n, (pid, piece) in enumerate(validation_pieces(f"{a.data}/nottingham", "folk")):
        if n >= a.melodies:
            break
        program, name = PROGRAMS[n % len(PROGRAMS)]
        mel = _melody(piece, a.seconds)
        mel.tracks[0].program = program
        audio = render_audio(mel, sample_rate=22050, name=pid)
        renderer = audio.renderer
        t = time.perf_counter()
        est = transcribe_array(audio.samples, audio.sample_rate, tempo=float(mel.tempos[0].qpm), program=program)
        wall += time.perf_counter() - t
        audio_s += audio.seconds
        ref_i, ref_p = _intervals(mel)
        est_i, est_p = _intervals(est)
        p, r, f, _ = mir_eval.transcription.precision_recall_f1_overlap(
            ref_i, ref_p, est_i, est_p, onset_tolerance=0.05, pitch_tolerance=50.0, offset_ratio=None)
        p_all.append(p), r_all.append(r), f_all.append(f)
        log(f"transcription {n + 1}/{a.melodies} {pid} ({name}): P {p:.3f} R {r:.3f} F1 {f:.3f}")
    emit("transcription_melodies", len(f_all))
    emit("transcription_renderer", renderer)
    emit("transcription_precision", float(np.mean(p_all)))
    emit("transcription_recall", float(np.mean(r_all)))
    emit("transcription_f1", float(np.mean(f_all)))
    emit("transcription_realtime_factor", audio_s / wall)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--melodies", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--only", default="transcription")
    a = ap.parse_args()
    parts = set(a.only.split(","))
    if "transcription" in parts:
        bench_transcription(a)


if __name__ == "__main__":
    main()
