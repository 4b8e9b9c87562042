"""Transcription of a monophonic recording: a synthetic sine melody comes back as its notes."""

import numpy as np
import pytest

from cadenza.audio.transcribe import SR, transcribe, transcribe_array
from cadenza.errors import CadenzaError

# (pitch, start s, length s): a step, a leap, and a repeated note (only an attack separates them)
MELODY = [(60, 0.0, 0.5), (62, 0.5, 0.5), (64, 1.0, 0.5), (64, 1.5, 0.5), (67, 2.0, 0.75), (72, 2.75, 0.5)]


def sine_melody(notes, sr=SR, amp=0.5):
    y = np.zeros(int(sr * (max(s + d for _, s, d in notes) + 0.3)), dtype=np.float32)
    for pitch, start, length in notes:
        n = int(length * sr)
        t = np.arange(n) / sr
        env = np.minimum(1, np.minimum(t / 0.01, (length - t) / 0.03)).clip(0) * np.exp(-t * 1.5)
        tone = amp * env * np.sin(2 * np.pi * 440 * 2 ** ((pitch - 69) / 12) * t)
        i = int(start * sr)
        y[i:i + n] += tone.astype(np.float32)
    return y


def test_a_sine_melody_transcribes_to_its_notes():
    score = transcribe_array(sine_melody(MELODY), SR, tempo=120)
    notes = sorted((n.time, n.pitch, n.duration) for n in score.tracks[0].notes)
    assert [p for _, p, _ in notes] == [p for p, _, _ in MELODY]
    secs = 60 / 120 / 480  # seconds per tick at 120 bpm
    for (t, _, d), (_, start, length) in zip(notes, MELODY):
        assert abs(t * secs - start) <= 0.05
        assert abs(d * secs - length) <= 0.1
    assert all(1 <= n.velocity <= 127 for n in score.tracks[0].notes)


def test_quantized_to_a_grid_and_read_from_a_file(tmp_path):
    import soundfile as sf

    sf.write(tmp_path / "hum.wav", sine_melody(MELODY, sr=44100), 44100)  # another rate: resampled
    score = transcribe(tmp_path / "hum.wav", tempo=120, quantize="1/8")
    assert [n.time % 240 for n in score.tracks[0].notes] == [0] * len(MELODY)
    assert [n.time for n in score.tracks[0].notes] == [int(s * 960) for _, s, _ in MELODY]


def test_bad_recordings_say_what_is_wrong(tmp_path):
    with pytest.raises(CadenzaError, match="silent"):
        transcribe_array(np.zeros(SR, dtype=np.float32), SR)
    with pytest.raises(CadenzaError, match="shorter"):
        transcribe_array(np.zeros(100, dtype=np.float32), SR)
    with pytest.raises(CadenzaError, match="quantize to"):
        transcribe_array(sine_melody(MELODY), SR, quantize="1/x")
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    with pytest.raises(CadenzaError, match="cannot read"):
        transcribe(tmp_path / "bad.wav")


def test_cli_transcribe_writes_a_melody_and_says_what_is_wrong(tmp_path, capsys):
    import soundfile as sf

    from cadenza.cli import main
    from cadenza.score import read_score

    sf.write(tmp_path / "hum.wav", sine_melody(MELODY), SR)
    assert main(["transcribe", str(tmp_path / "hum.wav"), "--tempo", "120", "--quantize", "1/8",
                 "--instrument", "flute", "--out", str(tmp_path / "melody.mid"), "-q"]) == 0
    s = read_score(tmp_path / "melody.mid")
    assert [n.pitch for n in s.tracks[0].notes] == [p for p, _, _ in MELODY] and s.tracks[0].program == 73
    capsys.readouterr()
    for args, words in ([str(tmp_path / "nope.wav")], "not found"), \
                       ([str(tmp_path / "hum.wav"), "--quantize", "1/7"], "quantize"), \
                       ([str(tmp_path / "hum.wav"), "--instrument", "drums"], "drums"):
        code = main(["transcribe", *args, "--out", str(tmp_path / "x.mid"), "-q"])
        err = capsys.readouterr().err
        assert code != 0 and words in err and len(err.strip().splitlines()) == 1, (args, err)
    assert not (tmp_path / "x.mid").exists()


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="flock")
def test_first_numba_use_is_one_process_at_a_time(tmp_path, monkeypatch):
    """numba's gufunc cache is written by two renames (numba/numba#10128): two processes compiling pYIN at
    once could crash. While one process compiles, another cannot take the lock; once compiled, no lock."""
    import subprocess
    import sys

    import cadenza.audio.transcribe as tr

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(tr, "_COMPILED", __import__("threading").Event())
    probe = ("import fcntl, sys\nh = open(sys.argv[1], 'a')\ntry:\n    fcntl.flock(h, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
             "    print('free')\nexcept BlockingIOError:\n    print('held')\n")

    def other() -> str:
        return subprocess.run([sys.executable, "-c", probe, str(tmp_path / "cadenza" / "numba.lock")],
                              capture_output=True, text=True, timeout=60).stdout.strip()
    with tr.numba_first_use():
        assert other() == "held"
    assert other() == "free" and tr._COMPILED.is_set()
    with tr.numba_first_use():  # compiled: no lock taken
        assert other() == "free"
