"""Playing audio on the machine's sound device (``cadenza play``, ``generate --play``)."""

from __future__ import annotations

import sys

from cadenza.errors import CadenzaError


class NoAudioDevice(CadenzaError):
    """There is no sound output here (no PortAudio, or no output device)."""


def _sounddevice():
    try:
        import sounddevice
    except (ImportError, OSError) as e:  # OSError: the PortAudio library is missing
        raise NoAudioDevice(f"no audio output: {str(e).splitlines()[0] or 'PortAudio is not installed'} "
                            "(Debian: apt-get install libportaudio2)") from None
    return sounddevice


def output_device() -> str:
    """The default output device's name; NoAudioDevice where there is none."""
    sd = _sounddevice()
    try:
        dev = sd.query_devices(kind="output")
    except Exception as e:  # PortAudioError, ValueError: no default output device
        raise NoAudioDevice(f"no audio output device found ({str(e).splitlines()[0] or type(e).__name__})") from None
    if not dev or dev.get("max_output_channels", 0) < 1:
        raise NoAudioDevice("no audio output device found")
    return str(dev["name"])


def play(samples, sample_rate: int, *, label: str = "") -> None:
    """Play (N, 2) float samples to the default output device, waiting until they end (Ctrl-C stops)."""
    name = output_device()
    sd = _sounddevice()
    seconds = len(samples) / sample_rate
    print(f"playing {label + ' ' if label else ''}({seconds:.1f} s) on {name}; Ctrl-C stops", file=sys.stderr)
    try:
        sd.play(samples, sample_rate)
        sd.wait()
    except KeyboardInterrupt:
        sd.stop()
        raise
    except Exception as e:
        raise NoAudioDevice(f"cannot play on {name}: {str(e).splitlines()[0]}") from None
