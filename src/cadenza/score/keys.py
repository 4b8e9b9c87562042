"""Keys and scales, in one place: names typed by people ("G", "D minor", "F#m", "Bb major") as key
signatures, key names, the Krumhansl-Schmuckler key of a piece, and the pitch classes of a scale."""

from __future__ import annotations

import re

import numpy as np
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


# Krumhansl-Kessler key profiles (major, minor), from C
_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def estimate_key(score: symusic.Score) -> tuple[int, str] | None:
    """(tonic pitch class, 'major'|'minor') by the Krumhansl-Schmuckler correlation of the piece's
    duration-weighted pitch classes with the 24 rotated key profiles; None for a piece with no pitches."""
    from cadenza.score.harmony import pitched_notes

    hist = np.zeros(12)
    for a in pitched_notes(score):
        np.add.at(hist, a["pitch"] % 12, np.maximum(a["duration"], 1))
    if hist.sum() <= 0:
        return None
    best, best_r = None, -2.0
    for mode, prof in (("major", _MAJOR), ("minor", _MINOR)):
        for tonic in range(12):
            r = np.corrcoef(hist, np.roll(prof, tonic))[0, 1]
            if r > best_r + 1e-12:
                best, best_r = (tonic, mode), r
    return best


def scale_of(tonic: int, mode: str) -> frozenset[int]:
    """The pitch classes of the key's scale (natural minor for 'minor')."""
    steps = (0, 2, 4, 5, 7, 9, 11) if mode == "major" else (0, 2, 3, 5, 7, 8, 10)
    return frozenset((tonic + s) % 12 for s in steps)
