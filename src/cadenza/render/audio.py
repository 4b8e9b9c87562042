"""Scores to sound: SoundFont renderers, the built-in fallback, normalization, audio files.

Renderers (``bench/render.py`` measures them on the same 3-minute, 8-track file):

* ``fluidsynth``: FluidSynth through pyfluidsynth, fed by our own event loop (below). The
  reference SoundFont synthesizer: every General MIDI program, the drum channel, every controller
  (sustain pedal, volume, pan, expression), pitch bends, reverb and chorus. The default.
* ``builtin``: cadenza's own small synthesizer (builtin.py), used when no SoundFont can be found,
  so every score can still be heard.

Events go to FluidSynth from Python rather than through FluidSynth's own MIDI file player because
the player runs in real time only; driving the synth ourselves between events renders as fast as
the CPU allows, straight into float32 (no 16-bit clipping before normalization).
"""

from __future__ import annotations

import ctypes
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import symusic

from cadenza.errors import CadenzaError
from cadenza.files import atomic_output, check_output

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
RENDERERS = ("fluidsynth", "builtin")
SOUNDFONT_ENV = ("CADENZA_SOUNDFONT", "SOUNDFONT")
# Where Debian/Ubuntu (fluid-soundfont-gm, musescore-general-soundfont, timgm6mb-soundfont),
# Fedora, Arch and macOS Homebrew put General MIDI SoundFonts, best first.
SOUNDFONT_PLACES = (
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf3/default-GM.sf3",
    "/usr/share/sounds/sf3/MuseScore_General.sf3",
    "/usr/share/sounds/sf2/TimGM6mb.sf2",
    "/usr/share/soundfonts/default.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM2-2.sf2",
    "/usr/local/share/soundfonts/default.sf2",
    "/opt/homebrew/share/soundfonts/default.sf2",
    "~/.local/share/soundfonts/default.sf2",
    "~/.fluidsynth/default_sound_font.sf2",
)
PEAK_DBFS = -1.0  # normalization target: the loudest sample at -1 dBFS, never clipped
TAIL_SECONDS = 3.0  # rendered after the last note-off for releases and reverb (trimmed when silent)
DRUM_CHANNEL = 9


@dataclass
class Audio:
    samples: np.ndarray  # (N, 2) float32 in [-1, 1]
    sample_rate: int
    renderer: str
    soundfont: Path | None = None

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.sample_rate


# ---- finding a SoundFont -------------------------------------------------------------------

def check_soundfont(path: str | os.PathLike) -> Path:
    """The SoundFont at ``path``, checked to be a readable SF2/SF3 (RIFF sfbk) file."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise CadenzaError(f"SoundFont {p} not found")
    try:
        with open(p, "rb") as f:
            head = f.read(12)
    except OSError as e:
        raise CadenzaError(f"cannot read SoundFont {p}: {e.strerror or e}") from None
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"sfbk":
        raise CadenzaError(f"{p} is not a SoundFont (an .sf2/.sf3 file starts with RIFF....sfbk)")
    return p


def find_soundfont(explicit: str | os.PathLike | None = None) -> Path | None:
    """``explicit`` (checked), else $CADENZA_SOUNDFONT / $SOUNDFONT, else the usual system places."""
    if explicit:
        return check_soundfont(explicit)
    for var in SOUNDFONT_ENV:
        if os.environ.get(var):
            return check_soundfont(os.environ[var])
    for place in SOUNDFONT_PLACES:
        p = Path(place).expanduser()
        if p.is_file():
            try:
                return check_soundfont(p)
            except CadenzaError:
                continue
    return None


# ---- what the synthesizers are told ---------------------------------------------------------

@dataclass
class Channel:
    program: int
    is_drum: bool
    tracks: list[int]


def assign_channels(score: symusic.Score) -> list[tuple[int, Channel]]:
    """MIDI channels for the score's tracks: drums on channel 10 (index 9), others on the rest.

    With more than 15 pitched tracks, tracks that share a program share a channel, then the
    remaining ones wrap around (they then also share controllers).
    """
    chans: dict[int, Channel] = {}
    free = [c for c in range(16) if c != DRUM_CHANNEL]
    by_program: dict[int, int] = {}
    for i, tr in enumerate(score.tracks):
        if tr.is_drum:
            chans.setdefault(DRUM_CHANNEL, Channel(tr.program, True, [])).tracks.append(i)
            continue
        if len(free):
            c = free.pop(0)
            chans[c] = Channel(tr.program, False, [i])
            by_program.setdefault(tr.program, c)
        else:
            c = by_program.get(tr.program, [k for k in chans if k != DRUM_CHANNEL][i % 15])
            chans[c].tracks.append(i)
    return sorted(chans.items())


# event kinds, in the order they apply at the same instant: a program first, controllers
# (a pedal release before the notes that follow), note-offs before note-ons (a repeated note
# sounds again)
PROGRAM, CONTROL, BEND, NOTE_OFF, NOTE_ON = range(5)


def midi_events(score: symusic.Score, sample_rate: int) -> tuple[np.ndarray, list[tuple[int, int, int, int, int]]]:
    """(sample times, events) for an event-driven synthesizer; events are (kind, channel, a, b, program).

    A note-on carries its track's program: where tracks with different programs share a channel
    (more than 15 pitched tracks), the synthesizer switches the channel's program before the note.
    """
    sec = score.to("second")
    rows: list[tuple[float, int, int, int, int, int]] = []
    for c, ch in assign_channels(score):
        rows.append((0.0, PROGRAM, c, ch.program, 0, ch.program))
        for i in ch.tracks:
            tr = sec.tracks[i]
            prog = tr.program
            for n in tr.notes:
                if n.duration <= 0 or not 0 <= n.pitch < 128:
                    continue
                rows.append((n.start, NOTE_ON, c, n.pitch, max(1, min(127, n.velocity)), prog))
                rows.append((n.start + n.duration, NOTE_OFF, c, n.pitch, 0, prog))
            for cc in tr.controls:
                rows.append((cc.time, CONTROL, c, cc.number, cc.value, prog))
            if not any(cc.number == 64 for cc in tr.controls):
                for p in tr.pedals:  # pedals without CC 64 events (e.g. built in code)
                    rows.append((p.time, CONTROL, c, 64, 127, prog))
                    rows.append((p.time + p.duration, CONTROL, c, 64, 0, prog))
            for b in tr.pitch_bends:
                rows.append((b.time, BEND, c, b.value + 8192, 0, prog))
    rows.sort(key=lambda r: (r[0], r[1]))
    times = np.round(np.array([r[0] for r in rows], dtype=np.float64) * sample_rate).astype(np.int64)
    return np.maximum(times, 0), [r[1:] for r in rows]


def pedal_held_notes(score: symusic.Score) -> symusic.Score:
    """A copy in which every note still sounding when a sustain pedal goes down lasts until the
    pedal comes up: what the pedal does, for synthesizers that only render notes."""
    out = score.copy()
    for tr in out.tracks:
        spans = [(p.time, p.time + p.duration) for p in tr.pedals]
        if not spans:
            downs = [(c.time, c.value >= 64) for c in tr.controls if c.number == 64]
            t0 = None
            for t, down in downs:
                if down and t0 is None:
                    t0 = t
                elif not down and t0 is not None:
                    spans.append((t0, t))
                    t0 = None
        if not spans:
            continue
        spans.sort()
        starts = np.array([a for a, _ in spans])
        for n in tr.notes:
            end = n.start + n.duration
            k = np.searchsorted(starts, end, side="right") - 1
            if k >= 0 and spans[k][0] <= end < spans[k][1]:
                n.duration = spans[k][1] - n.start
    return out


def _last_sample(score: symusic.Score, sample_rate: int) -> int:
    sec = score.to("second")
    return int(np.ceil(sec.end() * sample_rate)) if sec.end() > 0 else 0


# ---- renderers ------------------------------------------------------------------------------

class RendererUnavailable(CadenzaError):
    """A renderer that cannot run here (its library or system library is missing)."""


def _fluidsynth_module():
    try:
        import fluidsynth  # pyfluidsynth: loads libfluidsynth at import
    except (ImportError, OSError) as e:
        raise RendererUnavailable(f"FluidSynth is not available ({str(e).splitlines()[0] if str(e) else e}); "
                                  "install it (Debian: apt-get install libfluidsynth3)") from None
    return fluidsynth


def render_fluidsynth(score: symusic.Score, soundfont: Path, sample_rate: int = 44100,
                      progress=None) -> np.ndarray:
    """Render with FluidSynth; returns (N, 2) float32 (not normalized)."""
    fl = _fluidsynth_module()
    lib = fl._fl
    write_float = lib.fluid_synth_write_float
    write_float.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                            ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    write_float.restype = ctypes.c_int
    # gain: FluidSynth sums voices; 0.2 (its default) leaves headroom, and we normalize after in float.
    # cpu-cores: FluidSynth renders voices on worker threads; on 2 cores that took a 3-minute,
    # 8-track piece from 36x to 58x real time (bench/render.py).
    cores = max(1, min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, 8))
    synth = fl.Synth(gain=0.2, samplerate=float(sample_rate), **{"synth.cpu-cores": cores,
                                                                   "synth.reverb.active": 1,
                                                                   "synth.chorus.active": 1})
    try:
        sfid = synth.sfload(str(soundfont))
        if sfid < 0:
            raise CadenzaError(f"FluidSynth could not load the SoundFont {soundfont}")
        times, events = midi_events(score, sample_rate)
        total = int(times[-1] if len(times) else 0) + int(TAIL_SECONDS * sample_rate)
        out = np.zeros((total, 2), dtype=np.float32)
        base = out.ctypes.data
        stride = out.strides[0]
        cursor = 0

        def run_to(s: int):
            nonlocal cursor
            while cursor < s:
                n = min(s - cursor, 1 << 16)
                ptr = base + cursor * stride
                if write_float(synth.synth, n, ptr, 0, 2, ptr + 4, 0, 2) != 0:
                    raise CadenzaError("FluidSynth failed while rendering")
                cursor += n

        current: dict[int, int] = {}  # channel -> program selected

        def select(c: int, program: int):
            if current.get(c) == program:
                return
            current[c] = program
            if c == DRUM_CHANNEL:  # drum kits live in bank 128; a kit number the font lacks -> standard kit
                if synth.program_select(c, sfid, 128, program) != 0:
                    synth.program_select(c, sfid, 128, 0)
            elif synth.program_select(c, sfid, 0, program) != 0:
                synth.program_select(c, sfid, 0, 0)

        step = max(1, len(events) // 100)
        for k, (s, (kind, c, a, b, program)) in enumerate(zip(times, events)):
            run_to(int(s))
            if kind == NOTE_ON:
                select(c, program)
                synth.noteon(c, a, b)
            elif kind == NOTE_OFF:
                synth.noteoff(c, a)
            elif kind == CONTROL:
                synth.cc(c, a, b)
            elif kind == BEND:
                synth.pitch_bend(c, a - 8192)
            else:
                select(c, a)
            if progress and k % step == 0:
                progress(k / max(1, len(events)))
        run_to(total)
        return out
    finally:
        synth.delete()


def render_builtin(score: symusic.Score, sample_rate: int = 44100, progress=None) -> np.ndarray:
    from cadenza.render.builtin import synthesize

    return synthesize(pedal_held_notes(score), sample_rate, progress=progress)


# ---- the one entry point --------------------------------------------------------------------

_fallback_said = False


def _say_fallback(reason: str) -> None:
    global _fallback_said
    if not _fallback_said:
        # both parts at once: a note naming only the SoundFont was followed, once installed, by a
        # second one asking for the library
        print(f"note: {reason}; using cadenza's built-in synthesizer (a fallback: simple timbres). "
              "For real instruments install FluidSynth and a General MIDI SoundFont (Debian: apt-get install "
              "libfluidsynth3 fluid-soundfont-gm; or pass --soundfont FILE.sf2)", file=sys.stderr)
        _fallback_said = True


def render_audio(score: symusic.Score, *, soundfont: str | os.PathLike | None = None, sample_rate: int = 44100,
                 renderer: str = "auto", normalize: bool = True, name: str = "the score", progress=None) -> Audio:
    """Render ``score`` to stereo float32 audio.

    ``renderer``: "auto" (FluidSynth with a SoundFont when both exist, else the built-in synthesizer,
    said once on stderr), or one of RENDERERS. ``soundfont``: a path, else $CADENZA_SOUNDFONT /
    $SOUNDFONT, else the usual system places. A score with no notes is an error (nothing to hear).
    """
    if not isinstance(sample_rate, (int, np.integer)) or not 8000 <= sample_rate <= 192000:
        raise CadenzaError(f"sample rate must be a whole number of Hz between 8000 and 192000 (got {sample_rate})")
    if renderer not in ("auto", *RENDERERS):
        raise CadenzaError(f"unknown renderer {renderer!r}; use one of auto, {', '.join(RENDERERS)}")
    if not any(len(t.notes) for t in score.tracks):
        raise CadenzaError(f"{name} has no notes: nothing to render")
    sf = find_soundfont(soundfont) if renderer != "builtin" else None
    used = renderer
    if renderer == "auto":
        if sf is None:
            try:
                _fluidsynth_module()
                library = ""
            except RendererUnavailable:
                library = " and the FluidSynth library is not installed"
            _say_fallback("no SoundFont found (looked in $CADENZA_SOUNDFONT, $SOUNDFONT and "
                          f"/usr/share/sounds/sf2/ and other usual places){library}")
            used = "builtin"
        else:
            try:
                _fluidsynth_module()
                used = "fluidsynth"
            except RendererUnavailable as e:
                _say_fallback(str(e))
                used = "builtin"
    elif renderer != "builtin" and sf is None:
        raise CadenzaError(f"the {renderer} renderer needs a SoundFont: pass --soundfont FILE.sf2 or set "
                           "$CADENZA_SOUNDFONT")
    if used == "fluidsynth":
        raw = render_fluidsynth(score, sf, sample_rate, progress)
    else:
        raw = render_builtin(score, sample_rate, progress)
        sf = None
    raw = trim_tail(raw, _last_sample(score, sample_rate), sample_rate)
    return Audio(normalize_peak(raw, copy=False) if normalize else raw, int(sample_rate), used, sf)


def trim_tail(audio: np.ndarray, last_note_end: int, sample_rate: int, floor_db: float = -70.0) -> np.ndarray:
    """Cut the silence after the last note's release (keeping 50 ms), never before the last note ends.

    Only the part after the last note is scanned (whole-array reductions over minutes of stereo
    audio cost more than the rest of this function)."""
    if not len(audio):
        return audio
    peak = float(max(audio.max(), -audio.min()))
    if peak == 0:
        return audio[:max(last_note_end, 1)]
    tail = audio[last_note_end:]
    loud = np.nonzero((np.abs(tail[:, 0]) > peak * 10 ** (floor_db / 20)) |
                      (np.abs(tail[:, -1]) > peak * 10 ** (floor_db / 20)))[0]
    end = last_note_end + (int(loud[-1]) + 1 if len(loud) else 0) + int(0.05 * sample_rate)
    return audio[:min(end, len(audio))]


def normalize_peak(audio: np.ndarray, peak_dbfs: float = PEAK_DBFS, copy: bool = True) -> np.ndarray:
    """Scale so the loudest sample sits at ``peak_dbfs`` (float math: nothing clips); stereo out.
    ``copy=False`` scales a float32 stereo array in place."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = np.stack([audio, audio], 1)
    elif audio.shape[1] == 1:
        audio = np.repeat(audio, 2, 1)
    peak = float(max(audio.max(), -audio.min())) if audio.size else 0.0
    if peak > 0:
        # the target is below 1.0 by 1 dB: rounding cannot push a sample past full scale
        scale = np.float32(10 ** (peak_dbfs / 20) / peak)
        audio = audio * scale if copy else np.multiply(audio, scale, out=audio)
    return audio


# ---- audio files -----------------------------------------------------------------------------

WRITE_BLOCK = 1 << 15  # frames per write call
_FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS"),
            ".mp3": ("MP3", "MPEG_LAYER_III")}


def write_audio(path: str | os.PathLike, audio: Audio | np.ndarray, sample_rate: int | None = None) -> Path:
    """Write .wav/.flac (16-bit), .ogg (Vorbis) or .mp3, atomically."""
    import soundfile as sf

    path = check_output(path, AUDIO_SUFFIXES, "audio file")
    if isinstance(audio, Audio):
        samples, sample_rate = audio.samples, audio.sample_rate
    else:
        samples = np.asarray(audio, dtype=np.float32)
    if sample_rate is None:
        raise CadenzaError("write_audio needs the sample rate")
    fmt, subtype = _FORMATS[path.suffix.lower()]
    if fmt in ("MP3", "OGG") and sample_rate not in (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000):
        raise CadenzaError(f"cannot write {path}: {fmt} supports sample rates up to 48000 Hz (got {sample_rate})")
    samples = np.clip(samples, -1.0, 1.0)
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    with atomic_output(path) as tmp:
        try:
            # in blocks: libsndfile's Vorbis encoder overflows its stack on one long write (a 200 s
            # stereo .ogg in one sf.write call killed the process with SIGSEGV; python-soundfile #396)
            with sf.SoundFile(tmp, "w", int(sample_rate), channels, format=fmt, subtype=subtype) as f:
                for k in range(0, len(samples), WRITE_BLOCK):
                    f.write(samples[k:k + WRITE_BLOCK])
        except (RuntimeError, sf.LibsndfileError, TypeError, ValueError) as e:
            raise CadenzaError(f"cannot write {path}: {str(e).splitlines()[0]}") from None
    return path


def read_audio(path: str | os.PathLike, force: bool = False) -> tuple[np.ndarray, int]:
    """(samples (N, channels) float32, sample rate) from a .wav/.flac/.ogg/.mp3 file, within the input
    limits (``cadenza.limits``: length, checked from the header before any sample is read, and
    channels; ``force`` lifts the length) and with finite samples."""
    import soundfile as sf

    from cadenza.limits import LIMITS, cap

    p = Path(path)
    if not p.is_file():
        raise CadenzaError(f"{p} not found")
    try:
        info = sf.info(str(p))
        if info.channels > LIMITS.audio_channels:
            raise CadenzaError(f"{p.name} has {info.channels} channels; cadenza takes at most {LIMITS.audio_channels}")
        if info.duration > cap("audio_seconds", force):  # a 1-hour file read whole took 2.8 GB
            raise CadenzaError(f"{p.name} lasts {info.duration:.0f} s; cadenza takes at most "
                               f"{LIMITS.audio_seconds:.0f} s (--force lifts this)")
        data, sr = sf.read(str(p), dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as e:
        raise CadenzaError(f"cannot read {p} as audio: {str(e).splitlines()[0]}") from None
    if not len(data):
        raise CadenzaError(f"{p} holds no audio samples")
    if not np.isfinite(data).all():  # NaN or infinite samples (a float WAV can hold them)
        raise CadenzaError(f"{p.name} has samples that are not numbers (NaN or infinite)")
    return data, int(sr)
