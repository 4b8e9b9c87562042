"""The corpus and the runner of bench/robustness.py (issue 18, "safe by default").

- ``build_corpus``: hand-made hostile files for every case of the issue, plus seeded random mutants of
  valid seeds (MIDI, ABC, MusicXML, MXL, WAV), all written under the bench's own temporary folder.
- ``build_models``: a tiny random-weight model (as tests/conftest.py makes one) and broken copies of it.
- The runner: ``zygote`` is a process that imports cadenza, torch, music21 and librosa once and forks
  one child per case (``cadenza.cli.main(argv)`` with stdout/stderr to files, in its own session, an
  audit hook on "open", killed at its timeout, its peak RSS from wait4); ``run_fresh`` runs a case
  in a new Python process instead (``--fresh``), with the same hook from SITECUSTOMIZE.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import struct
import sys
import time
import zipfile
import zlib
from io import BytesIO
from pathlib import Path

import numpy as np

# ------------------------------------------------------------------------------ the audit hook
# Installed in every Python process of a case (as sitecustomize.py through PYTHONPATH, or exec'd in a
# forked child): each file opened outside ROBUST_AUDIT_ALLOW is logged to ROBUST_AUDIT_LOG as "pid<TAB>path".
SITECUSTOMIZE = r'''
import os as _os, sys as _sys
def _robust_install():
    log = _os.environ.get("ROBUST_AUDIT_LOG")
    if not log:
        return
    allow = tuple(p for p in _os.environ.get("ROBUST_AUDIT_ALLOW", "").split(_os.pathsep) if p)
    fd = _os.open(log, _os.O_WRONLY | _os.O_APPEND | _os.O_CREAT, 0o600)
    def hook(event, args):
        if event != "open" or not args or isinstance(args[0], int) or args[0] is None:
            return
        try:
            path = _os.fsdecode(args[0])
            path = _os.path.normpath(path if _os.path.isabs(path) else _os.path.join(_os.getcwd(), path))
        except Exception:
            return
        if not path.startswith(allow):
            _os.write(fd, f"{_os.getpid()}\t{path}\n".encode("utf-8", "replace"))
    _sys.addaudithook(hook)
    _os.write(fd, f"{_os.getpid()}\t<hooked>\n".encode())  # proof that this process was watched
_robust_install()
del _robust_install
'''


def allowed_roots(*extra: str | os.PathLike) -> list[str]:
    """Where a cadenza process may open files: Python and its packages, the repository (code and bundled
    models), /proc, /sys, /dev/null, shared system data, caches in $HOME, and ``extra`` (the case's folder,
    its temporary folder). Folders end with '/', so '/tmp/a/' does not admit '/tmp/ab'."""
    repo = Path(__file__).resolve().parent.parent
    home = Path.home()
    dirs = {sys.prefix, sys.base_prefix, sys.exec_prefix, str(repo), "/proc", "/sys", "/usr/share", "/usr/lib",
            "/usr/local/lib", "/lib", "/etc/fonts", "/etc/ssl", str(home / ".cache"), str(home / ".config"),
            str(home / ".matplotlib"), *map(str, extra)}
    dirs |= {os.path.realpath(d) for d in dirs}
    files = {"/dev/null", "/etc/localtime", "/etc/mime.types", str(home / ".music21rc")}
    return sorted(d.rstrip("/") + "/" for d in dirs) + sorted(files)


# ----------------------------------------------------------------------------------- MIDI bytes
def vlq(n: int) -> bytes:
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def midi(tracks: list[bytes], division: int = 480, fmt: int = 1, declared: int | None = None) -> bytes:
    """A MIDI file: the header, then each track's events plus End of Track."""
    chunks = b"".join(b"MTrk" + struct.pack(">I", len(t) + 4) + t + b"\x00\xff\x2f\x00" for t in tracks)
    n = len(tracks) if declared is None else declared
    return b"MThd" + struct.pack(">IHHH", 6, fmt, n & 0xFFFF, division & 0xFFFF) + chunks


def note(pitch: int, ticks: int = 480, vel: int = 80, delta: int = 0) -> bytes:
    return vlq(delta) + bytes([0x90, pitch, vel]) + vlq(ticks) + bytes([0x80, pitch, 0])


def seed_midi() -> bytes:
    """Two tracks, 8 bars: tempo, meter, key, program, controllers, pitch bend, a melody and chords."""
    meta = b"\x00\xff\x51\x03\x07\xa1\x20" + b"\x00\xff\x58\x04\x04\x02\x18\x08" + b"\x00\xff\x59\x02\x00\x00"
    mel = b"\x00\xc0\x00\x00\xb0\x40\x7f" + b"".join(note(p, 240) for p in [60, 62, 64, 65, 67, 69, 71, 72] * 4)
    mel += b"\x00\xe0\x00\x40\x00\xb0\x40\x00"
    chords = b"\x00\xc1\x30" + b"".join(bytes([0, 0x91, r, 70, 0, 0x91, r + 4, 70]) + vlq(960)
                                        + bytes([0x81, r, 0, 0, 0x81, r + 4, 0]) for r in [48, 53, 55, 48] * 2)
    return midi([meta, mel, chords])


# ------------------------------------------------------------------------------ text seeds
SEED_ABC = """X:1
T:Seed
M:6/8
L:1/8
Q:3/8=100
K:D
|:"D"A,DF ABd|"G"c2B "A7"A2G|(3FGA d2 f|[DFA]3 z3:|
|:e2f g2e|"Bm"f>ed "E7"^c2B|A,2 D {g}F2 A|1 d3 d2z:|2 d6|]
"""

SEED_XML = """<?xml version="1.0" encoding="UTF-8"?>
<score-partwise version="4.0"><part-list><score-part id="P1"><part-name>Flute</part-name>
<score-instrument id="P1-I1"><instrument-name>Flute</instrument-name></score-instrument>
<midi-instrument id="P1-I1"><midi-program>74</midi-program></midi-instrument></score-part></part-list>
<part id="P1"><measure number="1"><attributes><divisions>2</divisions><key><fifths>1</fifths></key>
<time><beats>3</beats><beat-type>4</beat-type></time><clef><sign>G</sign><line>2</line></clef></attributes>
<direction><sound tempo="96"/></direction>
<note><pitch><step>G</step><octave>4</octave></pitch><duration>2</duration><type>quarter</type></note>
<note><pitch><step>F</step><alter>1</alter><octave>4</octave></pitch><duration>1</duration><type>eighth</type></note>
<note><pitch><step>A</step><octave>4</octave></pitch><duration>1</duration><type>eighth</type></note>
<note><chord/><pitch><step>D</step><octave>5</octave></pitch><duration>1</duration><type>eighth</type></note>
<note><rest/><duration>2</duration><type>quarter</type></note></measure>
<measure number="2"><note><pitch><step>B</step><octave>4</octave></pitch><duration>6</duration>
<type>half</type><dot/></note></measure></part></score-partwise>
"""

CONTAINER = ('<?xml version="1.0" encoding="UTF-8"?>\n<container><rootfiles>'
             '<rootfile full-path="{path}"/></rootfiles></container>\n')


def mxl(xml: bytes, rootfile: str = "score.musicxml", extra: dict[str, bytes] | None = None) -> bytes:
    buf = BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("META-INF/container.xml", CONTAINER.format(path=rootfile))
        z.writestr(rootfile, xml)
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return buf.getvalue()


def wav(samples: np.ndarray, sr: int = 16000, float32: bool = False, channels: int = 1,
        data_size: int | None = None) -> bytes:
    """A WAV file by hand: PCM 16-bit or IEEE float 32-bit (format 3), with an optional false data size."""
    data = samples.astype("<f4").tobytes() if float32 else (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    bits, tag = (32, 3) if float32 else (16, 1)
    fmt = struct.pack("<HHIIHH", tag, channels, sr, sr * channels * bits // 8, channels * bits // 8, bits)
    size = len(data) if data_size is None else data_size
    return b"RIFF" + struct.pack("<I", (36 + size) & 0xFFFFFFFF) + b"WAVEfmt " + struct.pack("<I", 16) + fmt \
        + b"data" + struct.pack("<I", size & 0xFFFFFFFF) + data


def seed_wav(seconds: float = 2.0, sr: int = 16000) -> bytes:
    """A sung-like melody: 8 notes of a sine with a little vibrato."""
    t = np.arange(int(seconds * sr)) / sr
    freqs = 440 * 2 ** (np.array([0, 2, 4, 5, 7, 5, 4, 2]) / 12)
    f = freqs[np.minimum((t / seconds * 8).astype(int), 7)] * (1 + 0.003 * np.sin(2 * np.pi * 5 * t))
    return wav(0.5 * np.sin(2 * np.pi * np.cumsum(f) / sr))


SEEDS = {"mid": seed_midi, "abc": lambda: SEED_ABC.encode(), "musicxml": lambda: SEED_XML.encode(),
         "mxl": lambda: mxl(SEED_XML.encode()), "wav": seed_wav}


# ------------------------------------------------------------------------------- mutations
EXTREMES = [b"\x00", b"\xff", b"\x7f", b"\x80", b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff"]
NUMBERS = ["0", "-1", "1e308", "99999999999", "2147483648", "-2147483649", "NaN", "inf", "0.0000001", "4294967296"]


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    """One to four random edits: bit flips, extreme bytes, truncation, deletion, duplication, junk."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not b:
            b += rng.randbytes(8)
        i = rng.randrange(len(b))
        op = rng.randrange(7)
        if op == 0:
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            x = rng.choice(EXTREMES)
            b[i:i + len(x)] = x
        elif op == 2:
            del b[max(1, i):]
        elif op == 3:
            del b[i:i + rng.randint(1, 64)]
        elif op == 4:
            j = min(len(b), i + rng.randint(1, 256))
            b[i:i] = b[i:j] * rng.randint(2, 50)
        elif op == 5:
            b[i:i] = rng.randbytes(rng.randint(1, 32))
        else:
            b[i] = rng.randrange(256)
    return bytes(b)


def mutate_midi(data: bytes, rng: random.Random) -> bytes:
    """Header fields and chunk lengths set to extremes, or byte edits."""
    b = bytearray(data)
    op = rng.randrange(4)
    if op == 0:  # format, track count or division
        at = rng.choice([8, 10, 12])
        b[at:at + 2] = rng.choice([b"\x00\x00", b"\xff\xff", b"\x7f\xff", b"\x80\x00", b"\x00\x01"])
    elif op == 1:  # one MTrk length
        starts = [m.start() for m in re.finditer(b"MTrk", bytes(b))]
        if starts:
            at = rng.choice(starts) + 4
            b[at:at + 4] = rng.choice(EXTREMES[4:] + [b"\x00\x00\x00\x01"])
    elif op == 2:  # a long delta time in front of an event
        i = rng.randrange(22, len(b))
        b[i:i] = vlq(rng.choice([2 ** 28 - 1, 2 ** 21, 12345678]))
    else:
        return mutate_bytes(data, rng)
    return bytes(b)


def mutate_text(text: str, rng: random.Random) -> str:
    """Numbers set to extremes, lines dropped, repeated or swapped, junk inserted."""
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(5)
        nums = list(re.finditer(r"\d+(?:\.\d+)?", text))
        lines = text.split("\n")
        if op == 0 and nums:
            m = rng.choice(nums)
            text = text[:m.start()] + rng.choice(NUMBERS) + text[m.end():]
        elif op == 1 and len(lines) > 1:
            del lines[rng.randrange(len(lines))]
            text = "\n".join(lines)
        elif op == 2:
            k = rng.randrange(len(lines))
            lines[k:k] = [lines[k]] * rng.randint(2, 200)
            text = "\n".join(lines)
        elif op == 3:
            i = rng.randrange(len(text) + 1)
            text = text[:i] + rng.choice(["|", ":|", "(", "[", "]", "<", ">", "&", "\x00", "\u00e9", "%%", "/0",
                                          "</note>", "<note>", "<chord/>", "''''''", ",,,,,,,,", "z9999999"]) + text[i:]
        else:
            i = rng.randrange(len(text) + 1)
            text = text[:i] + text[i:i + rng.randint(1, 40)] * rng.randint(2, 100) + text[i:]
    return text


def mutant(kind: str, rng: random.Random) -> bytes:
    seed = SEEDS[kind]()
    if kind == "mid":
        return mutate_midi(seed, rng) if rng.random() < 0.6 else mutate_bytes(seed, rng)
    if kind in ("abc", "musicxml"):
        return mutate_text(seed.decode(), rng).encode("utf-8", "surrogateescape") if rng.random() < 0.7 \
            else mutate_bytes(seed, rng)
    if kind == "mxl":
        return mxl(mutate_text(SEED_XML, rng).encode()) if rng.random() < 0.6 else mutate_bytes(seed, rng)
    b = bytearray(seed)  # wav: fmt fields (channels, rate, bits) and the data size, or byte edits
    if rng.random() < 0.5:
        at, size = rng.choice([(22, 2), (24, 4), (34, 2), (40, 4), (4, 4), (16, 4), (20, 2)])
        b[at:at + size] = rng.choice([b"\x00" * size, b"\xff" * size, b"\x01" + b"\x00" * (size - 1)])
        return bytes(b)
    return mutate_bytes(seed, rng)


# ------------------------------------------------------------------------------ hostile files
def canary(folder: Path) -> tuple[Path, str]:
    """A file outside the corpus whose content nothing should ever read: a unique token, and ABC notes
    (128 C#5) that would show as extra notes if an include took it in."""
    folder.mkdir(parents=True, exist_ok=True)
    token = f"CANARY-{os.getpid():x}-{int(time.time()):x}"
    path = folder / "canary.abc"
    path.write_text("^c" * 128 + f"\n% {token}\n")
    (folder / "canary.xml").write_text(f"<note><pitch><step>C</step><alter>1</alter><octave>5</octave></pitch>"
                                       f"<duration>1</duration></note><!-- {token} -->")
    return path, token


ABC_TUNE = "X:1\nT:Tune\nM:4/4\nL:1/4\nK:C\n{line}\nCDEF|\n"  # 4 notes of its own


def hostile_midi() -> dict[str, bytes]:
    n = note(60)
    long_note = b"\x00\x90\x3c\x50" + vlq(2 ** 27) + b"\x90\x3e\x50" + vlq(2 ** 27) + b"\x80\x3c\x00\x00\x80\x3e\x00"
    return {
        "tpq0.mid": midi([n], division=0), "tempo0.mid": midi([b"\x00\xff\x51\x03\x00\x00\x00" + n]),
        "tracks10000.mid": midi([n] + [b""] * 9_999), "note2p28.mid": midi([long_note]),
        "notes1M.mid": midi([b"\x00\x90\x3c\x50\x01\x80\x3c\x00" * 1_000_000]),
        "smpte.mid": midi([n], division=0xE728), "header_only.mid": midi([])[:14],
        "declared65535.mid": midi([n], declared=65535), "chunk_len_max.mid": midi([n])[:18] + b"\xff\xff\xff\xff",
        "format2.mid": midi([n, n], fmt=2), "vlq_overlong.mid": midi([b"\xff\xff\xff\xff\x7f\x90\x3c\x50" + n]),
        "sysex_huge.mid": midi([b"\x00\xf0" + vlq(2 ** 28 - 1) + b"\x01\x02\xf7" + n]),
        "running_status_junk.mid": midi([b"\x00\x3c\x50" * 100 + n]),
        "tempo_tiny.mid": midi([b"\x00\xff\x51\x03\xff\xff\xff" + n]),
        "notes_at_2p28.mid": midi([note(60, delta=2 ** 28 - 1)] * 16),
        "empty.mid": b"", "text.mid": b"MThd is what this says, but it is text\n" * 10,
        "pitch_255.mid": midi([b"\x00\x90\xff\x50\x10\x80\xff\x00"]),
    }


def hostile_abc(canary_path: Path) -> dict[str, bytes]:
    c = str(canary_path)
    lines = {"include_canary": f"%%abc-include {c}", "include_urandom": "%%abc-include /dev/urandom",
             "include_passwd": "%%abc-include /etc/passwd", "I_include": f"I:abc-include {c}",
             "inline_I": f"[I:abc-include {c}] CDEF", "ptstress": f"%%MIDI ptstress {c}",
             "continued": f"%%abc-\n+:include {c}", "Q0": "Q:1/4=0", "Qhuge": "Q:1/4=100000000", "L0": "L:1/0",
             "Lhuge": "L:1/100000000", "M00": "M:0/0", "Mhuge": "M:99999999/1", "long_note": "C99999999",
             "Kjunk": "K:Hlocrian#####", "program999": "%%MIDI program 999", "voices": "\n".join(
                 f"V:{k}\nC" for k in range(1, 2001)), "tuplets": "(9" * 3000 + "C" * 9, "chords": "[" * 5000,
             "grace": "{" + "g" * 100000 + "}C", "repeats": "|:" * 5000 + "C" + ":|" * 5000,
             "transpose": "%%MIDI transpose 99999", "nul": "C\x00D\x00E"}
    out = {f"{k}.abc": ABC_TUNE.format(line=v).encode() for k, v in lines.items()}
    out.update({"empty.abc": b"", "binary.abc": bytes(range(256)) * 40, "X_only.abc": b"X:1\n",
                "latin1.abc": ABC_TUNE.format(line="T:\xe9t\xe9").encode("latin-1"),
                "longline.abc": ABC_TUNE.format(line="C" * 2_000_000).encode(),
                "tunes10000.abc": "".join(ABC_TUNE.format(line="").replace("X:1", f"X:{k}")
                                          for k in range(10_000)).encode()})
    return out


def _xml(notes: str = "", attrs: str = "<divisions>1</divisions>", extra_parts: int = 0, doctype: str = "",
         part_body: str = "") -> bytes:
    n = notes or "<note><pitch><step>C</step><octave>4</octave></pitch><duration>1</duration></note>"
    plist = "".join(f'<score-part id="P{k}"><part-name>p</part-name></score-part>' for k in range(1, extra_parts + 2))
    parts = "".join(f'<part id="P{k}"><measure number="1"><attributes>{attrs}</attributes>{part_body or n}'
                    f"</measure></part>" for k in range(1, extra_parts + 2))
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n{doctype}<score-partwise version="4.0"><part-list>{plist}'
            f"</part-list>{parts}</score-partwise>\n").encode()


def hostile_xml(canary_dir: Path) -> dict[str, bytes]:
    cx = canary_dir / "canary.xml"
    laughs = '<!DOCTYPE s [<!ENTITY a "aaaaaaaaaa">' + "".join(
        f'<!ENTITY {chr(98 + k)} "{("&" + chr(97 + k) + ";") * 10}">' for k in range(9)) + "]>"
    p = "<pitch><step>C</step><octave>4</octave></pitch>"
    one = f"<note>{p}<duration>1</duration></note>"
    return {
        "xxe_canary.musicxml": _xml(doctype=f'<!DOCTYPE score-partwise [<!ENTITY x SYSTEM "file://{cx}">]>\n',
                                    part_body="&x;"),
        "xxe_passwd.musicxml": _xml(doctype='<!DOCTYPE score-partwise [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n',
                                    part_body=f"<note>{p}<duration>1</duration><lyric><text>&x;</text></lyric></note>"),
        "xinclude_canary.musicxml": _xml(
            part_body=f'<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="{cx}"/>'),
        "dtd_external.musicxml": _xml(doctype=f'<!DOCTYPE score-partwise SYSTEM "file://{cx}">\n'),
        "billion_laughs.musicxml": _xml(doctype=laughs + "\n", part_body=f"<note>{p}<duration>1</duration>"
                                        "<lyric><text>&j;</text></lyric></note>"),
        "divisions0.musicxml": _xml(attrs="<divisions>0</divisions>"),
        "divisions_neg.musicxml": _xml(attrs="<divisions>-4</divisions>"),
        "duration_huge.musicxml": _xml(notes=f"<note>{p}<duration>2147483647</duration></note>"),
        "duration_nan.musicxml": _xml(notes=f"<note>{p}<duration>NaN</duration></note>"),
        "octave_huge.musicxml": _xml(notes=f"<note>{p.replace('>4<', '>99999<')}<duration>1</duration></note>"),
        "alter_huge.musicxml": _xml(notes="<note><pitch><step>C</step><alter>1e9</alter><octave>4</octave></pitch>"
                                    "<duration>1</duration></note>"),
        "step_H.musicxml": _xml(notes=f"<note>{p.replace('>C<', '>H<')}<duration>1</duration></note>"),
        "tempo0.musicxml": _xml(part_body=f'<direction><sound tempo="0"/></direction>{one}'),
        "tempo_huge.musicxml": _xml(part_body=f'<direction><sound tempo="1e308"/></direction>{one}'),
        "time00.musicxml": _xml(attrs="<divisions>1</divisions><time><beats>0</beats><beat-type>0</beat-type></time>"),
        "beats_huge.musicxml": _xml(attrs="<divisions>1</divisions><time><beats>1000000</beats>"
                                          "<beat-type>1</beat-type></time>"),
        "beats_1e5.musicxml": SEED_XML.replace("<beats>3</beats>", "<beats>100000</beats>").encode(),
        "beats_1e11.musicxml": SEED_XML.replace("<beats>3</beats>", "<beats>99999999999</beats>").encode(),
        "parts2000.musicxml": _xml(extra_parts=1999),
        "notes30000.musicxml": _xml(part_body=f"<note>{p}<duration>1</duration></note>" * 30000),
        "dots.musicxml": _xml(notes=f"<note>{p}<duration>1</duration><type>quarter</type>{'<dot/>' * 1000}</note>"),
        "deep.musicxml": _xml(part_body="<a>" * 100000 + "</a>" * 100000),
        "tuplet_zero.musicxml": _xml(notes=f"<note>{p}<duration>1</duration><time-modification><actual-notes>0"
                                     "</actual-notes><normal-notes>0</normal-notes></time-modification></note>"),
        "not_xml.musicxml": b"this is not xml at all <<<>>>", "empty.musicxml": b"",
        "utf16.musicxml": SEED_XML.encode("utf-16"), "truncated.xml": SEED_XML.encode()[:300],
        "whitespace.xml": b"<?xml version='1.0'?>\n" + b" " * 15_000_000 + b"<score-partwise/>",
    }


def mxl_bomb(chunks: int = 114) -> bytes:
    """A valid .mxl whose score unzips to 1.9 GB of spaces, zipped to 1.86 MB (as tests/test_input_safety.py)."""
    head, run = b'<?xml version="1.0"?>\n<score-partwise version="4.0">', b" " * (1 << 24)
    pieces = []
    for data in (head, run):
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        pieces.append(c.compress(data) + c.flush(zlib.Z_FULL_FLUSH))
    deflated = pieces[0] + pieces[1] * chunks + zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    crc = zlib.crc32(head)
    for _ in range(chunks):
        crc = zlib.crc32(run, crc)
    cont = CONTAINER.format(path="score.musicxml").encode()
    return _zip([(b"META-INF/container.xml", cont, 0, len(cont), zlib.crc32(cont)),
                 (b"score.musicxml", deflated, 8, len(head) + len(run) * chunks, crc)])


def _zip(entries: list[tuple[bytes, bytes, int, int, int]]) -> bytes:
    out, central = bytearray(), bytearray()
    for name, data, method, size, crc in entries:
        offset = len(out)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0, crc, len(data), size, len(name), 0)
        out += name + data
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0, crc, len(data), size,
                               len(name), 0, 0, 0, 0, 0, offset) + name
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(central), len(out), 0)
    return bytes(out + central + end)


def hostile_mxl(canary_dir: Path) -> dict[str, bytes]:
    x = SEED_XML.encode()
    cont = CONTAINER.format(path="score.musicxml").encode()
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    deflated = c.compress(x) + c.flush()  # lying_sizes: the directory says 10 bytes, the entry holds more
    return {
        "bomb.mxl": mxl_bomb(), "rootfile_passwd.mxl": mxl(x, rootfile="/etc/passwd"),
        "rootfile_traversal.mxl": mxl(x, rootfile="../../../../" + str(canary_dir / "canary.xml").lstrip("/")),
        "rootfile_absolute.mxl": mxl(x, rootfile=str(canary_dir / "canary.xml")),
        "no_container.mxl": _zip([(b"score.musicxml", x, 0, len(x), zlib.crc32(x))]),
        "entries5000.mxl": mxl(x, extra={f"junk/{k}.txt": b"" for k in range(5000)}),
        "nested.mxl": mxl(mxl(x), rootfile="score.musicxml"),
        "lying_sizes.mxl": _zip([(b"META-INF/container.xml", cont, 0, len(cont), zlib.crc32(cont)),
                                 (b"score.musicxml", deflated, 8, 10, zlib.crc32(x))]),
        "zip_version_255.mxl": _zip_version(mxl(x), 255),
        "truncated.mxl": mxl(x)[:-30], "not_zip.mxl": b"PK\x03\x04 but not really a zip" * 10, "empty.mxl": b"",
    }


def _zip_version(data: bytes, version: int) -> bytes:
    """A zip whose central directory says its entries need zip version ``version`` / 10 to extract."""
    b = bytearray(data)
    at = b.find(b"PK\x01\x02")
    while at >= 0:
        b[at + 6:at + 8] = version.to_bytes(2, "little")
        at = b.find(b"PK\x01\x02", at + 4)
    return bytes(b)


def hostile_wav() -> dict[str, bytes]:
    sr = 16000
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(sr) / sr)
    nan = tone.copy()
    nan[::7] = np.nan
    return {
        "nan.wav": wav(nan, sr, float32=True), "inf.wav": wav(np.full(sr, np.inf), sr, float32=True),
        "all_nan.wav": wav(np.full(sr, np.nan), sr, float32=True),
        "denormal.wav": wav(np.full(sr, 1e-40), sr, float32=True),
        "one_sample.wav": wav(np.zeros(1), sr), "no_samples.wav": wav(np.zeros(0), sr),
        "rate0.wav": wav(tone, 0), "rate_huge.wav": wav(tone, 2 ** 31 - 1), "rate1.wav": wav(tone, 1),
        "channels0.wav": wav(tone, sr, channels=0), "channels1024.wav": wav(np.zeros(1024 * 4), sr, channels=1024),
        "channels9.wav": wav(np.tile(tone[:sr // 4], 9), sr, channels=9),
        "data_size_max.wav": wav(tone, sr, data_size=0xFFFFFFFF), "truncated.wav": wav(tone, sr)[:30],
        "not_wav.wav": b"RIFF....WAVEjunk" * 100, "empty.wav": b"",
        "clipping.wav": wav(np.full(sr, 40.0), sr, float32=True),
    }


def write_silent_wav(path: Path, seconds: float = 3600, sr: int = 16000) -> None:
    """A sparse WAV of ``seconds`` of silence (16-bit zeros): its size on disk is next to nothing."""
    size = int(seconds * sr) * 2
    path.write_bytes(wav(np.zeros(0), sr, data_size=size))
    with open(path, "r+b") as f:
        f.truncate(44 + size)


def build_corpus(root: Path, canary_path: Path, mutants: int, seed: int) -> dict[str, list[Path]]:
    """{format: [paths]}: the hostile files, then ``mutants`` seeded mutants per format (name 'mut-K.ext')."""
    out: dict[str, list[Path]] = {}
    groups = {"mid": hostile_midi(), "abc": hostile_abc(canary_path), "musicxml": hostile_xml(canary_path.parent),
              "mxl": hostile_mxl(canary_path.parent), "wav": hostile_wav()}
    rng = random.Random(seed)
    for kind, files in groups.items():
        folder = root / kind
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(mutants):
            files[f"mut-{k:03d}.{kind}"] = mutant(kind, rng)
        paths = []
        for name, data in files.items():
            (folder / name).write_bytes(data)
            paths.append(folder / name)
        out[kind] = paths
    extra = root / "mid" / "folder.mid"  # a folder named like a score, a device, and a 1-hour silence
    extra.mkdir(exist_ok=True)
    out["mid"].append(extra)
    dev = root / "mid" / "urandom.mid"
    if not dev.exists():
        dev.symlink_to("/dev/urandom")
    out["mid"].append(dev)
    write_silent_wav(root / "wav" / "silent_1h.wav")
    out["wav"].append(root / "wav" / "silent_1h.wav")
    return out


# ---------------------------------------------------------------------------------- models
def build_models(root: Path) -> dict[str, Path]:
    """{name: folder}: 'tiny' (random weights, d_model 32, as tests/conftest.py) and broken copies of it."""
    import torch

    from cadenza.model import ModelConfig, Transformer, save_model_folder
    from cadenza.tokenizers import RemiSpec, RemiTokenizer

    tok = RemiTokenizer(RemiSpec())
    torch.manual_seed(0)
    tiny = root / "tiny"
    if not (tiny / "config.json").is_file():
        model = Transformer(ModelConfig(vocab_size=tok.vocab_size, d_model=32, n_layers=2, n_heads=4, d_ff=64,
                                        max_seq_len=256))
        save_model_folder(tiny, model, {"name": "tiny", "family": "remi-lm", "tokenizer": tok.to_config(),
                                        "styles": tok.styles, "license": "test"}, card="# tiny\n")
    good = json.loads((tiny / "config.json").read_text())

    def sizes(**kw):
        return {**good, "model": {**good["model"], **kw}}

    broken = {"seq_1e9": sizes(max_seq_len=1e9), "seq_int_1e9": sizes(max_seq_len=10 ** 9),
              "d_model_4096": sizes(d_model=4096),
              "heads_0": sizes(n_heads=0), "layers_neg": sizes(n_layers=-2), "d_ff_string": sizes(d_ff="64"),
              "vocab_huge": sizes(vocab_size=2 ** 40), "eps_nan": sizes(norm_eps=float("nan")), "list_config": [good],
              "model_list": {**good, "model": list(good["model"].values())},
              "no_tokenizer": {**good, "tokenizer": None},
              "tokenizer_junk": {**good, "tokenizer": {"scheme": "remi", "spec": "junk"}},
              "styles_huge": {**good, "styles": ["x"] * 100000},
              "format_wrong": {**good, "format": "other"}, "rope_inf": sizes(rope_theta=float("inf"))}
    out = {"tiny": tiny}
    for name, cfg in broken.items():
        d = root / name
        d.mkdir(exist_ok=True)
        (d / "config.json").write_text(json.dumps(cfg))
        (d / "model.safetensors").unlink(missing_ok=True)
        (d / "model.safetensors").symlink_to(tiny / "model.safetensors")
        out[name] = d
    raw = {"not_json": (b"{not json", None), "empty_config": (b"", None), "no_weights": (None, b""),
           "weights_junk": (None, b"\xff" * 64), "weights_header_huge": (None, struct.pack("<Q", 2 ** 62) + b"{}"),
           "weights_truncated": (None, (tiny / "model.safetensors").read_bytes()[:5000])}
    for name, (cfg_bytes, weights) in raw.items():
        d = root / name
        d.mkdir(exist_ok=True)
        (d / "config.json").write_bytes(cfg_bytes if cfg_bytes is not None else (tiny / "config.json").read_bytes())
        w = d / "model.safetensors"
        w.unlink(missing_ok=True)
        if weights is None:
            w.symlink_to(tiny / "model.safetensors")
        elif weights:
            w.write_bytes(weights)
        out[name] = d
    (root / "is_a_file").write_text("not a folder")
    out["is_a_file"] = root / "is_a_file"
    return out


# ----------------------------------------------------------------------------------- runner
PRELOAD = ("torch", "symusic", "music21", "soundfile", "librosa", "matplotlib.pyplot", "cadenza.cli", "cadenza.tasks",
           "cadenza.tasks.compose", "cadenza.tasks.harmonize", "cadenza.tasks.audio", "cadenza.tasks.arrange",
           "cadenza.score", "cadenza.score.convert", "cadenza.render.outputs", "cadenza.render.audio",
           "cadenza.audio.transcribe")


def child(req: dict) -> None:
    """In a forked or fresh process: the case's folder, environment, files and audit hook, then the CLI."""
    import tempfile

    os.chdir(req["cwd"])
    for k, v in req["env"].items():
        os.environ[k] = v
    tempfile.tempdir = None
    for fd, path in ((1, req["stdout"]), (2, req["stderr"])):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    if req.get("memory"):  # an address-space cap: a runaway allocation is a MemoryError, not the OOM killer
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (req["memory"], req["memory"]))
    if req.get("audit"):
        exec(SITECUSTOMIZE, {"__name__": "robust_audit"})
    from cadenza.cli import main

    sys.argv = ["cadenza", *req["argv"]]
    try:
        rc = main(req["argv"])
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001 - what escapes main() is exactly what the bench looks for
        import traceback

        traceback.print_exc()
        rc = 98
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass
    os._exit(rc if isinstance(rc, int) else 1)


def wait_child(pid: int, timeout: float) -> dict:
    """Wait for ``pid`` (its own session) up to ``timeout`` s, then kill its whole group: exit code,
    signal, timed out, wall seconds and peak RSS (MB) from wait4."""
    t0 = time.monotonic()
    timed_out, pause = False, 0.002
    while True:
        wpid, status, ru = os.wait4(pid, os.WNOHANG)
        if wpid:
            break
        if time.monotonic() - t0 > timeout:
            timed_out = True
            with _quiet():
                os.killpg(pid, signal.SIGKILL)
            _, status, ru = os.wait4(pid, 0)
            break
        time.sleep(pause)
        pause = min(pause * 1.5, 0.05)
    with _quiet():  # grandchildren (abc2midi) left in the group
        os.killpg(pid, signal.SIGKILL)
    sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
    return {"rc": os.WEXITSTATUS(status) if os.WIFEXITED(status) else -sig, "signal": sig, "timed_out": timed_out,
            "wall_s": time.monotonic() - t0, "rss_mb": ru.ru_maxrss / 1024}


class _quiet:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return exc[0] is not None and issubclass(exc[0], OSError)


def warm_numba() -> None:
    """Compile librosa's numba functions (pYIN, beat tracking) here, once, before any fork. Children that
    compile them at the same time on a cold cache race in numba's cache writing (numba#10128, librosa#1998):
    the mixed cache files then make every later beat_track in any process die with SIGSEGV."""
    import io as _io

    import soundfile as sf

    from cadenza.audio.transcribe import transcribe_array

    samples, sr = sf.read(_io.BytesIO(seed_wav()), dtype="float32")
    try:
        transcribe_array(samples, sr, quantize="1/16")
    except Exception as e:  # noqa: BLE001 - a bench must start; the cases will show what is wrong
        print(f"warm-up: {type(e).__name__}: {e}", file=sys.stderr)


def zygote() -> None:
    """Read one JSON request per line on stdin, fork a child for it, answer one JSON line on stdout."""
    import importlib
    import resource

    for name in PRELOAD:
        with _quiet():
            importlib.import_module(name)
    warm_numba()
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    sys.stdout.write(json.dumps({"ready": True, "rss_mb": own}) + "\n")
    sys.stdout.flush()
    for line in sys.stdin:
        req = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            try:
                os.setsid()
                child(req)
            finally:
                os._exit(97)
        sys.stdout.write(json.dumps(wait_child(pid, req["timeout"])) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    if sys.argv[1:] == ["--zygote"]:
        zygote()
    elif sys.argv[1:] == ["--warm"]:
        warm_numba()
    elif sys.argv[1:2] == ["--one"]:
        child(json.loads(sys.argv[2]))
