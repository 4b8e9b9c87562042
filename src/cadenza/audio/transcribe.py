"""A monophonic recording (hummed, sung, played) -> notes.

Pitch: librosa's pYIN (probabilistic YIN with Viterbi voicing; the model is the algorithm itself, so
nothing is downloaded). Notes: runs of voiced frames on one semitone, split where librosa's onset
detector finds a new attack inside a run (a repeated note), starts snapped to a nearby onset, runs
shorter than ``min_note_s`` dropped. Velocity: the note's peak RMS level. Optionally the onsets and
lengths are put on a grid of the given (or estimated) tempo.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

import numpy as np
import symusic

from cadenza.errors import CadenzaError

SR = 22050  # pYIN's native rate in librosa: 2048-sample frames are 93 ms, enough for C2
HOP = 256  # 11.6 ms per frame
FMIN, FMAX = 65.4, 2093.0  # C2..C7: voices, whistling and most melody instruments


def _mono(audio: np.ndarray, sr: int) -> np.ndarray:
    import librosa

    y = np.asarray(audio, dtype=np.float32)
    if y.ndim == 2:
        y = y.mean(axis=1) if y.shape[1] <= 8 else y.mean(axis=0)
    if sr != SR:
        y = librosa.resample(y, orig_sr=sr, target_sr=SR)
    return y


def _runs(midi: np.ndarray) -> list[tuple[int, int, int]]:
    """(start frame, end frame exclusive, pitch) of each run of one pitch (0 = unvoiced, skipped)."""
    out, start = [], 0
    for i in range(1, len(midi) + 1):
        if i == len(midi) or midi[i] != midi[start]:
            if midi[start] > 0:
                out.append((start, i, int(midi[start])))
            start = i
    return out


def transcribe_array(audio: np.ndarray, sr: int, *, tempo: float | None = None, quantize: str | None = None,
                     program: int = 0, min_note_s: float = 0.06) -> symusic.Score:
    """Notes of a monophonic recording as a one-track score (seconds kept exactly unless ``quantize``)."""
    import librosa

    from cadenza.score.edit import parse_grid, quantize as quantize_score

    grid = parse_grid(quantize) if quantize else None  # a bad grid is said before any work
    y = _mono(audio, sr)
    if len(y) < 2048:
        raise CadenzaError("the recording is shorter than 0.1 s: nothing to transcribe")
    peak = float(np.abs(y).max())
    if peak < 1e-4:
        raise CadenzaError("the recording is silent: nothing to transcribe")
    y = y / peak
    with numba_first_use():
        features = analyse(y)
        if tempo is None and quantize:
            est, _ = librosa.beat.beat_track(y=y, sr=SR, hop_length=HOP)
            tempo = float(np.atleast_1d(est)[0]) or 120.0
    notes = find_notes(features, min_note_s)
    if not notes:
        raise CadenzaError("no pitched notes found in the recording (is it a single voice or instrument?)")
    t0 = librosa.frames_to_time(np.array([n[0] for n in notes]), sr=SR, hop_length=HOP)
    t1 = librosa.frames_to_time(np.array([n[1] for n in notes]), sr=SR, hop_length=HOP)
    qpm = float(tempo or 120.0)
    score = symusic.Score(480)
    score.tempos.append(symusic.Tempo(0, qpm=qpm))
    score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    ticks_per_s = 480 * qpm / 60
    start, end = np.round(t0 * ticks_per_s), np.round(t1 * ticks_per_s)
    track = symusic.Track("Transcription", program, False)
    for s, e, (_, _, pitch, vel) in zip(start, end, notes):
        track.notes.append(symusic.Note(int(s), max(1, int(e - s)), pitch, vel))
    score.tracks.append(track)
    return quantize_score(score, grid) if grid is not None else score


_COMPILED = threading.Event()  # set once this process has run librosa's numba code


@contextlib.contextmanager
def numba_first_use():
    """Hold a lock shared by every cadenza process (flock on ~/.cache/cadenza/numba.lock) while this
    process first runs librosa's numba-compiled code. numba writes the two cache files of a gufunc (pYIN's
    Viterbi, beat tracking) with separate renames, so two processes compiling at once can pair files from
    different processes and crash with SIGSEGV (numba/numba#10128, librosa/librosa#1998); one at a time,
    the second finds the first's cache. Later calls in the process compile nothing and take no lock."""
    if _COMPILED.is_set():
        yield
        return
    try:
        import fcntl

        folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cadenza"
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / "numba.lock", "a")  # noqa: SIM115 - held across the yield
    except (ImportError, OSError):  # no fcntl (Windows) or no cache folder: run unlocked, as before
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
            _COMPILED.set()
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def analyse(y: np.ndarray) -> dict[str, np.ndarray]:
    """Frame-wise features of mono audio at ``SR`` (peak 1): pYIN's f0 and voicing, onsets, level."""
    import librosa

    f0, voiced, vprob = librosa.pyin(y, fmin=FMIN, fmax=FMAX, sr=SR, frame_length=2048, hop_length=HOP)
    oenv = librosa.onset.onset_strength(y=y, sr=SR, hop_length=HOP)
    onsets = librosa.onset.onset_detect(onset_envelope=oenv, sr=SR, hop_length=HOP, backtrack=False, units="frames")
    rms = librosa.feature.rms(y=y, frame_length=2048, hop_length=HOP)[0]
    return {"f0": f0, "voiced": voiced, "vprob": vprob, "onsets": onsets, "oenv": oenv, "rms": rms}


def _reattack(rms: np.ndarray, o: int, a: int, b: int) -> bool:
    """Is the onset at frame ``o`` inside the run [a, b) of one pitch a new attack on that pitch?

    Yes if the level rises there (a detached note), or if it dips and comes back (a legato repeat: the
    old note's release and the new note's attack overlap, so within 140 ms the 93 ms level falls to
    under 1/1.3 of what it was and then rises again by 5%). A release alone falls and does not come
    back; vibrato moves the level too, but only where the onset detector fires does it count. The
    thresholds were chosen on 40 rendered folk melodies (bench/audio.py and its --offset 20): a
    shallower dip (1.15) found more repeats but split more long flute and violin notes.
    """
    if rms[o:o + 4].max() > 1.2 * rms[max(a, o - 3):o].min():
        return True
    seg = rms[o:min(b, o + 12)]
    if len(seg) < 2:
        return False
    k = o + int(np.argmin(seg))
    low = rms[k]
    return rms[max(a, o - 3):o + 1].max() > 1.3 * low and rms[k:min(b, k + 10)].max() > 1.05 * low


def _attack_start(oenv: np.ndarray, o: int, lo: int) -> int:
    """The onset detector marks where the spectral flux peaks, in the middle of a soft attack (28-33 ms
    after the note began on a flute or violin): step back while the flux is still above a tenth of its
    rise, up to 4 frames (46 ms) and not before ``lo``."""
    first = max(lo, o - 4)
    base = oenv[first:o + 1].min()
    j = o
    while j > first and oenv[j - 1] > base + 0.1 * (oenv[o] - base):
        j -= 1
    return j


def find_notes(feat: dict[str, np.ndarray], min_note_s: float = 0.06) -> list[tuple[int, int, int, int]]:
    """(start frame, end frame, pitch, velocity) of each note, from ``analyse``'s features."""
    import librosa
    import scipy.signal

    f0, voiced, onsets, rms, oenv = feat["f0"], feat["voiced"], feat["onsets"], feat["rms"], feat["oenv"]
    midi = np.where(voiced & np.isfinite(f0), np.round(librosa.hz_to_midi(np.nan_to_num(f0, nan=FMIN))), 0)
    midi = scipy.signal.medfilt(midi.astype(float), 5).astype(int)  # one-frame octave slips and glitches
    min_frames = max(1, int(round(min_note_s * SR / HOP)))
    snap = swell = int(round(0.12 * SR / HOP))  # an onset up to 120 ms before a run's start marks its attack
    notes = []
    for a, b, pitch in _runs(midi):
        # an onset inside a run is a new attack on the same pitch (see _reattack: a note's release also
        # moves the onset function) unless it is the swell of the note's own attack (a flute's or
        # violin's, within 120 ms of the run's start)
        cuts = [a] + [int(o) for o in onsets if a + max(min_frames, swell) <= o <= b - min_frames
                      and _reattack(rms, int(o), a, b)] + [b]
        for s, e in zip(cuts[:-1], cuts[1:]):
            if e - s < min_frames:
                continue
            # pYIN calls a note voiced some frames after its attack (tens of ms for a flute's or a
            # violin's soft attack): the onset detector's attack just before the run is its start, and
            # a legato note before it ends there
            near = [int(o) for o in onsets if s - snap <= o <= s and (not notes or o >= notes[-1][0] + min_frames)]
            start = near[-1] if near else s
            if near:
                start = _attack_start(oenv, start, notes[-1][0] + min_frames if notes else 0)
            if notes and start < notes[-1][1]:
                notes[-1] = (notes[-1][0], start, notes[-1][2], notes[-1][3])
            level = float(rms[start:e].max()) if e > start else 0.0
            db = 20 * np.log10(max(level, 1e-5))
            vel = int(np.clip(30 + (db + 40) * 2, 30, 120))  # -40 dBFS -> 30, 0 dBFS -> 110
            notes.append((start, e, pitch, vel))
    return notes


def transcribe(path: str | os.PathLike, force: bool = False, **kw) -> symusic.Score:
    """Notes of a recording (.wav/.flac/.ogg/.mp3): see ``transcribe_array``; ``force`` lifts the
    input length limit."""
    from cadenza.render.audio import read_audio

    data, sr = read_audio(Path(path), force=force)
    return transcribe_array(data, sr, **kw)
