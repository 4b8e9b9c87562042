"""How fast cadenza turns a score into sound, against the other SoundFont renderers, in one run.

    python bench/render.py [--seconds 180] [--soundfont FILE.sf2] [--sample-rate 44100]

The test piece is made here: a 3-minute, 8-track General MIDI arrangement at 120 bpm (piano with
sustain pedal, bass, drums, strings, guitar, brass, flute, organ; chords, arpeggios, a melody and a
tempo change at the middle), written to a temporary MIDI file and read back, so every renderer gets
the same real file. Each renderer renders the whole piece ``--repeats`` times (default 3, after a short
warm-up that loads the SoundFont); the figure is seconds of music per wall second of the median run
(``render_realtime_factor_<renderer>``), and ``render_ratio_<renderer>_vs_<peer>`` compares them.

Renderers:
* ``fluidsynth``: cadenza's choice (cadenza.render.audio: FluidSynth through pyfluidsynth, our event
  loop, float32 output);
* ``tinysoundfont``: TinySoundFont (PyPI tinysoundfont; it requires PyAudio for playback, so it is not
  a cadenza dependency: install it with ``pip install --no-deps tinysoundfont`` to measure it), fed by
  the same event list;
* ``symusic``: symusic's Synthesizer (prestosynth) with the same SoundFont, when it works (symusic
  0.6.0 fails to return its audio under numpy 2: reported as ``render_status_symusic``);
* ``builtin``: cadenza's fallback synthesizer (no SoundFont).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import symusic

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from cadenza.render.audio import (BEND, CONTROL, DRUM_CHANNEL, NOTE_OFF, NOTE_ON, find_soundfont,  # noqa: E402
                                  midi_events, normalize_peak, render_audio)


def emit(name: str, value) -> None:
    print(f"{name}: {value:.4f}" if isinstance(value, float) else f"{name}: {value}", flush=True)


def test_piece(seconds: float = 180.0, tpq: int = 480) -> symusic.Score:
    """An 8-track GM arrangement of ``seconds`` at 120 bpm (slowing to 100 bpm halfway)."""
    rng = np.random.default_rng(0)
    s = symusic.Score(tpq)
    s.tempos.append(symusic.Tempo(0, qpm=120.0))
    s.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    bar = 4 * tpq
    # bars so that the whole piece lasts `seconds` with the tempo change at the middle bar
    half = int(round(seconds / 2 / (4 * 60 / 120)))
    bars = half + int(round(seconds / 2 / (4 * 60 / 100)))
    s.tempos.append(symusic.Tempo(half * bar, qpm=100.0))
    chords = [[0, 4, 7], [9, 12, 16], [5, 9, 12], [7, 11, 14]]  # I vi IV V in C
    tracks = {name: symusic.Track(name, p, drum) for name, p, drum in [
        ("Piano", 0, False), ("Bass", 33, False), ("Drums", 0, True), ("Strings", 48, False),
        ("Guitar", 25, False), ("Brass", 61, False), ("Flute", 73, False), ("Organ", 16, False)]}
    scale = [0, 2, 4, 5, 7, 9, 11]
    for b in range(bars):
        t0 = b * bar
        ch = chords[b % 4]
        root = 48 + ch[0]
        for q in range(4):  # piano: a chord per beat, with the pedal held through the bar
            for c in ch:
                tracks["Piano"].notes.append(symusic.Note(t0 + q * tpq, tpq // 2, 60 + c, 70 + (q == 0) * 20))
        tracks["Piano"].controls.append(symusic.ControlChange(t0, 64, 127))
        tracks["Piano"].controls.append(symusic.ControlChange(t0 + bar - 10, 64, 0))
        for q in range(8):  # bass: eighths
            tracks["Bass"].notes.append(symusic.Note(t0 + q * tpq // 2, tpq // 2 - 20, 36 + ch[0] + (q % 2) * 12, 90))
        for q in range(16):  # drums: kick, snare, hats in sixteenths
            t = t0 + q * tpq // 4
            tracks["Drums"].notes.append(symusic.Note(t, tpq // 4, 42, 60 + 20 * (q % 4 == 0)))
            if q % 8 == 0:
                tracks["Drums"].notes.append(symusic.Note(t, tpq // 2, 36, 110))
            if q % 8 == 4:
                tracks["Drums"].notes.append(symusic.Note(t, tpq // 2, 38, 100))
        if b % 8 == 0:
            tracks["Drums"].notes.append(symusic.Note(t0, tpq, 49, 100))
        for c in ch:  # strings: whole-bar chords
            tracks["Strings"].notes.append(symusic.Note(t0, bar, 60 + c + 12, 64))
        for q in range(8):  # guitar: arpeggio in eighths
            tracks["Guitar"].notes.append(symusic.Note(t0 + q * tpq // 2, tpq // 2, 52 + ch[q % 3] + 12 * (q // 3 % 2), 75))
        if b % 2:  # brass: stabs on beats 2 and 4 every other bar
            for q in (1, 3):
                for c in ch[:2]:
                    tracks["Brass"].notes.append(symusic.Note(t0 + q * tpq, tpq // 2, 60 + c, 85))
        t = t0  # flute: a melody of quarters and eighths from the scale
        while t < t0 + bar:
            d = tpq if rng.random() < 0.6 else tpq // 2
            tracks["Flute"].notes.append(symusic.Note(t, d, 72 + scale[rng.integers(0, 7)], 80))
            t += d
        tracks["Organ"].notes.append(symusic.Note(t0, bar, root, 50))  # organ: a pedal note
        tracks["Organ"].notes.append(symusic.Note(t0, bar, root + 7, 50))
    for tr in tracks.values():
        s.tracks.append(tr)
    return s


def render_tinysoundfont(score: symusic.Score, soundfont: Path, sample_rate: int) -> np.ndarray:
    import tinysoundfont

    synth = tinysoundfont.Synth(samplerate=sample_rate, gain=-12)
    sfid = synth.sfload(str(soundfont))
    times, events = midi_events(score, sample_rate)
    total = int(times[-1]) + 3 * sample_rate
    out = np.zeros((total, 2), dtype=np.float32)
    cursor = 0
    for s, (kind, c, a, b, _) in zip(times, events):
        while cursor < s:
            n = min(int(s) - cursor, 1 << 16)
            out[cursor:cursor + n] = np.frombuffer(synth.generate(n), dtype=np.float32).reshape(-1, 2)
            cursor += n
        if kind == NOTE_ON:
            synth.noteon(c, a, b)
        elif kind == NOTE_OFF:
            synth.noteoff(c, a)
        elif kind == CONTROL:
            synth.control_change(c, a, b)
        elif kind == BEND:
            synth.pitchbend(c, a)
        else:
            synth.program_select(c, sfid, 128 if c == DRUM_CHANNEL else 0, a, is_drums=c == DRUM_CHANNEL)
    while cursor < total:
        n = min(total - cursor, 1 << 16)
        out[cursor:cursor + n] = np.frombuffer(synth.generate(n), dtype=np.float32).reshape(-1, 2)
        cursor += n
    return out


def render_symusic(score: symusic.Score, soundfont: Path, sample_rate: int) -> np.ndarray:
    from cadenza.render.audio import pedal_held_notes

    synth = symusic.core.Synthesizer(str(soundfont), sample_rate, 0)
    return np.asarray(synth.render(pedal_held_notes(score), True)).T


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=180.0, help="length of the test piece (default 180)")
    ap.add_argument("--soundfont", help="SoundFont (default: the one cadenza finds)")
    ap.add_argument("--sample-rate", type=int, default=44100)
    ap.add_argument("--keep", help="folder to keep the test MIDI and each renderer's WAV in")
    ap.add_argument("--repeats", type=int, default=3, help="runs per renderer; the median counts (default 3)")
    a = ap.parse_args()
    sf = find_soundfont(a.soundfont)
    sr = a.sample_rate
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(a.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        mid = folder / "bench_8_tracks.mid"
        test_piece(a.seconds).dump_midi(str(mid))
        score = symusic.Score(str(mid))
        music = score.to("second").end()
        emit("piece_seconds", float(music))
        emit("piece_tracks", len(score.tracks))
        emit("piece_notes", sum(len(t.notes) for t in score.tracks))
        emit("sample_rate", sr)
        emit("soundfont", str(sf) if sf else "none")
        short = test_piece(4.0)
        runs = {"fluidsynth": lambda s: render_audio(s, soundfont=sf, sample_rate=sr, renderer="fluidsynth").samples,
                "tinysoundfont": lambda s: normalize_peak(render_tinysoundfont(s, sf, sr)),
                "symusic": lambda s: normalize_peak(render_symusic(s, sf, sr)),
                "builtin": lambda s: render_audio(s, sample_rate=sr, renderer="builtin").samples}
        if sf is None:
            for name in ("fluidsynth", "tinysoundfont", "symusic"):
                emit(f"render_status_{name}", "skipped: no SoundFont found")
                runs.pop(name)
        factors = {}
        for name, run in runs.items():
            try:
                run(short)  # warm-up: loads the SoundFont into the page cache, imports
                walls = []
                for _ in range(max(1, a.repeats)):
                    t0 = time.perf_counter()
                    audio = run(score)
                    walls.append(time.perf_counter() - t0)
            except Exception as e:  # a peer that fails here is reported, not fatal
                emit(f"render_status_{name}", f"failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}")
                continue
            wall = float(np.median(walls))
            factors[name] = music / wall
            emit(f"render_wall_s_{name}", wall)
            emit(f"render_realtime_factor_{name}", music / wall)
            emit(f"render_peak_{name}", float(np.abs(audio).max()))
            if a.keep:
                import soundfile

                soundfile.write(str(folder / f"{name}.wav"), audio, sr)
    chosen = "fluidsynth" if sf else "builtin"
    for peer in factors:
        if peer != chosen and chosen in factors:
            emit(f"render_ratio_{chosen}_vs_{peer}", factors[chosen] / factors[peer])
    emit("render_chosen", chosen)
    emit("cpu_cores", len(os.sched_getaffinity(0)))


if __name__ == "__main__":
    main()
