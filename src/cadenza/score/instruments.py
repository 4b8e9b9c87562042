"""General MIDI instrument names: parse what people type into (program, is_drum)."""

from __future__ import annotations

import difflib
import re

from cadenza.errors import ScoreError

GM_PROGRAMS: list[str] = [
    # 0 pianos
    "Acoustic Grand Piano", "Bright Acoustic Piano", "Electric Grand Piano", "Honky-tonk Piano",
    "Electric Piano 1", "Electric Piano 2", "Harpsichord", "Clavinet",
    # 8 chromatic percussion
    "Celesta", "Glockenspiel", "Music Box", "Vibraphone", "Marimba", "Xylophone", "Tubular Bells", "Dulcimer",
    # 16 organs
    "Drawbar Organ", "Percussive Organ", "Rock Organ", "Church Organ", "Reed Organ", "Accordion",
    "Harmonica", "Tango Accordion",
    # 24 guitars
    "Acoustic Guitar (nylon)", "Acoustic Guitar (steel)", "Electric Guitar (jazz)", "Electric Guitar (clean)",
    "Electric Guitar (muted)", "Overdriven Guitar", "Distortion Guitar", "Guitar Harmonics",
    # 32 basses
    "Acoustic Bass", "Electric Bass (finger)", "Electric Bass (pick)", "Fretless Bass", "Slap Bass 1",
    "Slap Bass 2", "Synth Bass 1", "Synth Bass 2",
    # 40 strings
    "Violin", "Viola", "Cello", "Contrabass", "Tremolo Strings", "Pizzicato Strings", "Orchestral Harp", "Timpani",
    # 48 ensembles
    "String Ensemble 1", "String Ensemble 2", "Synth Strings 1", "Synth Strings 2", "Choir Aahs", "Voice Oohs",
    "Synth Voice", "Orchestra Hit",
    # 56 brass
    "Trumpet", "Trombone", "Tuba", "Muted Trumpet", "French Horn", "Brass Section", "Synth Brass 1", "Synth Brass 2",
    # 64 reeds
    "Soprano Sax", "Alto Sax", "Tenor Sax", "Baritone Sax", "Oboe", "English Horn", "Bassoon", "Clarinet",
    # 72 pipes
    "Piccolo", "Flute", "Recorder", "Pan Flute", "Blown Bottle", "Shakuhachi", "Whistle", "Ocarina",
    # 80 synth leads
    "Lead 1 (square)", "Lead 2 (sawtooth)", "Lead 3 (calliope)", "Lead 4 (chiff)", "Lead 5 (charang)",
    "Lead 6 (voice)", "Lead 7 (fifths)", "Lead 8 (bass + lead)",
    # 88 synth pads
    "Pad 1 (new age)", "Pad 2 (warm)", "Pad 3 (polysynth)", "Pad 4 (choir)", "Pad 5 (bowed)", "Pad 6 (metallic)",
    "Pad 7 (halo)", "Pad 8 (sweep)",
    # 96 synth effects
    "FX 1 (rain)", "FX 2 (soundtrack)", "FX 3 (crystal)", "FX 4 (atmosphere)", "FX 5 (brightness)",
    "FX 6 (goblins)", "FX 7 (echoes)", "FX 8 (sci-fi)",
    # 104 ethnic
    "Sitar", "Banjo", "Shamisen", "Koto", "Kalimba", "Bagpipe", "Fiddle", "Shanai",
    # 112 percussive
    "Tinkle Bell", "Agogo", "Steel Drums", "Woodblock", "Taiko Drum", "Melodic Tom", "Synth Drum", "Reverse Cymbal",
    # 120 sound effects
    "Guitar Fret Noise", "Breath Noise", "Seashore", "Bird Tweet", "Telephone Ring", "Helicopter", "Applause",
    "Gunshot",
]
assert len(GM_PROGRAMS) == 128

DRUMS = "drums"  # sentinel value in the alias table for the GM drum kit (channel 10)

# Everyday words people type; each maps to the GM program they most likely mean.
_ALIASES: dict[str, int | str] = {
    "piano": 0, "grand piano": 0, "acoustic piano": 0, "keys": 0, "keyboard": 0,
    "bright piano": 1, "electric piano": 4, "epiano": 4, "e piano": 4, "rhodes": 4, "wurlitzer": 5,
    "clav": 7, "vibes": 11, "bells": 14, "chimes": 14,
    "organ": 19, "hammond": 16, "rock organ": 18, "accordion": 21,
    "guitar": 24, "acoustic guitar": 24, "nylon guitar": 24, "classical guitar": 24, "steel guitar": 25,
    "jazz guitar": 26, "electric guitar": 27, "clean guitar": 27, "muted guitar": 28,
    "overdrive guitar": 29, "distorted guitar": 30, "distortion guitar": 30,
    "bass": 33, "electric bass": 33, "bass guitar": 33, "finger bass": 33, "pick bass": 34,
    "upright bass": 32, "double bass": 43, "slap bass": 36, "synth bass": 38,
    "contrabass": 43, "harp": 46, "strings": 48, "string": 48, "string ensemble": 48, "ensemble": 48,
    "orchestra": 48, "string section": 48, "synth strings": 50, "pizzicato": 45, "tremolo": 44,
    "voice": 52, "voices": 52, "choir": 52, "vocals": 52, "vocal": 52, "aahs": 52, "oohs": 53,
    "sax": 65, "saxophone": 65, "soprano saxophone": 64, "alto saxophone": 65, "tenor saxophone": 66,
    "baritone saxophone": 67, "bari sax": 67,
    "horn": 60, "horns": 61, "brass": 61, "synth brass": 62,
    "flute": 73, "pan pipes": 75, "panpipes": 75,
    "synth": 80, "synth lead": 80, "lead": 80, "square": 80, "square lead": 80, "saw": 81, "sawtooth": 81,
    "saw lead": 81, "pad": 88, "synth pad": 89, "warm pad": 89,
    "steel drum": 114, "steel pan": 114, "taiko": 116, "tom": 117,
    "drums": DRUMS, "drum": DRUMS, "drum kit": DRUMS, "drumkit": DRUMS, "drum set": DRUMS, "drumset": DRUMS,
    "kit": DRUMS, "percussion": DRUMS, "standard kit": DRUMS,
}


def _norm(name: str) -> str:
    """Lower case, punctuation to spaces: 'Acoustic Guitar (nylon)' -> 'acoustic guitar nylon'."""
    return " ".join(re.sub(r"[^a-z0-9+]+", " ", name.lower()).split())


_TABLE: dict[str, int | str] = {_norm(n): i for i, n in enumerate(GM_PROGRAMS)}
# 'String Ensemble 1' may also be typed without its number; keep the first of each family.
for _i, _n in enumerate(GM_PROGRAMS):
    _short = re.sub(r"\s*\d+$", "", _norm(_n))
    _TABLE.setdefault(_short, _i)
_TABLE.update({_norm(k): v for k, v in _ALIASES.items()})


def parse_instrument(value: str | int) -> tuple[int, bool]:
    """Turn a GM number (0-127), a GM name or an everyday alias into (program, is_drum).

    Drum kits come back as (0, True). Unknown names raise ScoreError with the closest names.
    """
    if isinstance(value, bool):  # bool is an int subclass; True is not a program
        raise ScoreError(f"instrument must be a name or a number 0-127, not {value!r}")
    if isinstance(value, int):
        if 0 <= value <= 127:
            return value, False
        raise ScoreError(f"instrument number {value} is outside the General MIDI range 0-127")
    if not isinstance(value, str):
        raise ScoreError(f"instrument must be a name or a number 0-127, not {value!r}")
    text = value.strip()
    if not text:
        raise ScoreError("empty instrument name")
    if re.fullmatch(r"[+-]?\d+", text):
        return parse_instrument(int(text))
    found = _TABLE.get(_norm(text))
    if found is None:
        close = difflib.get_close_matches(_norm(text), list(_TABLE), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else (
            "; use a General MIDI name such as 'piano', 'violin' or 'drums', or a number 0-127")
        raise ScoreError(f"unknown instrument {text!r}{hint}")
    if found == DRUMS:
        return 0, True
    return int(found), False


def parse_instruments(text: str) -> list[tuple[int, bool]]:
    """Parse a comma-separated list such as 'piano, acoustic bass, drums'."""
    if not isinstance(text, str) or not text.strip():
        raise ScoreError("empty instrument list")
    result = []
    for i, part in enumerate(text.split(",")):
        if not part.strip():
            raise ScoreError(f"empty instrument name at item {i + 1} in {text!r}")
        result.append(parse_instrument(part))
    return result


def instrument_name(program: int, is_drum: bool = False) -> str:
    """GM name of a program ('Drums' for the drum kit)."""
    if is_drum:
        return "Drums"
    if not isinstance(program, int) or not 0 <= program <= 127:
        raise ScoreError(f"instrument number {program!r} is outside the General MIDI range 0-127")
    return GM_PROGRAMS[program]
