"""One score (or recording), several outputs by suffix: the CLI's ``--out`` for every command.

    .mid .midi .musicxml .xml .mxl .abc   the score itself
    .wav .flac .ogg .mp3                  audio (rendered once, shared by every audio output)
    .png                                  piano roll of a score; mel spectrogram of audio
                                          (``spectrogram=True``: of the score's rendered audio)
    .svg .pdf                             engraved sheet music (SVG: one file per page)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import symusic

from cadenza.errors import CadenzaError
from cadenza.render.audio import AUDIO_SUFFIXES, Audio, render_audio, write_audio
from cadenza.files import check_output
from cadenza.score.io import SUFFIXES as SCORE_SUFFIXES

PICTURE_SUFFIXES = (".png",)
NOTATION_SUFFIXES = (".svg", ".pdf")
OUTPUT_SUFFIXES = SCORE_SUFFIXES + AUDIO_SUFFIXES + PICTURE_SUFFIXES + NOTATION_SUFFIXES


@dataclass
class RenderOptions:
    soundfont: str | os.PathLike | None = None
    sample_rate: int = 44100
    renderer: str = "auto"
    spectrogram: bool = False  # .png of a score: its audio's spectrogram instead of a piano roll


@dataclass
class Outputs:
    written: list[Path] = field(default_factory=list)
    audio: Audio | None = None  # the rendered audio, when an output (or playback) needed it


def check_outputs(paths, allowed: tuple[str, ...] = OUTPUT_SUFFIXES) -> list[Path]:
    """Every output path checked before any work: known suffix, existing writable folder."""
    out = []
    for s in paths:
        p = check_output(s, allowed, "output")
        folder = p.parent if str(p.parent) else Path(".")
        if not os.access(folder, os.W_OK):
            raise CadenzaError(f"cannot write {p}: folder {folder} is not writable")
        out.append(p)
    return out


def needs_audio(paths, opts: RenderOptions) -> bool:
    return any(Path(p).suffix.lower() in AUDIO_SUFFIXES for p in paths) or (
        opts.spectrogram and any(Path(p).suffix.lower() in PICTURE_SUFFIXES for p in paths))


def write_outputs(score: symusic.Score, paths, opts: RenderOptions | None = None, *, name: str = "the score",
                  audio: Audio | None = None, play: bool = False, progress=None) -> Outputs:
    """Write ``score`` to every path by its suffix; returns what was written (and the audio)."""
    from cadenza.score import write_score

    opts = opts or RenderOptions()
    res = Outputs(audio=audio)

    def get_audio() -> Audio:
        if res.audio is None:
            res.audio = render_audio(score, soundfont=opts.soundfont, sample_rate=opts.sample_rate,
                                     renderer=opts.renderer, name=name, progress=progress)
        return res.audio

    for p in map(Path, paths):
        suffix = p.suffix.lower()
        if suffix in SCORE_SUFFIXES:
            res.written.append(write_score(score, p))
        elif suffix in AUDIO_SUFFIXES:
            res.written.append(write_audio(p, get_audio()))
        elif suffix in PICTURE_SUFFIXES:
            from cadenza.render.pictures import piano_roll_png, spectrogram_png

            if opts.spectrogram:
                a = get_audio()
                res.written.append(spectrogram_png(a.samples, a.sample_rate, p, title=p.stem))
            else:
                res.written.append(piano_roll_png(score, p, title=p.stem))
        elif suffix in NOTATION_SUFFIXES:
            from cadenza.render.notation import engrave

            res.written.extend(engrave(score, p, title=p.stem))
        else:  # check_outputs ran first; this is a programming error
            raise CadenzaError(f"cannot write {p}: unsupported output type {suffix}")
    if play:
        get_audio()
    return res


def write_audio_outputs(samples, sample_rate: int, paths) -> list[Path]:
    """Outputs of a recording: audio files (converted, levels kept) and spectrogram PNGs."""
    written = []
    for p in map(Path, paths):
        suffix = p.suffix.lower()
        if suffix in AUDIO_SUFFIXES:
            written.append(write_audio(p, samples, sample_rate))
        elif suffix in PICTURE_SUFFIXES:
            from cadenza.render.pictures import spectrogram_png

            written.append(spectrogram_png(samples, sample_rate, p, title=p.stem))
        else:
            raise CadenzaError(f"cannot write {p} from a recording: an audio input can become "
                               f"{', '.join(AUDIO_SUFFIXES + PICTURE_SUFFIXES)} (a spectrogram), not {suffix}")
    return written
