"""Hearing and seeing the music: audio (SoundFont or built-in synth), piano roll, sheet music,
spectrogram. ``cadenza render`` and the studio call these same functions.

Submodules load their libraries (FluidSynth, matplotlib, verovio) only when used.
"""

from cadenza.render.audio import (AUDIO_SUFFIXES, RENDERERS, Audio, find_soundfont, normalize_peak, read_audio,
                                  render_audio, write_audio)

__all__ = ["AUDIO_SUFFIXES", "RENDERERS", "Audio", "find_soundfont", "normalize_peak", "read_audio",
           "render_audio", "write_audio"]
