"""Key names typed by people ("G", "D minor", "F#m", "Bb major") as key signatures."""

from __future__ import annotations

import re

import symusic

from cadenza.errors import ScoreError, shown

_KEY_RE = re.compile(r"^\s*([A-Ga-g])\s*([#b]?)\s*(m|min|minor|maj|major)?\s*$")


def parse_key(text: str) -> tuple[str, str, int]:
    """'D minor' -> ('D', 'minor', sharps) where sharps is the signature (-7..7, flats negative)."""
    import music21

    m = _KEY_RE.match(text or "")
    if not m:
        raise ScoreError(f"unknown key {shown(text)} (use e.g. G, D minor, F#m, Bb major)")
    tonic = m[1].upper() + m[2]
    mode = "minor" if (m[3] or "").startswith("m") and m[3] not in ("maj", "major") else "major"
    try:
        sharps = music21.key.Key(tonic.replace("b", "-") if len(tonic) > 1 else tonic, mode).sharps
    except Exception:
        raise ScoreError(f"unknown key {shown(text)} (use e.g. G, D minor, F#m, Bb major)") from None
    if abs(sharps) > 7:
        raise ScoreError(f"key {shown(text)} needs {abs(sharps)} {'sharps' if sharps > 0 else 'flats'}; "
                         "use its enharmonic twin")
    return tonic, mode, sharps


def key_pitch_class(text: str) -> tuple[int, str]:
    """'D minor' -> (2, 'minor'): the tonic as a pitch class, as the models' Key tokens have it."""
    from cadenza.score.chords import _pitch_class

    tonic, mode, _ = parse_key(text)
    return _pitch_class(tonic), mode


def key_signature(text: str, time: int = 0) -> symusic.KeySignature:
    _, mode, sharps = parse_key(text)
    return symusic.KeySignature(time, sharps, 1 if mode == "minor" else 0)


def transpose_sharps(sharps: int, semitones: int) -> int:
    """The signature after transposing by ``semitones`` (the simpler spelling of the new key)."""
    s = (sharps + 7 * semitones) % 12  # a semitone up adds 7 sharps, modulo the circle
    return s - 12 if s > 6 else s


_MAJOR_NAMES = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_MINOR_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B")


def key_name(key: tuple[int, str]) -> str:
    """(tonic pitch class, mode) -> its usual name: (7, 'major') -> 'G major', (1, 'minor') -> 'C# minor'."""
    pc, mode = key
    return f"{(_MAJOR_NAMES if mode == 'major' else _MINOR_NAMES)[int(pc) % 12]} {mode}"
