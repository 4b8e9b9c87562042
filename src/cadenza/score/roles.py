"""What each General MIDI instrument is in a band: its family, its range, how many notes it sounds at once.

The engine keeps every instrument in its role with this table (``cadenza.tokenizers.remi``: a
writing model may not put a note outside its instrument's range, nor more notes at one onset than
the instrument plays), the benchmarks group parts by family (``bench/parts.py``), and continuing a
prompt assigns new notes to the prompt's tracks by it.

Ranges are the instruments' written (sounding) ranges in MIDI numbers, as orchestration texts give
them (Adler, *The Study of Orchestration*; the basses' four strings E1-G4 with a few frets more);
synthesizers and pads get a wide musical middle. ``max_at_once`` is how many notes one player
sounds at one onset: one for a bass line, a wind or brass instrument, a solo synth lead; two for a
solo bowed string (double stops); a guitar's six strings; a pianist's ten fingers.

>>> family_of(33), range_of(33), max_at_once(33)
('bass', (28, 67), 1)
>>> family_of(0, is_drum=True)
'drums'
"""

from __future__ import annotations

# family by GM program block of eight (0-7 pianos, 8-15 chromatic percussion, ...); exceptions below
_FAMILY_BY_BLOCK = ("piano", "chromatic", "organ", "guitar", "bass", "strings", "strings", "brass",
                    "lead", "lead", "lead", "pad", "fx", "ethnic", "percussive", "fx")
_FAMILY_EXCEPTIONS = {22: "lead",  # harmonica
                      47: "percussive",  # timpani
                      52: "voice", 53: "voice", 54: "voice", 55: "fx",  # choir, oohs, synth voice, orchestra hit
                      64: "lead", 65: "lead", 66: "lead", 67: "lead", 68: "lead", 69: "lead", 70: "lead",
                      71: "lead"}  # the reeds play lines
FAMILIES = ("piano", "chromatic", "organ", "guitar", "bass", "strings", "voice", "brass", "lead", "pad",
            "fx", "ethnic", "percussive", "drums")

# (low, high) MIDI pitch per program where it differs from its family's default
_FAMILY_RANGE = {"piano": (21, 108), "chromatic": (48, 96), "organ": (36, 96), "guitar": (40, 88),
                 "bass": (28, 67), "strings": (28, 103), "voice": (40, 84), "brass": (34, 84),
                 "lead": (48, 96), "pad": (36, 96), "fx": (36, 96), "ethnic": (48, 84),
                 "percussive": (36, 84), "drums": (0, 127)}
_RANGE = {
    8: (60, 108), 9: (79, 108), 10: (60, 96), 11: (53, 89), 12: (45, 96), 13: (65, 108), 14: (60, 77),
    15: (48, 84), 21: (41, 89), 22: (60, 96),
    38: (24, 72), 39: (24, 72),  # synth basses reach lower and higher
    40: (55, 103), 41: (48, 91), 42: (36, 76), 43: (28, 67), 46: (23, 103), 47: (40, 57),
    56: (52, 84), 57: (40, 72), 58: (26, 58), 59: (52, 82), 60: (34, 77), 61: (34, 84), 62: (36, 96),
    63: (36, 96),
    64: (56, 88), 65: (49, 81), 66: (44, 76), 67: (36, 69), 68: (58, 91), 69: (52, 84), 70: (34, 75),
    71: (50, 94), 72: (74, 108), 73: (60, 96), 74: (60, 98), 75: (60, 96), 76: (60, 84), 77: (55, 84),
    78: (60, 96), 79: (60, 84), 87: (28, 96),
    104: (48, 77), 105: (48, 84), 106: (50, 79), 107: (55, 90), 108: (60, 84), 109: (36, 77),
    110: (55, 96), 111: (60, 84),
}

# notes one player sounds at one onset; by family, then by program
_FAMILY_AT_ONCE = {"piano": 10, "chromatic": 4, "organ": 8, "guitar": 6, "bass": 1, "strings": 6,
                   "voice": 6, "brass": 6, "lead": 1, "pad": 6, "fx": 4, "ethnic": 2, "percussive": 2,
                   "drums": 6}
_AT_ONCE = {22: 2,  # harmonica: a line, sometimes a third
            40: 2, 41: 2, 42: 2, 43: 1,  # solo violin, viola, cello (double stops); contrabass: a line
            46: 6,  # harp
            56: 1, 57: 1, 58: 1, 59: 1, 60: 1,  # solo brass
            104: 2, 105: 4, 106: 2, 107: 4, 108: 3}


def family_of(program: int, is_drum: bool = False) -> str:
    """The instrument's family: piano, chromatic, organ, guitar, bass, strings, voice, brass, lead, pad,
    fx, ethnic, percussive or drums."""
    if is_drum or program == -1:
        return "drums"
    return _FAMILY_EXCEPTIONS.get(program, _FAMILY_BY_BLOCK[program // 8])


def range_of(program: int, is_drum: bool = False) -> tuple[int, int]:
    """(lowest, highest) MIDI pitch the instrument plays (drums: any key of the kit)."""
    fam = family_of(program, is_drum)
    if fam == "drums":
        return _FAMILY_RANGE["drums"]
    return _RANGE.get(program, _FAMILY_RANGE[fam])


def max_at_once(program: int, is_drum: bool = False) -> int:
    """How many notes the instrument sounds at one onset (one player)."""
    fam = family_of(program, is_drum)
    if fam == "drums":
        return _FAMILY_AT_ONCE["drums"]
    return _AT_ONCE.get(program, _FAMILY_AT_ONCE[fam])


def is_line(program: int, is_drum: bool = False) -> bool:
    """True for instruments that play one note at a time (a bass line, a lead, a solo wind)."""
    return not is_drum and program != -1 and max_at_once(program) == 1
