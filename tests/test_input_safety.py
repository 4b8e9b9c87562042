"""Hostile inputs (issue 18, "safe by default"): each one gets one ScoreError line, promptly.

Every file is built here, by hand, in tmp_path: raw MIDI bytes for a division of 0, a tempo of 0,
10,000 tracks and a note 2^28 ticks long; ABC that includes a file or /dev/urandom; a 1.86 MB .mxl
that unzips to 1.9 GB.
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import textwrap
import zlib

import music21
import pytest

from cadenza.errors import ScoreError
from cadenza.limits import LIMITS
from cadenza.score import io as score_io
from cadenza.score import parse_notes, read_abc_tunes, read_score, write_score


def one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg and "Traceback" not in msg, msg
    return msg


# ----------------------------------------------------------------------------------- raw MIDI bytes

def vlq(n: int) -> bytes:
    """A MIDI variable-length quantity."""
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def midi(tracks: list[bytes], division: int = 480) -> bytes:
    """A format-1 MIDI file: the header, then each track's events plus End of Track."""
    chunks = b"".join(b"MTrk" + struct.pack(">I", len(t) + 4) + t + b"\x00\xff\x2f\x00" for t in tracks)
    return b"MThd" + struct.pack(">IHHH", 6, 1, len(tracks), division) + chunks


NOTE = b"\x00\x90\x3c\x50" + vlq(480) + b"\x80\x3c\x00"  # middle C, one quarter at 480 tpq
# middle C on at 0 and off 2^28 ticks later (one delta holds at most 2^28 - 1, so D4 marks the middle)
LONG_NOTE = (b"\x00\x90\x3c\x50" + vlq(2 ** 27) + b"\x90\x3e\x50" + vlq(2 ** 27)
             + b"\x80\x3c\x00\x00\x80\x3e\x00")


MIDI_CASES = {  # name: (bytes, what the message says)
    "div0.mid": (midi([NOTE], division=0), ["0 ticks per quarter note"]),
    "tempo0.mid": (midi([b"\x00\xff\x51\x03\x00\x00\x00" + NOTE]), ["infinite tempo", "tick 0"]),
    "big.mid": (midi([NOTE] + [b""] * 9_999), ["10,000 tracks", "at most 256", "--force"]),
    "long.mid": (midi([LONG_NOTE]), ["a note 279,620 s long", "up to 600 s", "--force"]),
}


@pytest.mark.parametrize("name", list(MIDI_CASES))
def test_midi_bounds(tmp_path, name):
    data, needles = MIDI_CASES[name]
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ScoreError) as err:
        read_score(path)
    msg = one_line(err)
    assert msg.startswith(name) and all(n in msg for n in needles), msg


def test_force_lifts_force_limits_only(tmp_path):
    big, slow = tmp_path / "big.mid", tmp_path / "slow.mid"
    big.write_bytes(midi([NOTE] + [b""] * 9_999))
    assert read_score(big, force=True).note_num() == 1
    # a tempo of 5 quarter notes per minute is no --force limit: refused all the same
    slow.write_bytes(midi([b"\x00\xff\x51\x03" + (12_000_000).to_bytes(3, "big") + NOTE]))
    with pytest.raises(ScoreError, match="a tempo of 5 quarter notes per minute"):
        read_score(slow, force=True)


def _tempo(qpm: float) -> bytes:
    return b"\x00\xff\x51\x03" + round(60_000_000 / qpm).to_bytes(3, "big")


def _notes(n: int) -> bytes:
    """n notes in one track, each one tick long, a tick apart."""
    return (b"\x01\x90\x3c\x50\x01\x80\x3c\x00") * n


# one past each limit of the README's table that a MIDI file can cross: (bytes, what the one line says, force lifts)
PAST_LIMITS = {
    "fast.mid": (midi([_tempo(1001) + NOTE]), "a tempo of 1,001 quarter notes per minute", False),
    "many.mid": (midi([_notes(LIMITS.notes + 1)]), "200,001 notes; cadenza takes at most 200,000 (--force", True),
    "hour.mid": (midi([NOTE + vlq(int(3601 * 2 * 480)) + b"\x90\x3e\x50" + vlq(480) + b"\x80\x3e\x00"]),
                 "lasts 3,602 s; cadenza takes scores up to 3,600 s (--force", True),
}


@pytest.mark.parametrize("name", list(PAST_LIMITS))
def test_one_past_each_limit_is_one_line_and_force_lifts_only_force_limits(tmp_path, name):
    data, says, lifts = PAST_LIMITS[name]
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ScoreError) as err:
        read_score(path)
    assert says in one_line(err)
    if lifts:
        assert read_score(path, force=True).note_num() > 0
    else:
        with pytest.raises(ScoreError):
            read_score(path, force=True)


def test_ticks_per_quarter_are_bounded():
    """A MIDI division past 32,767 is SMPTE time (its own message, test_midi_bounds); a score from elsewhere
    (a MusicXML file's resolution, a Python caller's Score) is checked against the same limit."""
    import symusic

    from cadenza.score.bounds import check_score

    with pytest.raises(ScoreError) as err:
        check_score(symusic.Score(LIMITS.ticks_per_quarter_max + 1), "fine", force=True)
    assert "fine has 32,768 ticks per quarter note; cadenza takes at most 32,767" in one_line(err)
    smpte = midi([NOTE], division=LIMITS.ticks_per_quarter_max + 1)
    with pytest.raises(ScoreError, match="SMPTE"):
        _read_bytes(smpte, "smpte.mid")


def _read_bytes(data: bytes, name: str):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / name
        path.write_bytes(data)
        return read_score(path)


def test_long_notes_and_big_files_pass_with_force(tmp_path):
    long = tmp_path / "long.mid"
    long.write_bytes(MIDI_CASES["long.mid"][0])
    assert read_score(long, force=True).note_num() == 2  # note_seconds: lifted
    big = tmp_path / "big.mid"  # a note and a text event one byte past the limit
    big.write_bytes(midi([NOTE + b"\x00\xff\x01" + vlq(LIMITS.file_bytes) + b"x" * LIMITS.file_bytes]))
    with pytest.raises(ScoreError, match="cadenza takes at most 20,000,000 \\(--force"):
        read_score(big)
    assert read_score(big, force=True).note_num() == 1  # file_bytes: lifted


def test_audio_channels_are_bounded(tmp_path):
    import numpy as np
    import soundfile as sf

    from cadenza.errors import CadenzaError
    from cadenza.render.audio import read_audio

    path = tmp_path / "nine.wav"
    sf.write(path, np.zeros((800, LIMITS.audio_channels + 1), dtype=np.float32), 8000)
    with pytest.raises(CadenzaError) as err:
        read_audio(path, force=True)  # not a --force limit
    assert "9 channels; cadenza takes at most 8" in one_line(err)


# ---------------------------------------------------------------------------------------------- ABC

ABC = "X:1\nT:Tune\nM:4/4\nL:1/4\nK:C\n{line}\nCDEF|\n"


def _read_isolated(path, timeout: float = 20) -> subprocess.CompletedProcess:
    """read_score(path) in a child python in its own process group, killed whole (abc2midi too)
    when it runs past `timeout`: a hang fails this test instead of stalling the suite."""
    code = textwrap.dedent(f"""
        from cadenza.errors import ScoreError
        from cadenza.score import read_score
        try:
            read_score({str(path)!r})
        except ScoreError as e:
            print("ScoreError:", e)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"reading {path.name} ran past {timeout} s")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.parametrize("line", ["%%abc-include {secret}", "%%abc-include /dev/urandom",
                                  "I:abc-include {secret}", "%%MIDI ptstress {secret}"])
def test_abc_never_reads_other_files(tmp_path, line):
    secret = tmp_path / "secret.txt"
    secret.write_text("cdefgabc" * 8 + "\n")
    path = tmp_path / "tune.abc"
    path.write_text(ABC.format(line=line.format(secret=secret)))
    result = _read_isolated(path)
    msg = result.stdout.strip()
    assert msg.startswith("ScoreError: tune.abc line 6:") and "read another file" in msg, result
    assert "\n" not in msg
    # the same for a whole collection
    with pytest.raises(ScoreError, match="line 6"):
        read_abc_tunes(path)


def _fake_abc2midi(tmp_path, monkeypatch, body: str) -> None:
    exe = tmp_path / "fake-abc2midi"
    exe.write_text(f"#!/bin/sh\n{body}\n")
    exe.chmod(0o755)
    monkeypatch.setenv("SYMUSIC_ABC2MIDI", str(exe))


@pytest.mark.skipif(os.name != "posix", reason="the bounds are set through /bin/sh")
def test_abc_converter_is_stopped_after_its_time(tmp_path, monkeypatch):
    _fake_abc2midi(tmp_path, monkeypatch, "exec sleep 60")  # a tune abc2midi never finishes
    monkeypatch.setattr(score_io, "ABC_SECONDS", 0.5)
    path = tmp_path / "slow.abc"
    path.write_text(ABC.format(line=""))
    with pytest.raises(ScoreError) as err:
        read_score(path)
    assert "slow.abc: the ABC tune took longer than 0.5 s to convert" in one_line(err)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS is enforced on Linux")
def test_abc_converter_memory_is_bounded(tmp_path, monkeypatch):
    # makes its MIDI only if it could touch ABC_MEMORY + 256 MiB
    good = tmp_path / "good.mid"
    good.write_bytes(midi([NOTE]))
    grab = f"b = bytearray({score_io.ABC_MEMORY + (256 << 20)}); open('tune.mid', 'wb').write(open({str(good)!r}, 'rb').read())"
    _fake_abc2midi(tmp_path, monkeypatch, f'exec {sys.executable} -c "{grab}"')
    path = tmp_path / "greedy.abc"
    path.write_text(ABC.format(line=""))
    with pytest.raises(ScoreError) as err:
        read_score(path)
    assert "greedy.abc is not a readable ABC tune: abc2midi made no MIDI of it" in one_line(err)


# -------------------------------------------------------------------------------------------- MusicXML

def test_music21_keeps_no_pickles(tmp_path):
    env = music21.environment.Environment()
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    saved = env["directoryScratch"]
    env["directoryScratch"] = str(scratch)  # in memory only; music21's settings file is untouched
    try:
        path = write_score(parse_notes("C4 D4 E4 F4"), tmp_path / "tune.musicxml")
        for _ in range(2):  # the second read would load the pickle the first one wrote
            assert read_score(path).note_num() == 4
        assert env.getRootTempDir() == scratch
        assert not list(scratch.rglob("*.p.gz"))
    finally:
        env["directoryScratch"] = saved


CONTAINER = (b'<?xml version="1.0" encoding="UTF-8"?>\n<container><rootfiles>'
             b'<rootfile full-path="score.musicxml"/></rootfiles></container>\n')


def _zip(entries: list[tuple[bytes, bytes, int, int, int]]) -> bytes:
    """A zip of (name, data, method, unzipped size, crc32) entries, written by hand."""
    out, central = bytearray(), bytearray()
    for name, data, method, size, crc in entries:
        offset = len(out)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0, crc, len(data), size, len(name), 0)
        out += name + data
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0, crc, len(data), size,
                               len(name), 0, 0, 0, 0, 0, offset) + name
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(central), len(out), 0)
    return bytes(out + central + end)


def mxl_bomb(chunks: int = 114) -> bytes:
    """A valid .mxl (container.xml and a MusicXML start) whose score is 1.9 GB of spaces, zipped to 1.86 MB.

    Each 16 MiB run of spaces is deflated once and repeated: after a full flush deflate starts afresh,
    so the same input makes the same bytes. Nothing near 1.9 GB is ever held in memory.
    """
    head, run = b'<?xml version="1.0"?>\n<score-partwise version="4.0">', b" " * (1 << 24)
    pieces = []
    for data in (head, run):
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        pieces.append(c.compress(data) + c.flush(zlib.Z_FULL_FLUSH))
    deflated = pieces[0] + pieces[1] * chunks + zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    crc = zlib.crc32(head)
    for _ in range(chunks):
        crc = zlib.crc32(run, crc)
    return _zip([(b"META-INF/container.xml", CONTAINER, 0, len(CONTAINER), zlib.crc32(CONTAINER)),
                 (b"score.musicxml", deflated, 8, len(head) + len(run) * chunks, crc)])


def test_mxl_bomb_is_refused_before_unzipping(tmp_path, monkeypatch):
    path = tmp_path / "bomb.mxl"
    path.write_bytes(mxl_bomb())
    assert path.stat().st_size < 2_000_000
    monkeypatch.setattr(music21.converter, "parse", lambda *a, **k: pytest.fail("music21 was asked to unzip it"))
    with pytest.raises(ScoreError) as err:
        read_score(path)
    msg = one_line(err)
    assert msg == (f"bomb.mxl unzips to 1,912,602,800 bytes; cadenza takes at most {LIMITS.unzipped_bytes:,} "
                   f"(--force lifts this)")


def test_file_size_is_checked_before_reading(tmp_path):
    path = tmp_path / "huge.mxl"
    with open(path, "wb") as f:  # a sparse file: its size is all that is there
        f.truncate(LIMITS.file_bytes + 1)
    with pytest.raises(ScoreError) as err:
        read_score(path)
    assert one_line(err).startswith(f"huge.mxl is {LIMITS.file_bytes + 1:,} bytes; cadenza takes at most")


# ----------------------------------------------------------------------------------------- typed notes

@pytest.mark.parametrize("text,needle", [
    ("C4/0", "note 'C4/0' at position 0 in \"C4/0\" divides its length by 0"),
    ("E4 r/0.0", "rest 'r/0.0' at position 3"),
    ("[C4 E4]/0", "chord '[C4 E4]/0' at position 0"),
    ("C4*99999999", "note 'C4*99999999' at position 0 in \"C4*99999999\" is 1e+08 quarter notes long"),
    ("C4*1300", "lasts 650 s at 120 bpm; cadenza takes notes up to 600 s"),
    ("C4*" + "9" * 5000, "too many digits"),
    ("C4*" + "9" * 400, "is over 1e+300 quarter notes long"),
    ("C4" + "." * 30, "more than 8 length marks"),
    ("r*0 C4", "rest 'r*0' at position 0 in \"r*0 C4\" has zero length"),
    ("C4*1000 " * 8, "the notes last more than 3600 s at 120 bpm"),
])
def test_typed_notes_bounds(text, needle):
    with pytest.raises(ScoreError) as err:
        parse_notes(text)
    assert needle in one_line(err)


def test_typed_note_lengths_stay_exact_and_small():
    # prime tuplets cannot grow a running denominator (lengths are whole units of 1/1441440 quarter);
    # 13 notes of a 13-tuplet still fill exactly one quarter
    s = parse_notes(" ".join(f"C4/{p}" for p in (999983, 999979, 999961)) + " D4" + " E4/13" * 13 + " F4")
    notes = [(n.time, n.duration) for n in s.tracks[0].notes]
    assert notes[3] == (0, 480) and notes[-1] == (960, 480)
    assert [t for t, _ in notes[4:-1]] == [480 + round(k * 480 / 13) for k in range(13)]
