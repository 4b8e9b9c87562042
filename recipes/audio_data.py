"""Render the audio model's training data from the symbolic corpora (issue 8).

    python recipes/audio_data.py --data ../shared/data --out runs/audio_wavs [--seconds 30] [--jobs 2]

Writes ``OUT/<style>/<split>/<piece>.wav`` (16 kHz mono, 16-bit) through the project's own SoundFont
renderer (FluidSynth + the General MIDI SoundFont): the first ``--seconds`` of each piece. The split is
the one symbolic training uses (``cadenza.train.corpora.is_valid`` on the piece id), written as the
folder name, which ``cadenza audio train`` keeps. Three instrument families:

- ``piano``: POP909 songs (melody, bridge and piano tracks, all on the acoustic grand) and the quantized
  scores of the ASAP classical piano pieces;
- ``strings``: the JSB chorales as a string quartet (violin, violin, viola, cello);
- ``winds``: Nottingham folk tunes, the melody on flute, oboe or clarinet in turn, the accompaniment on
  bassoon and French horn.

Velocities and tempi are the corpora's. Nothing is downloaded; the data stays outside the repository.
"""

from __future__ import annotations

import argparse
import re
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

SR = 16000
WIND_MELODY = [73, 68, 71]  # flute, oboe, clarinet
WIND_BACKING = [70, 60]  # bassoon, French horn
QUARTET = [40, 40, 41, 42]  # violin, violin, viola, cello


def sources(data: Path) -> dict[str, list[tuple[str, str]]]:
    return {
        "piano": [(str(data / "pop909"), "pop"), (str(data / "asap"), "classical")],
        "strings": [(f"jsb:{data / 'jsb-chorales' / 'jsb16th_train_valid.json'}", "chorale")],
        "winds": [(str(data / "nottingham" / "ABC_cleaned"), "folk")],
    }


def instrumentate(score, family: str, n: int):
    s = score.copy()
    tracks = [t for t in s.tracks if not t.is_drum and len(t.notes)]
    for k, t in enumerate(tracks):
        if family == "piano":
            t.program = 0
        elif family == "strings":
            t.program = QUARTET[min(k, 3)]
        else:
            t.program = WIND_MELODY[n % 3] if k == 0 else WIND_BACKING[(n + k) % 2]
            if k:  # the backing under the tune
                for note in t.notes:
                    note.velocity = max(1, int(note.velocity * 0.7))
    s.tracks = tracks
    return s


def clip_seconds(score, seconds: float):
    """The score's first ``seconds`` seconds from its first note, in ticks again."""
    sec = score.to("second")
    start = min((t.notes[0].time for t in sec.tracks if len(t.notes)), default=0.0)
    return sec.clip(start, start + seconds).shift_time(-start).to("tick")


def slug(pid: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", pid).strip("_")[-120:]


def render_one(job) -> float:
    from cadenza.render.audio import render_audio, write_audio

    family, n, pid, score, split, out, seconds = job
    path = Path(out) / family / split / f"{slug(pid)}.wav"
    if path.exists():
        return 0.0
    s = clip_seconds(instrumentate(score, family, n), seconds)
    if not any(len(t.notes) for t in s.tracks):
        return 0.0
    audio = render_audio(s, sample_rate=SR)
    path.parent.mkdir(parents=True, exist_ok=True)
    mono = audio.samples.mean(axis=1) if audio.samples.ndim == 2 else audio.samples
    write_audio(path, mono.astype(np.float32), SR)
    return len(mono) / SR


def jobs(data: Path, out: Path, seconds: float, limits: dict[str, int]):
    from cadenza.train.corpora import Source, is_valid, iter_pieces

    for family, specs in sources(data).items():
        per_source = limits[family] // len(specs)
        for spec, style in specs:
            taken = 0
            for n, (pid, score) in enumerate(iter_pieces(Source(spec, style))):
                if taken >= per_source:
                    break
                taken += 1
                yield family, n, pid, score, "valid" if is_valid(pid) else "train", str(out), seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--out", default="runs/audio_wavs")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--pieces", default="piano=300,strings=305,winds=300",
                    help="pieces per family (split evenly over its sources)")
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    limits = {k: int(v) for k, v in (p.split("=") for p in a.pieces.split(","))}
    total = 0.0
    with ProcessPoolExecutor(a.jobs) as ex:
        for k, secs in enumerate(ex.map(render_one, jobs(Path(a.data), Path(a.out), a.seconds, limits), chunksize=4)):
            total += secs
            if k % 50 == 0:
                print(f"{k} pieces, {total / 60:.1f} minutes rendered", file=sys.stderr, flush=True)
    print(f"rendered {total / 60:.1f} minutes into {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
