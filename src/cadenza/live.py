"""Generated music played in real time, and call and response (the ``cadenza live`` command is
``cadenza.cli.live``).

Two threads share one schedule (a heap of MIDI messages keyed by their time on the piece clock):

* the **generation thread** pulls notes from a ``NoteEvent`` iterator (``CadenzaModel.stream_notes``)
  and schedules a note_on at each note's start and a note_off at its end, staying at most
  ``lookahead_s`` seconds of music ahead of playback;
* the **playback loop** (in the calling thread, so Ctrl-C reaches it) sends each message to a *sink*
  when it is due: it sleeps until about 2 ms before, then spins on ``time.perf_counter()``.

Playback starts once ``buffer_s`` seconds of music are scheduled (or the music is complete). The
clock never runs past the *horizon*, the start of the latest note generated (a later note could
still start there): if generation falls behind, the clock stops there, waits until ``buffer_s``
more seconds are generated and resumes from that point. That is one *underrun*, reported in the
stats; the music pauses (like a fermata) instead of arriving late in a burst.

Sinks (``open()``, ``send(msg)``, ``close()``; messages are ``mido.Message``):
``MidiPortSink`` (a MIDI output port, or a virtual port "cadenza"), ``AudioSink`` (FluidSynth on
the sound device) and ``MemorySink`` (records in memory: tests and the benchmark).
"""

from __future__ import annotations

import contextlib
import heapq
import math
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

from cadenza.errors import CadenzaError

DRUM_CHANNEL = 9
PITCHED_CHANNELS = [c for c in range(16) if c != DRUM_CHANNEL]
VIRTUAL_PORT = "cadenza"
ALSA_SEQ = "/dev/snd/seq"
MIN_NOTE_S = 0.005  # a note_off at least this long after its note_on (zero-length notes still sound)
_HOLD_GIL_S = 0.0007  # the playback loop spins holding the GIL only this long before a message is due

# schedule order at equal times: note_offs first (a repeated note ends, then starts again),
# then program changes, then note_ons
_OFF, _PROGRAM, _ON = 0, 1, 2


class NoMidi(CadenzaError):
    """No MIDI here: mido/python-rtmidi missing, no ALSA sequencer, or no such port."""


def _mido():
    try:
        import mido
    except ImportError:
        raise NoMidi("MIDI needs the mido and python-rtmidi packages (pip install mido python-rtmidi)") from None
    return mido


# ---- MIDI ports: rtmidi's errors (and ALSA's stderr noise) as one line -----------------------

@contextlib.contextmanager
def _captured_stderr():
    """Redirect file descriptor 2 (where ALSA's C library writes) to a temporary file while the
    block runs; yields a list that receives the captured text afterwards."""
    out: list[str] = []
    try:
        sys.stderr.flush()
    except Exception:
        pass
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 (e.g. a windowed app): nothing to capture
        yield out
        return
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield out
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            out.append(tmp.read().decode("utf-8", "replace"))


def _midi_failure(e: Exception | None, noise: str = "") -> str:
    """Why MIDI does not work here, in a few words."""
    if sys.platform.startswith("linux") and not os.path.exists(ALSA_SEQ):
        return f"the ALSA sequencer is not available ({ALSA_SEQ} missing; load the snd-seq kernel module)"
    first = (str(e).strip().splitlines() or [""])[0] if e is not None else ""
    if not first:
        first = (noise.strip().splitlines() or [""])[0]
    return first or (type(e).__name__ if e is not None else "unknown error")


def _rtmidi_call(fn: Callable, what: str):
    """Call a mido/rtmidi function, turning its errors and stderr noise into one NoMidi line."""
    mido = _mido()
    try:
        mido.set_backend("mido.backends.rtmidi", load=True)
    except ImportError:
        raise NoMidi("MIDI needs the python-rtmidi package (pip install python-rtmidi)") from None
    noise: list[str] = []
    err = None
    try:
        with _captured_stderr() as noise:
            return fn(mido)
    except NoMidi:
        raise
    except Exception as e:  # rtmidi.SystemError / InvalidPortError / OSError ...
        err = e
    raise NoMidi(f"no MIDI {what}: {_midi_failure(err, ''.join(noise))}")


def midi_ports() -> tuple[list[str], list[str]]:
    """(output port names, input port names); NoMidi where MIDI does not work here."""
    return _rtmidi_call(lambda mido: (list(mido.get_output_names()), list(mido.get_input_names())), "ports")


def _match_port(name: str, names: list[str], what: str) -> str:
    if name in names:
        return name
    close = [n for n in names if name.lower() in n.lower()]
    if len(close) == 1:
        return close[0]
    if not close:
        listing = ", ".join(f"'{n}'" for n in names) or "none"
        raise NoMidi(f"no MIDI {what} port '{name}' (ports: {listing}; see cadenza live --list-ports)")
    raise NoMidi(f"MIDI {what} port '{name}' matches several ports: " + ", ".join(f"'{n}'" for n in close))


# ---- sinks --------------------------------------------------------------------------------

class Sink:
    """Where messages go: ``open()``, ``send(msg)`` (a mido.Message), ``close()``; a context manager."""

    description = "sink"

    def open(self) -> "Sink":
        return self

    def send(self, msg) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()


class MemorySink(Sink):
    """Records ``(time.perf_counter(), msg)`` for every message sent (in-process, no device)."""

    description = "memory"

    def __init__(self):
        self.events: list[tuple[float, object]] = []

    def send(self, msg) -> None:
        self.events.append((time.perf_counter(), msg))

    @property
    def messages(self) -> list:
        return [m for _, m in self.events]


class MidiPortSink(Sink):
    """A MIDI output port through mido + python-rtmidi.

    ``name``: an existing output port (exact name, or a unique part of one); None opens a virtual
    output port "cadenza" (ALSA / CoreMIDI; other programs then connect to it).
    """

    def __init__(self, name: str | None = None, virtual: bool | None = None):
        self.name = name
        self.virtual = name is None if virtual is None else virtual
        self.port = None
        self.description = f"virtual MIDI port '{name or VIRTUAL_PORT}'" if self.virtual else f"MIDI port '{name}'"

    def open(self) -> "MidiPortSink":
        if self.port is not None:
            return self
        if self.virtual and sys.platform.startswith("win"):
            raise NoMidi("no virtual MIDI ports on Windows: give --port NAME (see cadenza live --list-ports)")

        def opener(mido):
            if self.virtual:
                return mido.open_output(self.name or VIRTUAL_PORT, virtual=True)
            real = _match_port(self.name, list(mido.get_output_names()), "output")
            self.description = f"MIDI port '{real}'"
            return mido.open_output(real)

        self.port = _rtmidi_call(opener, "output")
        return self

    def send(self, msg) -> None:
        self.port.send(msg)

    def close(self) -> None:
        if self.port is not None:
            with contextlib.suppress(Exception):
                self.port.close()
            self.port = None


class AudioSink(Sink):
    """FluidSynth, played on the default audio device (sounddevice's OutputStream pulls blocks of
    samples from the synthesizer; messages go straight to the synthesizer)."""

    def __init__(self, soundfont=None, sample_rate: int = 44100, block: int = 256, gain: float = 0.4):
        self.soundfont_arg, self.sample_rate, self.block, self.gain = soundfont, sample_rate, block, gain
        self.synth = self.stream = None
        self.sfid = -1
        self.description = "audio"

    def open(self) -> "AudioSink":
        if self.stream is not None:
            return self
        import ctypes

        from cadenza.render.audio import _fluidsynth_module, find_soundfont
        from cadenza.render.playback import _sounddevice, output_device

        device = output_device()  # NoAudioDevice (one line) where there is none
        sf = find_soundfont(self.soundfont_arg)
        if sf is None:
            raise CadenzaError("live audio needs a General MIDI SoundFont: none found (set CADENZA_SOUNDFONT, "
                               "give --soundfont, or install one: apt-get install fluid-soundfont-gm); "
                               "or play to a MIDI port instead of --audio")
        fl = _fluidsynth_module()
        write_float = fl._fl.fluid_synth_write_float
        write_float.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                                ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        write_float.restype = ctypes.c_int
        self.synth = fl.Synth(gain=self.gain, samplerate=float(self.sample_rate))
        self.sfid = self.synth.sfload(str(sf))
        if self.sfid < 0:
            self.close()
            raise CadenzaError(f"FluidSynth could not load the SoundFont {sf}")
        for c in range(16):
            self.synth.program_select(c, self.sfid, 128 if c == DRUM_CHANNEL else 0, 0)
        handle = self.synth.synth

        def callback(outdata, frames, _time, _status):
            ptr = outdata.ctypes.data
            if write_float(handle, frames, ptr, 0, 2, ptr + 4, 0, 2) != 0:
                outdata.fill(0)

        sd = _sounddevice()
        try:
            self.stream = sd.OutputStream(samplerate=self.sample_rate, channels=2, dtype="float32",
                                          blocksize=self.block, latency="low", callback=callback)
            self.stream.start()
        except Exception as e:
            self.close()
            from cadenza.render.playback import NoAudioDevice

            raise NoAudioDevice(f"cannot play on {device}: {str(e).splitlines()[0] if str(e) else e}") from None
        self.description = f"audio device '{device}' (FluidSynth, {sf.name})"
        return self

    def send(self, msg) -> None:
        s, t = self.synth, msg.type
        if t == "note_on":
            s.noteon(msg.channel, msg.note, msg.velocity)
        elif t == "note_off":
            s.noteoff(msg.channel, msg.note)
        elif t == "program_change":
            drum = msg.channel == DRUM_CHANNEL
            if s.program_select(msg.channel, self.sfid, 128 if drum else 0, msg.program) != 0:
                s.program_select(msg.channel, self.sfid, 128 if drum else 0, 0)
        elif t == "control_change":
            s.cc(msg.channel, msg.control, msg.value)

    def close(self) -> None:
        if self.stream is not None:
            with contextlib.suppress(Exception):
                time.sleep(0.3)  # let releases ring out
                self.stream.stop()
                self.stream.close()
            self.stream = None
        if self.synth is not None:
            with contextlib.suppress(Exception):
                self.synth.delete()
            self.synth = None


# ---- channels -----------------------------------------------------------------------------

class ChannelMap:
    """MIDI channels for instruments: drums on channel 10 (index 9), each pitched program on its own
    channel among the other 15 (a program change before its first note); past 15 programs, the
    least recently used channel is taken over."""

    def __init__(self):
        self.of: dict[int, int] = {}  # program -> channel
        self.last_use: dict[int, int] = {}  # channel -> use counter
        self.uses = 0
        self.used: set[int] = set()

    def assign(self, program: int, is_drum: bool) -> tuple[int, bool]:
        """(channel, whether a program change must come first)."""
        self.uses += 1
        if is_drum:
            first = DRUM_CHANNEL not in self.used
            self.used.add(DRUM_CHANNEL)
            return DRUM_CHANNEL, first and program != 0
        ch = self.of.get(program)
        if ch is not None:
            self.last_use[ch] = self.uses
            return ch, False
        free = [c for c in PITCHED_CHANNELS if c not in self.last_use]
        ch = free[0] if free else min(self.last_use, key=self.last_use.get)
        for p, c in list(self.of.items()):
            if c == ch:
                del self.of[p]
        self.of[program] = ch
        self.last_use[ch] = self.uses
        self.used.add(ch)
        return ch, True


# ---- the player ---------------------------------------------------------------------------

def _lower_thread_priority(nice: int) -> None:
    """Make the calling thread (and the threads it starts: torch's OpenMP workers) yield the CPU to
    the playback thread: on Linux, nice is per thread. Without this, a woken playback thread can
    wait a scheduler tick (several ms) behind the model's threads on a busy machine."""
    if not nice or not hasattr(os, "setpriority") or not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + int(nice)))


@dataclass
class LiveStats:
    lateness_ms: list[float] = field(default_factory=list)  # sent - due, per message sent
    notes: int = 0  # note_ons sent
    generated: int = 0  # notes taken from the iterator
    underruns: int = 0
    stalled_s: float = 0.0  # wall time the clock stood still waiting for generation
    seconds: float = 0.0  # wall time from the start of playback to the end
    wait_s: float = 0.0  # wall time before playback started (filling the buffer)

    def summary(self) -> dict:
        xs = sorted(self.lateness_ms)

        def pct(q):
            if not xs:
                return float("nan")
            k = (len(xs) - 1) * q
            lo, hi = math.floor(k), math.ceil(k)
            return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)

        return {"events": len(xs), "notes": self.notes, "p50_ms": pct(0.5), "p99_ms": pct(0.99),
                "max_ms": xs[-1] if xs else float("nan"), "underruns": self.underruns,
                "stalled_s": self.stalled_s, "seconds": self.seconds, "generated": self.generated,
                "start_wait_s": self.wait_s}


class LivePlayer:
    """Plays a NoteEvent iterator to a sink in real time (see the module docstring).

    ``buffer_s``: seconds of music generated before playback starts (and again after an underrun);
    ``lookahead_s``: at most this far ahead of playback the generation thread runs;
    ``wake_early_s``: the playback loop sleeps until this long before a message is due, then spins.
    """

    def __init__(self, sink: Sink, *, buffer_s: float = 1.0, lookahead_s: float = 4.0,
                 wake_early_s: float = 0.003, switch_interval: float | None = 0.0005, generator_nice: int = 10):
        if buffer_s < 0 or lookahead_s <= 0:
            raise CadenzaError("the buffer must be >= 0 seconds and the lookahead > 0")
        self.sink = sink
        self.buffer_s = float(buffer_s)
        self.lookahead_s = max(float(lookahead_s), self.buffer_s + 0.5)
        self.wake_early_s = wake_early_s
        self.switch_interval = switch_interval
        self.generator_nice = generator_nice
        self.stats = LiveStats()
        self._cond = threading.Condition()
        self._stopping = False

    def stop(self) -> None:
        """Stop playing (from any thread); ``play`` returns soon after, all notes off."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    # -- generation thread --
    def _produce(self, notes: Iterable) -> None:
        cond, chans = self._cond, self.channels
        it = None
        try:
            import mido

            _lower_thread_priority(self.generator_nice)
            it = iter(notes)
            for ev in it:
                with cond:
                    if self._stopping:
                        break
                    if self._origin is None:
                        self._origin = float(ev.start)
                    p = float(ev.start) - self._origin
                    if self._limit is not None and p > self._limit:
                        break  # past the end of the session: never played
                    ch, change = chans.assign(int(ev.program), bool(ev.is_drum))
                    self._seq += 1
                    if change:
                        heapq.heappush(self._heap, (p, _PROGRAM, self._seq, None,
                                                    mido.Message("program_change", channel=ch,
                                                                 program=int(ev.program) & 127)))
                    key = (ch, int(ev.pitch))
                    on = mido.Message("note_on", channel=ch, note=int(ev.pitch),
                                      velocity=max(1, min(127, int(ev.velocity))))
                    off = mido.Message("note_off", channel=ch, note=int(ev.pitch), velocity=0)
                    heapq.heappush(self._heap, (p, _ON, self._seq, key, (on, off)))
                    heapq.heappush(self._heap, (p + max(float(ev.duration), MIN_NOTE_S), _OFF, self._seq, key, off))
                    self._horizon = max(self._horizon, p)
                    self.stats.generated += 1
                    cond.notify_all()
                    while not self._stopping and self._horizon - self._piece_now() > self.lookahead_s:
                        cond.wait(0.05)
                    if self._stopping:
                        break
        except BaseException as e:  # handed to play(), which stops and raises it in the caller's thread
            self._error = e
            self._stopping = True
        finally:
            with contextlib.suppress(Exception):
                close = getattr(it, "close", None)
                if close:
                    close()
            with cond:
                self._done = True
                cond.notify_all()

    def _piece_now(self) -> float:
        """Seconds on the (shifted) piece clock; 0 before playback, the frozen point during an underrun."""
        if self._t0 is None:
            return 0.0
        if self._frozen is not None:
            return self._frozen
        return time.perf_counter() - self._t0

    # -- playback --
    def play(self, notes: Iterable, seconds: float | None = None) -> LiveStats:
        """Play ``notes`` until they end, ``seconds`` of wall time have passed since playback
        started, ``stop()`` is called or Ctrl-C (re-raised after cleanup). Returns the stats (also
        in ``self.stats``). The sink must be open."""
        _mido()  # messages are mido's: a clear error here rather than in the generation thread
        self.stats = LiveStats()
        self.channels = ChannelMap()
        self._heap: list = []
        self._seq = 0
        self._origin = None
        self._horizon = -math.inf
        self._t0 = None
        self._frozen = None
        self._done = False
        self._error = None
        self._stopping = False
        self._limit = seconds
        sounding: dict[tuple[int, int], int] = {}
        old_switch = sys.getswitchinterval()
        if self.switch_interval:
            sys.setswitchinterval(self.switch_interval)  # a woken playback thread gets the GIL sooner
        gen = threading.Thread(target=self._produce, args=(notes,), name="cadenza-live-generate", daemon=True)
        t_begin = time.perf_counter()
        gen.start()
        try:
            self._loop(seconds, sounding, t_begin)
        finally:
            self.stop()
            self._all_notes_off(sounding)
            gen.join(timeout=10.0)
            sys.setswitchinterval(old_switch)
        if self._error is not None and not isinstance(self._error, GeneratorExit):
            raise self._error
        return self.stats

    def _loop(self, seconds, sounding, t_begin) -> None:
        cond, st, heap, send = self._cond, self.stats, self._heap, self.sink.send
        perf = time.perf_counter
        with cond:  # wait for the buffer
            while not (self._stopping or self._done or self._horizon >= self.buffer_s):
                cond.wait(0.05)
            if self._stopping:
                return
            start = perf()
            self._t0 = start
            st.wait_s = start - t_begin
            cond.notify_all()
        end_wall = start + seconds if seconds is not None else math.inf
        early = self.wake_early_s
        try:
            while True:
                batch = None
                with cond:
                    now = perf()
                    if self._stopping or now >= end_wall:
                        break
                    if self._frozen is not None:  # underrun: wait for generation to get ahead again
                        if self._done or self._horizon - self._frozen >= self.buffer_s:
                            st.stalled_s += now - self._freeze_wall
                            self._t0 = now - self._frozen
                            self._frozen = None
                            cond.notify_all()
                        else:
                            cond.wait(min(0.05, max(0.0, end_wall - now)))
                        continue
                    if not heap and self._done:
                        break
                    limit = math.inf if self._done else self._horizon
                    top = heap[0][0] if heap else math.inf
                    t0 = self._t0
                    target = top if top < limit else limit
                    due = min(t0 + target, end_wall)
                    wait = due - now
                    if wait > early:
                        cond.wait(wait - early)
                        continue
                    if wait <= 0:
                        if top < limit:
                            batch = []
                            while heap and heap[0][0] < limit and t0 + heap[0][0] <= now:
                                batch.append(heapq.heappop(heap))
                        elif now < end_wall:  # the clock reached the horizon: generation is behind
                            self._frozen = limit
                            self._freeze_wall = now
                            st.underruns += 1
                            cond.notify_all()
                            continue
                if batch is None:  # due within `early`: stay on the CPU until it is
                    while due - perf() > _HOLD_GIL_S:
                        time.sleep(0)  # lets the generation thread have the GIL meanwhile
                    while perf() < due:  # the last fraction of a millisecond: hold on to the GIL
                        pass
                    continue
                for p, kind, _, key, msg in batch:
                    if kind == _ON:
                        on, off = msg
                        n = sounding.get(key, 0)
                        if n:  # the key is still down from an earlier note: strike it again
                            send(off)
                        st.lateness_ms.append((perf() - (t0 + p)) * 1000.0)
                        send(on)
                        sounding[key] = n + 1
                        st.notes += 1
                    elif kind == _OFF:
                        n = sounding.get(key, 0)
                        if n <= 1:
                            sounding.pop(key, None)
                            st.lateness_ms.append((perf() - (t0 + p)) * 1000.0)
                            send(msg)
                        else:  # another note on this key still sounds: it keeps the key down
                            sounding[key] = n - 1
                    else:
                        st.lateness_ms.append((perf() - (t0 + p)) * 1000.0)
                        send(msg)
        finally:
            st.seconds = perf() - start

    def _all_notes_off(self, sounding: dict) -> None:
        import mido

        msgs = [mido.Message("note_off", channel=ch, note=pitch, velocity=0) for ch, pitch in sorted(sounding)]
        sounding.clear()
        for ch in sorted(self.channels.used):
            msgs.append(mido.Message("control_change", channel=ch, control=64, value=0))  # sustain off
            msgs.append(mido.Message("control_change", channel=ch, control=123, value=0))  # all notes off
        for m in msgs:
            with contextlib.suppress(Exception):  # a port that went away: nothing more to silence
                self.sink.send(m)


def measure_live_latency(note_iter: Iterable, seconds: float = 120.0, **kw) -> dict:
    """A live session of ``seconds`` (wall time from the start of playback) to a MemorySink.

    Returns {"events", "notes", "p50_ms", "p99_ms", "max_ms", "underruns", "stalled_s", "seconds",
    "generated", "start_wait_s"}: lateness is (sent - due) per message. The session is shorter
    when the music ends first (see "seconds"). ``kw`` goes to LivePlayer (buffer_s, lookahead_s).
    """
    sink = MemorySink()
    player = LivePlayer(sink, **kw)
    player.play(note_iter, seconds=seconds)
    return player.stats.summary()


# ---- call and response --------------------------------------------------------------------

def phrase_to_score(events: list, tempo: float = 120.0, *, tpq: int = 480, grid: int = 4,
                    time_signature: tuple[int, int] = (4, 4)):
    """A heard phrase as a Score: ``events`` are (time in seconds, mido.Message) pairs.

    The first note starts at beat 0; onsets and ends snap to the nearest 1/``grid`` of a quarter
    (16ths by default), every note at least one grid step long. Channel 10 (index 9) becomes a
    drum track; other channels one track each, with the program of their last program_change.
    Notes still held at the end last until the last event.
    """
    import symusic

    from cadenza.score import instrument_name

    score = symusic.Score(tpq)
    score.tempos.append(symusic.Tempo(0, qpm=float(tempo)))
    score.time_signatures.append(symusic.TimeSignature(0, *time_signature))
    evs = sorted(((float(t), k, m) for k, (t, m) in enumerate(events)), key=lambda x: (x[0], x[1]))
    programs: dict[int, int] = {}
    held: dict[tuple[int, int], list[tuple[float, int]]] = {}
    notes: list[tuple[int, float, float, int, int]] = []  # channel, start, end, pitch, velocity
    last = evs[-1][0] if evs else 0.0
    for t, _, m in evs:
        typ = getattr(m, "type", None)
        if typ == "program_change":
            programs[m.channel] = m.program
        elif typ == "note_on" and m.velocity > 0:
            held.setdefault((m.channel, m.note), []).append((t, m.velocity))
        elif typ in ("note_on", "note_off"):
            q = held.get((m.channel, m.note))
            if q:
                t0, vel = q.pop(0)
                notes.append((m.channel, t0, t, m.note, vel))
    for (ch, pitch), q in held.items():
        for t0, vel in q:
            notes.append((ch, t0, last, pitch, vel))
    if not notes:
        return score
    first = min(n[1] for n in notes)
    step = tpq // grid
    per_s = tpq * tempo / 60.0  # ticks per second

    def snap(t: float) -> int:
        return int(round((t - first) * per_s / step)) * step

    tracks: dict[int, object] = {}
    for ch, t0, t1, pitch, vel in sorted(notes, key=lambda n: (n[1], n[3])):
        if ch not in tracks:
            drum = ch == DRUM_CHANNEL
            prog = programs.get(ch, 0)
            tracks[ch] = symusic.Track(instrument_name(prog, drum), prog, drum)
        a = snap(t0)
        b = max(snap(t1), a + step)
        tracks[ch].notes.append(symusic.Note(a, b - a, int(pitch), int(vel)))
    for ch in sorted(tracks):
        tracks[ch].notes.sort()
        score.tracks.append(tracks[ch])
    return score


def listen_phrase(port, *, tempo: float = 120.0, silence_s: float = 1.5, max_seconds: float = 30.0,
                  on_first_note: Callable[[], None] | None = None, poll_s: float = 0.002,
                  stop: threading.Event | None = None):
    """Hear one phrase on a MIDI input: wait for the first note, then collect notes until every key
    is up and ``silence_s`` have passed without a note (or ``max_seconds`` since the first note).
    ``port``: an open mido input port or a port name. Returns ``phrase_to_score(...)``."""
    own = isinstance(port, str)
    if own:
        port = open_input(port)
    try:
        for _ in port.iter_pending():  # what was played while we were answering is not the call
            pass
        events: list = []
        down: set[tuple[int, int]] = set()
        first = last_note = None
        while True:
            if stop is not None and stop.is_set():
                break
            got = False
            for m in port.iter_pending():
                got = True
                now = time.perf_counter()
                if m.type in ("note_on", "note_off", "program_change"):
                    events.append((now, m))
                if m.type == "note_on" and m.velocity > 0:
                    down.add((m.channel, m.note))
                    if first is None:
                        first = now
                        if on_first_note:
                            on_first_note()
                    last_note = now
                elif m.type in ("note_on", "note_off"):
                    down.discard((m.channel, m.note))
                    last_note = now
            now = time.perf_counter()
            if first is not None:
                if (not down and now - last_note >= silence_s) or now - first >= max_seconds:
                    break
            if not got:
                time.sleep(poll_s)
        return phrase_to_score(events, tempo)
    finally:
        if own:
            port.close()


def open_input(name: str):
    """An open mido input port by name (exact, or a unique part of one)."""
    def opener(mido):
        return mido.open_input(_match_port(name, list(mido.get_input_names()), "input"))

    return _rtmidi_call(opener, "input")


def phrase_bars(score) -> int:
    """Whole bars the phrase spans (at least 1)."""
    if score.note_num() == 0:
        return 1
    ts = score.time_signatures[0] if len(score.time_signatures) else None
    bar = score.tpq * 4 * (ts.numerator / ts.denominator if ts else 1)
    end = max(n.end for tr in score.tracks for n in tr.notes)
    return max(1, math.ceil(end / bar - 1e-6))


def notes_of_score(score, sleep_per_note: float = 0.0) -> Iterator:
    """A score's notes as NoteEvents in onset order, like ``stream_notes`` yields them (to try the
    player without a model); ``sleep_per_note`` imitates the time a model takes per note."""
    from cadenza.engine.notes import NoteEvent

    s = score.to("second")
    rows = sorted((n.start, n.pitch, n.duration, n.velocity, tr.program, tr.is_drum)
                  for tr in s.tracks for n in tr.notes)
    for start, pitch, dur, vel, prog, drum in rows:
        if sleep_per_note:
            time.sleep(sleep_per_note)
        yield NoteEvent(int(pitch), float(start), float(dur), int(vel), int(prog), bool(drum), 0.0, 0.0, 1)


__all__ = ["AudioSink", "ChannelMap", "LivePlayer", "LiveStats", "MemorySink", "MidiPortSink", "NoMidi", "Sink",
           "listen_phrase", "measure_live_latency", "midi_ports", "notes_of_score",
           "open_input", "phrase_bars", "phrase_to_score"]
