"""Pictures: a piano roll of a score and a mel spectrogram of audio, as PNG files.

Both are drawn with matplotlib's object-oriented API on an Agg canvas (no pyplot, so no window,
no global figure list to leak). The time axis is seconds in both, so a score's piano roll lines
up with the spectrogram of its audio; the piano roll adds bar lines and bar numbers from the
score's time signatures, placed with its tempo map.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import symusic

from cadenza.errors import CadenzaError
from cadenza.files import atomic_output, check_output
from cadenza.score import instrument_name

PICTURE_SUFFIXES = (".png",)
DPI = 100

# Short General MIDI percussion names (keys 35-81) for the drum lane.
_DRUM_NAMES = {
    35: "Kick 2", 36: "Kick", 37: "Side stick", 38: "Snare", 39: "Clap", 40: "Snare 2", 41: "Low floor tom",
    42: "Hi-hat closed", 43: "High floor tom", 44: "Hi-hat pedal", 45: "Low tom", 46: "Hi-hat open",
    47: "Low-mid tom", 48: "Hi-mid tom", 49: "Crash", 50: "High tom", 51: "Ride", 52: "China", 53: "Ride bell",
    54: "Tambourine", 55: "Splash", 56: "Cowbell", 57: "Crash 2", 58: "Vibraslap", 59: "Ride 2",
    60: "Hi bongo", 61: "Low bongo", 62: "Mute hi conga", 63: "Open hi conga", 64: "Low conga",
    65: "High timbale", 66: "Low timbale", 67: "High agogo", 68: "Low agogo", 69: "Cabasa", 70: "Maracas",
    71: "Short whistle", 72: "Long whistle", 73: "Short guiro", 74: "Long guiro", 75: "Claves",
    76: "Hi wood block", 77: "Low wood block", 78: "Mute cuica", 79: "Open cuica", 80: "Mute triangle",
    81: "Open triangle",
}
_NOTE_NAMES = ("C", "C♯", "D", "D♯", "E", "F", "F♯", "G", "G♯", "A", "A♯", "B")


def _figure(width_in: float, height_in: float):
    """A matplotlib Figure on an Agg canvas: nothing global, freed when the last reference goes."""
    # Figure + FigureCanvasAgg rather than pyplot: never a window, whatever backend the user set.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, facecolor="white")
    fig.clear()  # drop the artists now rather than at the next garbage collection
    return path


# ------------------------------------------------------------------------------------- piano roll

def piano_roll_png(score: symusic.Score, path: str | os.PathLike, *, title: str | None = None,
                   name: str | None = None) -> Path:
    """Draw ``score`` as a piano roll into ``path`` (.png); return the path.

    One colour per track (listed by instrument in the legend), note opacity by velocity, bar
    lines with bar numbers along the top, seconds along the bottom, C of each octave named on
    the pitch axis; drums as x marks in a lane of their own, one row per drum. ``title`` goes
    above the picture (default: the file stem); ``name`` names the score in error messages.
    """
    path = check_output(path, PICTURE_SUFFIXES, "picture")
    fig = piano_roll_figure(score, title=path.stem if title is None else title, name=name or str(path))
    return _save(fig, path)


def track_labels(score: symusic.Score) -> list[str]:
    """Legend labels of the tracks with notes: the GM instrument, plus the track name if it adds to it."""
    labels = []
    for t in score.tracks:
        if not len(t.notes):
            continue
        label = instrument_name(t.program, t.is_drum)
        own = "".join(c for c in t.name if c.isprintable()).strip()  # a file's name may hold control bytes
        if own and own.lower() not in label.lower() and label.lower() not in own.lower():
            label = f"{label} ({own})"
        elif own and label.lower() in own.lower() and len(own) > len(label):
            label = own  # "Piano left hand" says more than "Acoustic Grand Piano"
        labels.append(label)
    # The same label twice (two unnamed pianos) would be ambiguous in the legend: number them.
    for label in set(labels):
        idx = [i for i, x in enumerate(labels) if x == label]
        if len(idx) > 1:
            for k, i in enumerate(idx, 1):
                labels[i] = f"{label} {k}"
    return labels


def _colors(n: int) -> list:
    import matplotlib

    # tab10 is made to tell apart; past ten tracks tab20 adds the lighter shades.
    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _tick_seconds(score: symusic.Score, ticks: np.ndarray) -> np.ndarray:
    """Seconds at each tick, following the score's tempo changes (120 bpm before the first)."""
    ticks = np.asarray(ticks, dtype=np.float64)
    tpq = score.ticks_per_quarter
    changes = sorted((int(t.time), float(t.mspq)) for t in score.tempos)
    if not changes or changes[0][0] > 0:
        changes.insert(0, (0, 500000.0))
    starts = np.array([c[0] for c in changes], dtype=np.float64)
    spt = np.array([c[1] for c in changes]) / 1e6 / tpq  # seconds per tick in each tempo segment
    at = np.concatenate([[0.0], np.cumsum(np.diff(starts) * spt[:-1])])  # seconds at each change
    seg = np.clip(np.searchsorted(starts, ticks, side="right") - 1, 0, len(starts) - 1)
    return at[seg] + (ticks - starts[seg]) * spt[seg]


def bar_ticks(score: symusic.Score, end: int) -> tuple[np.ndarray, np.ndarray]:
    """Ticks of the bar lines and of the beats up to ``end``, from the time signatures (4/4 if none).

    Bar lines: the start of every bar that starts before ``end``, then the end of the last one
    (so the last bar is drawn whole). A time signature starts a new bar where it stands, as in
    a MIDI file.
    """
    tpq = score.ticks_per_quarter
    sigs = sorted((int(ts.time), int(ts.numerator), int(ts.denominator)) for ts in score.time_signatures)
    if not sigs or sigs[0][0] > 0:
        sigs.insert(0, (0, 4, 4))
    bars, beats = [], []
    for i, (start, num, den) in enumerate(sigs):
        stop = sigs[i + 1][0] if i + 1 < len(sigs) else max(end, start + 1)
        beat = 4 * tpq / max(den, 1)
        bar = max(1, round(num * beat))
        t = start
        while t < stop:
            bars.append(t)
            beats.extend(t + k * beat for k in range(num) if t + k * beat < stop)
            t += bar
    bars.append(t)  # the closing bar line
    return np.array(bars, dtype=np.int64), np.array(beats, dtype=np.float64)


def _note_name(pitch: int) -> str:
    return f"{_NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"


def piano_roll_figure(score: symusic.Score, *, title: str | None = None, name: str = "score"):
    """The piano-roll Figure (Agg canvas) that ``piano_roll_png`` saves; exposed for tests."""
    from matplotlib.collections import PolyCollection
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import FixedLocator, FuncFormatter

    if not isinstance(score, symusic.Score):
        raise CadenzaError(f"cannot draw {name}: expected a symusic Score, not {type(score).__name__}")
    if not str(score.ttype).endswith("Tick"):
        score = score.to("tick")
    tracks = [t for t in score.tracks if len(t.notes)]
    if not tracks:
        raise CadenzaError(f"{name} has no notes to draw")
    labels = track_labels(score)
    colors = _colors(len(tracks))
    arrays = [t.notes.numpy() for t in tracks]

    end_tick = int(max(int((a["time"] + a["duration"]).max()) for a in arrays))
    bars, beats = bar_ticks(score, end_tick)
    bar_s = _tick_seconds(score, bars)
    end_s = float(bar_s[-1])  # the end of the last bar
    pitched = [i for i, t in enumerate(tracks) if not t.is_drum]
    drummed = [i for i, t in enumerate(tracks) if t.is_drum]
    drum_keys = sorted({int(p) for i in drummed for p in arrays[i]["pitch"]})
    if pitched:
        lo = int(min(arrays[i]["pitch"].min() for i in pitched))
        hi = int(max(arrays[i]["pitch"].max() for i in pitched))
        lo, hi = lo - 2, hi + 2
        if hi - lo < 14:  # at least a bit more than an octave, so a C is always on the axis
            mid = (lo + hi) // 2
            lo, hi = mid - 7, mid + 7

    # Width: 6 in plus 8 px a second (a 4/4 bar at 120 bpm: 16 px), kept within 8-24 in (800 to
    # 2400 px): 2 bars stay readable, 4 minutes fit a wide screen. Height: by the pitch range,
    # plus a lane of 0.22 in per drum.
    width = float(np.clip(6 + end_s * 0.08, 8, 24))
    roll_h = float(np.clip(1.5 + (hi - lo) * 0.055, 3.0, 6.5)) if pitched else 0.0
    drum_h = float(np.clip(0.6 + 0.22 * len(drum_keys), 1.2, 4.0)) if drummed else 0.0
    fig = _figure(width, roll_h + drum_h + 1.2)
    heights = [h for h in (roll_h, drum_h) if h]
    axes = fig.subplots(len(heights), 1, sharex=True, squeeze=False,
                        gridspec_kw={"height_ratios": heights})[:, 0]
    roll_ax = axes[0] if pitched else None
    drum_ax = axes[-1] if drummed else None

    if roll_ax is not None:
        # Black-key rows lightly shaded, like a piano roll's keyboard.
        for p in range(lo, hi + 1):
            if p % 12 in (1, 3, 6, 8, 10):
                roll_ax.axhspan(p - 0.5, p + 0.5, color="#f0f0f0", lw=0, zorder=0)
        for i in pitched:
            a = arrays[i]
            x0 = _tick_seconds(score, a["time"])
            x1 = _tick_seconds(score, a["time"].astype(np.int64) + a["duration"])
            y = a["pitch"].astype(np.float64)
            verts = np.stack([np.stack([x0, y - 0.4], 1), np.stack([x1, y - 0.4], 1),
                              np.stack([x1, y + 0.4], 1), np.stack([x0, y + 0.4], 1)], 1)
            face = np.tile(colors[i], (len(y), 1))
            face[:, 3] = 0.35 + 0.65 * np.clip(a["velocity"].astype(np.float64), 1, 127) / 127
            roll_ax.add_collection(PolyCollection(verts, facecolors=face, edgecolors=[colors[i]],
                                                  linewidths=0.4, zorder=3, label=labels[i]))
        roll_ax.set_ylim(lo - 0.5, hi + 0.5)
        cs = [p for p in range(lo, hi + 1) if p % 12 == 0]
        roll_ax.yaxis.set_major_locator(FixedLocator(cs))
        roll_ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _note_name(int(round(v)))))
        if hi - lo <= 30:  # a narrow range: name E and G too, smaller
            roll_ax.yaxis.set_minor_locator(FixedLocator([p for p in range(lo, hi + 1) if p % 12 in (4, 7)]))
            roll_ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: _note_name(int(round(v)))))
            roll_ax.tick_params(axis="y", which="minor", labelsize=7, labelcolor="#777777")
        for c in cs:
            roll_ax.axhline(c - 0.5, color="#c8c8c8", lw=0.6, zorder=1)
        roll_ax.set_ylabel("pitch")

    if drum_ax is not None:
        row = {k: r for r, k in enumerate(drum_keys)}
        for i in drummed:
            a = arrays[i]
            x = _tick_seconds(score, a["time"])
            y = np.array([row[int(p)] for p in a["pitch"]], dtype=np.float64)
            rgba = np.tile(colors[i], (len(y), 1))
            rgba[:, 3] = 0.35 + 0.65 * np.clip(a["velocity"].astype(np.float64), 1, 127) / 127
            drum_ax.scatter(x, y, marker="x", s=22, c=rgba, linewidths=1.2, zorder=3, label=labels[i])
        drum_ax.set_ylim(-0.7, len(drum_keys) - 0.3)
        drum_ax.set_yticks(range(len(drum_keys)), [_DRUM_NAMES.get(k, f"Drum {k}") for k in drum_keys], fontsize=8)
        for r in range(len(drum_keys)):
            drum_ax.axhline(r, color="#ececec", lw=0.6, zorder=1)
        drum_ax.set_ylabel("drums")

    # Bar lines on every lane; beats too when there are few bars. Too many bar lines would grey
    # the picture out, so past 400 bars only every 4th is drawn.
    step_lines = 1 if len(bars) <= 400 else 4
    n_bars = len(bars) - 1
    for ax in axes:
        ax.set_xlim(-max(end_s * 0.006, 0.03), end_s * 1.006)  # room for the x of a drum hit at 0
        if n_bars <= 16:
            ax.vlines(_tick_seconds(score, beats), 0, 1, transform=ax.get_xaxis_transform(),
                      colors="#e4e4e4", lw=0.5, zorder=1)
        ax.vlines(bar_s[::step_lines], 0, 1, transform=ax.get_xaxis_transform(), colors="#9a9a9a", lw=0.7, zorder=2)
        ax.grid(False)
    # Bar numbers along the top, at most about one label per 60 px.
    top = axes[0].secondary_xaxis("top")
    every = 1
    max_labels = max(4, int(width * DPI / 60))
    while n_bars / every > max_labels:
        every *= 2
    shown = list(range(0, n_bars, every))
    top.set_xticks(bar_s[shown], [str(k + 1) for k in shown], fontsize=8)
    top.set_xlabel("bar", fontsize=9)
    last = axes[-1]
    last.set_xlabel("time (m:ss)" if end_s >= 60 else "time (s)")
    if end_s >= 60:
        last.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{int(v // 60)}:{int(v % 60):02d}"))

    handles = [Patch(facecolor=colors[i], edgecolor=colors[i], label=labels[i]) if i in pitched else
               Line2D([], [], color=colors[i], marker="x", lw=0, markersize=7, markeredgewidth=1.5, label=labels[i])
               for i in range(len(tracks))]
    fig.legend(handles=handles, loc="outside right upper", fontsize=9, frameon=False)
    if title:
        fig.suptitle(title, fontsize=12)
    return fig


# ------------------------------------------------------------------------------------ spectrogram

N_FFT = 2048
HOP = 512
N_MELS = 128
TOP_DB = 80.0


def _hz_to_mel(hz):
    """Slaney's mel scale (Auditory Toolbox): linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(hz >= min_log_hz, min_log_mel + np.log(np.maximum(hz, 1e-9) / min_log_hz) / logstep, hz / f_sp)


def _mel_to_hz(mel):
    mel = np.asarray(mel, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), mel * f_sp)


def mel_filterbank(sample_rate: int, n_fft: int = N_FFT, n_mels: int = N_MELS) -> tuple[np.ndarray, np.ndarray]:
    """Triangular mel filters (n_mels, n_fft // 2 + 1) with Slaney's area normalisation, and their centres in Hz.

    Written out here rather than taken from librosa: it is twenty lines, and librosa would bring
    numba, scipy and audioread along for this one matrix. It matches librosa.filters.mel with its
    defaults (htk=False, norm="slaney", fmin=0, fmax=sr/2).
    """
    fft_hz = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sample_rate / 2), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (fft_hz[None, :] - lower) / (centre - lower)
    falling = (upper - fft_hz[None, :]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]  # equal area: a wide band is not louder
    return weights.astype(np.float32), edges[1:-1]


def _mono(audio, name: str) -> np.ndarray:
    a = np.asarray(audio)
    if a.ndim == 2:
        a = a.mean(axis=1) if a.shape[1] else np.zeros(0, dtype=np.float32)
    elif a.ndim != 1:
        raise CadenzaError(f"cannot draw {name}: audio must be (samples,) or (samples, channels), not shape {a.shape}")
    if a.size == 0:
        raise CadenzaError(f"cannot draw {name}: the audio is empty")
    if not np.issubdtype(a.dtype, np.number):
        raise CadenzaError(f"cannot draw {name}: audio samples must be numbers, not {a.dtype}")
    if np.issubdtype(a.dtype, np.integer):  # int16/int32 PCM: to -1..1
        a = a / float(np.iinfo(a.dtype).max)
    return np.nan_to_num(a.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)


def mel_spectrogram(audio: np.ndarray, sample_rate: int, *, n_fft: int = N_FFT, hop: int = HOP,
                    n_mels: int = N_MELS, name: str = "audio") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mel power spectrogram in dB: (db (n_mels, frames), band centres in Hz, frame times in s).

    Frames are centred on their times (the signal is zero-padded by n_fft/2 at both ends) and
    Hann windowed. dB are relative to the loudest cell (0 dB) and floored at -80 dB; silence is
    -80 dB everywhere.
    """
    if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise CadenzaError(f"cannot draw {name}: sample rate must be a positive whole number, not {sample_rate!r}")
    x = _mono(audio, name)
    x = np.pad(x, (n_fft // 2, n_fft // 2))
    if len(x) < n_fft:
        x = np.pad(x, (0, n_fft - len(x)))
    frames = 1 + (len(x) - n_fft) // hop
    window = np.hanning(n_fft + 1)[:-1].astype(np.float32)  # periodic Hann
    fb, centres = mel_filterbank(sample_rate, n_fft, n_mels)
    mel = np.empty((n_mels, frames), dtype=np.float32)
    view = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop]
    chunk = 1024  # frames at a time: a 4-minute song is 20k frames, 160 MB of spectrum at once
    for s in range(0, frames, chunk):
        spec = np.fft.rfft(view[s:s + chunk] * window, axis=1)
        power = spec.real ** 2 + spec.imag ** 2
        mel[:, s:s + chunk] = (power.astype(np.float32) @ fb.T).T
    peak = float(mel.max())
    if peak <= 1e-10:
        db = np.full_like(mel, -TOP_DB)
    else:
        db = 10 * np.log10(np.maximum(mel, peak * 1e-10) / peak)
        db = np.maximum(db, -TOP_DB)
    times = np.arange(frames) * hop / sample_rate
    return db, centres, times


def spectrogram_figure(audio: np.ndarray, sample_rate: int, *, title: str | None = None, name: str = "audio",
                       marks: list[tuple[float, str]] | None = None):
    """The spectrogram Figure (Agg canvas) that ``spectrogram_png`` saves; exposed for tests.

    ``marks``: (seconds, label) pairs drawn as labelled vertical lines (where a continuation begins)."""
    from matplotlib.ticker import FixedLocator, NullLocator

    db, centres, times = mel_spectrogram(audio, sample_rate, name=name)
    seconds = len(np.asarray(audio)) / sample_rate
    width = float(np.clip(6 + seconds * 0.06, 8, 20))
    fig = _figure(width, 4.8)
    ax = fig.subplots()
    # Bands are drawn evenly spaced (that is the mel scale); Hz ticks are placed on it by
    # interpolating between band centres.
    half_hop = HOP / sample_rate / 2
    img = ax.imshow(db, origin="lower", aspect="auto", cmap="magma", vmin=-TOP_DB, vmax=0,
                    extent=(times[0] - half_hop, max(times[-1] + half_hop, seconds), -0.5, len(centres) - 0.5),
                    interpolation="nearest" if db.shape[1] < width * DPI else "antialiased")
    ax.set_xlim(0, max(seconds, times[-1]))
    mels = _hz_to_mel(centres)
    ticks_hz, ticks_at = [], []
    # From the top down, skipping ticks that would crowd the one above: below 1 kHz the mel
    # scale is linear, so 50, 100 and 200 Hz would sit on top of each other.
    for f in (16000, 8000, 4000, 2000, 1000, 500, 200, 100, 50):
        at = float(np.interp(_hz_to_mel(f), mels, np.arange(len(centres))))
        if centres[0] <= f <= centres[-1] and (not ticks_at or ticks_at[-1] - at >= 0.05 * len(centres)):
            ticks_hz.append(f)
            ticks_at.append(at)
    ax.yaxis.set_major_locator(FixedLocator(ticks_at))
    ax.set_yticklabels([f"{f // 1000}k" if f >= 1000 else str(f) for f in ticks_hz])
    ax.yaxis.set_minor_locator(NullLocator())
    ax.set_ylabel("frequency (Hz, mel scale)")
    ax.set_xlabel("time (s)")
    bar = fig.colorbar(img, ax=ax, pad=0.01, fraction=0.04)
    bar.set_label("dB (0 = loudest)")
    for at, label in marks or ():
        ax.axvline(at, color="white", linewidth=1.5, linestyle="--")
        ax.text(at, len(centres) - 1.5, f" {label}", color="white", fontsize=10, va="top", ha="left")
    if title:
        ax.set_title(title, fontsize=12)
    return fig


def spectrogram_png(audio: np.ndarray, sample_rate: int, path: str | os.PathLike, *, title: str | None = None,
                    name: str | None = None, marks: list[tuple[float, str]] | None = None) -> Path:
    """Draw the mel spectrogram of ``audio`` (float samples, (N,) or (N, channels)) into ``path`` (.png)."""
    path = check_output(path, PICTURE_SUFFIXES, "picture")
    fig = spectrogram_figure(audio, sample_rate, title=path.stem if title is None else title, name=name or str(path),
                             marks=marks)
    return _save(fig, path)
