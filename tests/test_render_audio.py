"""Scores to sound, measured on the rendered samples: pitch, timing, drums, tempo, pedal, loudness.

The SoundFont tests use FluidSynth with the system's General MIDI SoundFont (Debian's
fluid-soundfont-gm, installed by .ci/run); on a machine without them they are skipped, except
under CI, where a missing renderer is a failure. The built-in synthesizer is tested everywhere.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile
import symusic

from cadenza.errors import CadenzaError
from cadenza.render import audio as audio_mod
from cadenza.render import render_audio, write_audio
from conftest import make_score
from test_cli import one_line_error, run

SR = 44100


def _soundfont_ready() -> bool:
    try:
        audio_mod._fluidsynth_module()
    except CadenzaError:
        return False
    return audio_mod.find_soundfont() is not None


if not _soundfont_ready() and os.environ.get("CI"):
    raise RuntimeError("CI must have FluidSynth and a General MIDI SoundFont (.ci/run installs them)")
RENDERERS = ["builtin"] + (["fluidsynth"] if _soundfont_ready() else [
    pytest.param("fluidsynth", marks=pytest.mark.skip(reason="no FluidSynth or no General MIDI SoundFont here"))])


def render(score, renderer, **kw):
    return render_audio(score, renderer=renderer, **kw)


def level_db(x: np.ndarray, win: float = 0.005) -> np.ndarray:
    """Short-time RMS level in dB relative to the loudest window, one value per sample."""
    mono = x.mean(1) if x.ndim == 2 else x
    n = max(1, int(win * SR))
    env = np.sqrt(np.convolve(mono.astype(np.float64) ** 2, np.ones(n) / n, "same"))
    return 20 * np.log10(env / env.max() + 1e-12)


def onset(db: np.ndarray, after: float = 0.0, thresh: float = -30.0) -> float:
    i = int(after * SR)
    return (i + int(np.argmax(db[i:] > thresh))) / SR


def release_start(db: np.ndarray, note_end: float) -> float:
    """Where the release begins: the straight line through the level's fall after the note (from
    10 dB to 25 dB below the held level) traced back to the held level. Robust to long SoundFont
    release tails, which fall steadily in dB from the note-off."""
    held = float(np.median(db[int((note_end - 0.06) * SR):int((note_end - 0.01) * SR)]))
    i0 = int((note_end - 0.06) * SR)
    a = i0 + int(np.argmax(db[i0:] < held - 10))
    b = i0 + int(np.argmax(db[i0:] < held - 25))
    slope = 15.0 / max(b - a, 1)  # dB per sample
    return (a - 10.0 / slope) / SR


@pytest.mark.parametrize("renderer", RENDERERS)
def test_a4_pitch_onset_release_and_silence(renderer):
    score = make_score([(69, 1, 2, 100)], tempo=120)  # A4, program 0, from 0.5 s to 1.5 s
    a = render(score, renderer)
    assert a.sample_rate == SR and a.samples.shape[1] == 2 and a.samples.dtype == np.float32
    x = a.samples.mean(1)
    n = int(0.8 * SR)
    seg = x[int(0.6 * SR):int(0.6 * SR) + n] * np.hanning(n)
    spec = np.abs(np.fft.rfft(seg, 8 * len(seg)))
    f0 = np.fft.rfftfreq(8 * len(seg), 1 / SR)[np.argmax(spec)]
    assert abs(f0 - 440) / 440 < 0.02, f0
    db = level_db(a.samples)
    assert abs(onset(db) - 0.5) <= 0.02
    assert abs(release_start(db, 1.5) - 1.5) <= 0.02
    assert db[: int(0.48 * SR)].max() < -60  # silence before the note
    assert db[int(2.0 * SR):].max(initial=-200) < -40  # the release has died away
    assert float(np.abs(a.samples).max()) <= 10 ** (-1 / 20) + 1e-6  # normalized to -1 dBFS, no clipping


@pytest.mark.parametrize("renderer", RENDERERS)
def test_drums_only_is_audible(renderer):
    hits = [(36, 0, 1, 110), (42, 0.5, 0.5, 90), (38, 1, 1, 100), (42, 1.5, 0.5, 90), (49, 2, 2, 100)]
    score = make_score(hits, tempo=120, is_drum=True)
    a = render(score, renderer)
    db = level_db(a.samples)
    for _, beat, _, _ in hits:  # every hit sounds within 20 ms of its time
        t = beat * 0.5
        assert db[int(t * SR):int((t + 0.02) * SR)].max() > -25, t
    assert float(np.abs(a.samples).max()) > 0.5  # normalized: drums alone come out at full level


@pytest.mark.parametrize("renderer", RENDERERS)
def test_tempo_change_moves_onsets(renderer):
    score = make_score([(60 + 2 * k, k, 0.5, 100) for k in range(8)], tempo=120)
    score.tempos.append(symusic.Tempo(4 * 480, qpm=60.0))  # beats 4-7 at 60 bpm: one second each
    a = render(score, renderer)
    db = level_db(a.samples, win=0.002)
    want = [0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0]
    for t in want:
        got = onset(db, after=max(0.0, t - 0.1), thresh=-20)
        assert abs(got - t) <= 0.02, (t, got)


@pytest.mark.parametrize("renderer", RENDERERS)
def test_sustain_pedal_and_velocity(renderer):
    plain = make_score([(60, 0, 0.5, 100)], tempo=120)  # 0.25 s
    held = make_score([(60, 0, 0.5, 100)], tempo=120)
    held.tracks[0].controls.append(symusic.ControlChange(0, 64, 127))
    held.tracks[0].controls.append(symusic.ControlChange(3 * 480, 64, 0))  # pedal up at 1.5 s
    p = render(plain, renderer, normalize=False).samples
    h = render(held, renderer, normalize=False).samples

    def rms(x, a, b):
        seg = x[int(a * SR):int(b * SR)]
        return float(np.sqrt(np.mean(seg ** 2))) if len(seg) else 0.0

    assert rms(h, 0.9, 1.1) > 20 * max(rms(p, 0.9, 1.1), 1e-9)  # the pedal holds the note
    soft = render(make_score([(60, 0, 1, 40)]), renderer, normalize=False).samples
    loud = render(make_score([(60, 0, 1, 120)]), renderer, normalize=False).samples
    assert rms(loud, 0.05, 0.4) > 1.5 * rms(soft, 0.05, 0.4)


@pytest.mark.skipif(not _soundfont_ready(), reason="no FluidSynth or no General MIDI SoundFont here")
def test_every_general_midi_program_sounds():
    """128 tracks (more than MIDI's 16 channels: programs switch per note on shared channels), one
    note each in turn: every program is audible, and the channel sharing plays the right one."""
    s = symusic.Score(480)
    s.tempos.append(symusic.Tempo(0, qpm=120.0))
    for prog in range(128):
        tr = symusic.Track(f"p{prog}", prog, False)
        tr.notes.append(symusic.Note(prog * 480, 360, 60, 110))  # one beat = 0.5 s apart
        s.tracks.append(tr)
    a = render(s, "fluidsynth", normalize=False).samples
    for prog in range(128):
        seg = a[int((prog * 0.5 + 0.02) * SR):int((prog * 0.5 + 0.45) * SR)]
        assert np.sqrt(np.mean(seg ** 2)) > 1e-3, f"program {prog} is silent"
    # the same notes on a piano and on a flute differ (the program really switched)
    piano, flute = a[int(0.05 * SR):int(0.3 * SR)], a[int((73 * 0.5 + 0.05) * SR):int((73 * 0.5 + 0.3) * SR)]
    sp = np.abs(np.fft.rfft(piano.mean(1)))
    sf = np.abs(np.fft.rfft(flute.mean(1)))
    assert np.corrcoef(sp / sp.max(), sf / sf.max())[0, 1] < 0.9


def test_builtin_families_have_different_timbres():
    """Each GM family's sound differs: harmonic spectra and envelopes of the same note."""
    feats = []
    for fam in range(16):
        a = render(make_score([(57, 0, 2, 100)], program=fam * 8), "builtin", normalize=False).samples.mean(1)
        n = int(0.4 * SR)
        seg = a[int(0.2 * SR):int(0.2 * SR) + n] * np.hanning(n)
        spec = np.abs(np.fft.rfft(seg))
        f = np.fft.rfftfreq(len(seg), 1 / SR)
        harm = np.array([spec[np.argmin(np.abs(f - 220 * k))] for k in range(1, 9)])
        decay = np.sqrt(np.mean(a[int(0.8 * SR):int(0.9 * SR)] ** 2)) / np.sqrt(np.mean(a[int(0.1 * SR):int(0.2 * SR)] ** 2))
        feats.append(np.concatenate([harm / harm.max(), [decay]]))
    feats = np.array(feats)
    d = np.linalg.norm(feats[:, None] - feats[None], axis=-1) + np.eye(16)
    assert d.min() > 0.05, np.unravel_index(d.argmin(), d.shape)


def test_fallback_is_said_once(monkeypatch, capsys):
    for var in audio_mod.SOUNDFONT_ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(audio_mod, "SOUNDFONT_PLACES", ())
    monkeypatch.setattr(audio_mod, "_fallback_said", False)
    score = make_score([(60, 0, 1, 90), (64, 1, 1, 90)])
    a = render_audio(score)
    b = render_audio(score)
    err = capsys.readouterr().err
    assert a.renderer == b.renderer == "builtin"
    assert err.count("built-in synthesizer") == 1 and "fallback" in err
    assert np.abs(a.samples).max() > 0.5


def test_output_formats_are_stereo_normalized(tmp_path):
    a = render(make_score([(60, 0, 1, 127), (64, 0, 1, 127), (67, 0, 1, 127)]), "builtin")
    for suffix in (".wav", ".flac", ".ogg", ".mp3"):
        p = write_audio(tmp_path / f"x{suffix}", a)
        data, sr = soundfile.read(str(p), always_2d=True)
        assert sr == SR and data.shape[1] == 2 and len(data) > 0.9 * len(a.samples)
        assert np.abs(data).max() <= 1.0 and np.abs(data).max() > 0.5
        if suffix in (".wav", ".flac"):  # the README: WAV and FLAC are 16-bit
            assert soundfile.info(str(p)).subtype == "PCM_16", suffix
    assert not list(tmp_path.glob(".*"))  # no temporary files left


# ---- the command line, and bad input ------------------------------------------------------------

def test_cli_render_audio_and_sample_rate(tmp_path, capsys):
    mid = tmp_path / "song.mid"
    make_score([(60 + k, k, 1, 90) for k in range(4)]).dump_midi(str(mid))
    code, out, _ = run(capsys, "render", mid, "--out", tmp_path / "song.wav", "--out", tmp_path / "song.flac",
                       "--sample-rate", 48000, "--renderer", "builtin")
    assert code == 0 and out.count("wrote") == 2
    data, sr = soundfile.read(str(tmp_path / "song.wav"), always_2d=True)
    assert sr == 48000 and data.shape[1] == 2 and abs(len(data) / sr - 2.0) < 0.3


def test_cli_unreadable_soundfont(tmp_path, capsys):
    mid = tmp_path / "song.mid"
    make_score([(60, 0, 1, 90)]).dump_midi(str(mid))
    bad = tmp_path / "broken.sf2"
    bad.write_bytes(b"this is not a soundfont")
    code, _, err = run(capsys, "render", mid, "--out", tmp_path / "a.wav", "--soundfont", bad)
    one_line_error(code, err, "broken.sf2", "not a SoundFont")
    assert not (tmp_path / "a.wav").exists()
    fake = tmp_path / "fake.sf2"  # the right header, then garbage: the synthesizer itself refuses it
    fake.write_bytes(b"RIFF\x10\x00\x00\x00sfbkLIST" + b"\x00" * 64)
    if _soundfont_ready():
        code, _, err = run(capsys, "render", mid, "--out", tmp_path / "a.wav", "--soundfont", fake)
        one_line_error(code, err, "fake.sf2")
    code, _, err = run(capsys, "render", mid, "--out", tmp_path / "a.wav", "--soundfont", tmp_path / "none.sf2")
    one_line_error(code, err, "none.sf2", "not found")


def test_cli_unsupported_suffix_missing_input_and_no_notes(tmp_path, capsys):
    mid = tmp_path / "song.mid"
    make_score([(60, 0, 1, 90)]).dump_midi(str(mid))
    code, _, err = run(capsys, "render", mid, "--out", tmp_path / "a.bmp")
    one_line_error(code, err, "a.bmp", ".bmp")
    code, _, err = run(capsys, "render", tmp_path / "nope.mid", "--out", tmp_path / "a.wav")
    one_line_error(code, err, "nope.mid", "not found")
    empty = tmp_path / "empty.mid"
    s = symusic.Score(480)
    s.tracks.append(symusic.Track("t", 0, False))
    s.dump_midi(str(empty))
    code, _, err = run(capsys, "render", empty, "--out", tmp_path / "e.wav")
    one_line_error(code, err, "empty.mid", "no notes")
    assert not (tmp_path / "e.wav").exists()


def test_cli_play_without_audio_device(tmp_path, capsys):
    """On a machine with no sound output (CI), play says so in one line and exits non-zero;
    generate/render --play write their files and skip playback with a note."""
    from cadenza.render.playback import NoAudioDevice, output_device

    try:
        output_device()
        pytest.skip("this machine has an audio output device")
    except NoAudioDevice:
        pass
    mid = tmp_path / "song.mid"
    make_score([(60, 0, 1, 90)]).dump_midi(str(mid))
    code, _, err = run(capsys, "play", mid, "--renderer", "builtin")
    one_line_error(code, err, "audio", "nothing played")
    code, out, err = run(capsys, "render", mid, "--out", tmp_path / "s.wav", "--play", "--renderer", "builtin")
    assert code == 0 and (tmp_path / "s.wav").exists() and "playback skipped" in err


def test_soundfont_from_environment(monkeypatch, tmp_path):
    real = audio_mod.find_soundfont()
    if real is None:
        pytest.skip("no SoundFont on this machine")
    link = tmp_path / "mine.sf2"
    link.symlink_to(real)
    monkeypatch.setenv("CADENZA_SOUNDFONT", str(link))
    assert audio_mod.find_soundfont() == link
    assert audio_mod.find_soundfont(real) == real  # --soundfont wins over the environment
    monkeypatch.setenv("CADENZA_SOUNDFONT", str(tmp_path / "gone.sf2"))
    with pytest.raises(CadenzaError, match="gone.sf2"):
        audio_mod.find_soundfont()


def test_generate_writes_several_outputs_at_once(tmp_path, capsys, tiny_model_dir):
    outs = [tmp_path / f"song{s}" for s in (".mid", ".wav", ".png")]
    args = ["generate", "--model", tiny_model_dir, "--bars", 2, "--max-tokens", 200, "--seed", 1]
    for o in outs:
        args += ["--out", o]
    code, out, _ = run(capsys, *args)
    assert code == 0 and all(o.exists() and str(o) in out for o in outs)
    assert symusic.Score(str(outs[0])).note_num() > 0
    data, sr = soundfile.read(str(outs[1]), always_2d=True)
    assert data.shape[1] == 2 and np.abs(data).max() > 0.5
    assert outs[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_four_minute_piece_is_written_to_ogg(tmp_path):
    """libsndfile's Vorbis encoder overflowed its stack on one long write: writing a 3-4 minute piece
    to .ogg killed the process (SIGSEGV, no message). Run in a child, so a crash fails this test only."""
    import subprocess
    import sys

    code = ("import numpy as np; from cadenza.render.audio import write_audio; "
            "t = np.arange(44100 * 240) / 44100; x = (0.3 * np.sin(2 * np.pi * 220 * t)).astype('float32'); "
            f"write_audio({str(tmp_path / 'long.ogg')!r}, np.stack([x, x], 1), 44100)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr[-300:]}"
    info = soundfile.info(str(tmp_path / "long.ogg"))
    assert abs(info.duration - 240) < 0.1 and info.channels == 2


def test_recordings_are_bounded_before_they_are_read(tmp_path):
    """A 1-hour recording was read whole (2.8 GB) before any check; NaN samples reached librosa."""
    from cadenza.errors import CadenzaError
    from cadenza.render.audio import read_audio

    long = tmp_path / "hour.wav"
    with soundfile.SoundFile(str(long), "w", 8000, 1, subtype="PCM_16") as f:  # 601 s of silence, 9.6 MB
        f.write(np.zeros(8000 * 601, dtype=np.int16))
    with pytest.raises(CadenzaError, match="at most 600 s .*--force"):
        read_audio(long)
    assert len(read_audio(long, force=True)[0]) == 8000 * 601
    nan = tmp_path / "nan.wav"
    soundfile.write(str(nan), np.array([0.0, np.nan, 0.1] * 1000, dtype=np.float32), 8000, subtype="FLOAT")
    with pytest.raises(CadenzaError, match="not numbers"):
        read_audio(nan)


def test_the_soundfont_is_found_through_the_environment_and_usual_places(tmp_path, monkeypatch):
    """README: $SOUNDFONT (or $CADENZA_SOUNDFONT) and the system's usual places are searched."""
    from cadenza.render import audio as ra

    found = ra.find_soundfont()
    if found is None:
        pytest.skip("no SoundFont on this machine")
    for var in ra.SOUNDFONT_ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SOUNDFONT", str(found))
    monkeypatch.setattr(ra, "SOUNDFONT_PLACES", ())
    assert ra.find_soundfont() == found
    monkeypatch.delenv("SOUNDFONT")
    assert ra.find_soundfont() is None
    monkeypatch.setattr(ra, "SOUNDFONT_PLACES", (str(tmp_path / "none.sf2"), str(found)))
    assert ra.find_soundfont() == found


def test_cli_render_writes_every_kind_of_output_rendering_audio_once(tmp_path, capsys, monkeypatch):
    """README: `render` to audio, a piano roll, sheet music (.svg, .pdf), a spectrogram of a recording or (with
    --spectrogram) of a score's audio; the audio is rendered once for all the outputs of one command."""
    from cadenza.cli import main
    from cadenza.render import outputs
    from cadenza.score import write_score

    song = tmp_path / "song.mid"
    write_score(make_score([(60 + k % 8, k * 0.5, 0.5, 90) for k in range(16)]), song)
    calls = []
    real = outputs.render_audio
    monkeypatch.setattr(outputs, "render_audio", lambda *a, **k: calls.append(1) or real(*a, **k))
    outs = ["a.wav", "a.flac", "a.mp3", "roll.png", "score.svg", "score.pdf"]
    assert main(["render", str(song), "--renderer", "builtin", "-q", *sum((["--out", str(tmp_path / o)] for o in outs),
                                                                         [])]) == 0
    assert len(calls) == 1 and all((tmp_path / o).stat().st_size > 1000 for o in outs)
    assert main(["render", str(tmp_path / "a.wav"), "-q", "--out", str(tmp_path / "rec.png")]) == 0
    assert main(["render", str(song), "--renderer", "builtin", "--spectrogram", "-q", "--out",
                 str(tmp_path / "spec.png")]) == 0
    assert (tmp_path / "rec.png").stat().st_size > 1000 and (tmp_path / "spec.png").stat().st_size > 1000
    assert len(calls) == 2  # the recording is read, not rendered
