"""Engraved sheet music: a Score as SVG pages or one PDF, drawn by verovio from our own MusicXML.

The path is symusic Score -> music21 (``cadenza.score.to_music21``: one part per track, quantized)
-> MusicXML text -> verovio -> one SVG per page. A PDF is made from those SVG pages with cairosvg
(cairo draws verovio's <symbol>/<use> music-font glyphs as paths) and the pages are joined with
pypdf; both are imported only when a PDF is asked for.

Drum tracks get their own percussion staff: music21 reads MIDI channel-10 notes as unpitched
notes that all sit on the middle line, which loses which drum is which, so drum tracks are
rewritten first into the usual drum-kit positions (kick in the bottom space, snare in the third
space, cymbals with x note heads above the staff) and drawn under a percussion clef.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

import symusic

from cadenza.errors import CadenzaError
from cadenza.files import atomic_output, check_output
from cadenza.score import count_notes

SUFFIXES = (".svg", ".pdf")

# verovio lays music out on a page of pageWidth x pageHeight units with a fixed staff size, then
# draws it at `scale` percent. 2100 x 2970 (A4 in tenths of a mm) at 45 % is an SVG page of
# 945 x 1337 px with 7 mm staves: right for a few tracks. Many tracks would give one system per
# page, so for them the page is made larger in layout units and the scale smaller by the same
# factor (see _page_options): the same A4 page in pixels, with smaller staves on it.
_OPTIONS = {
    "pageMarginTop": 100,
    "pageMarginBottom": 100,
    "pageMarginLeft": 100,
    "pageMarginRight": 100,
    "adjustPageHeight": False,  # every page A4, also the last one
    "breaks": "auto",
    "header": "auto",  # the title from the MusicXML metadata, on page 1
    "footer": "none",  # verovio's default footer advertises itself
    "mnumInterval": 0,  # a bar number at the start of each system
}
_A4_WIDTH_IN = 210 / 25.4

# General MIDI drum key -> (where it is written on a five-line staff, as the pitch that a treble
# clef would put there, and whether it gets an x note head). Common drum-kit notation: kick F4,
# snare C5, toms from G4 to E5, hi-hat G5, ride F5, crash A5, pedal hi-hat D4 below the staff.
# Every written pitch has one head kind only, so the head can be found from the pitch later.
_DRUM_STAFF: dict[int, tuple[int, bool]] = {
    35: (65, False), 36: (65, False),  # kicks
    37: (72, False), 38: (72, False), 39: (72, False), 40: (72, False),  # side stick, snares, clap
    41: (67, False), 43: (69, False), 45: (71, False), 47: (74, False), 48: (74, False),
    50: (76, False),  # toms, low to high
    42: (79, True), 46: (79, True), 44: (62, True),  # hi-hat closed, open, pedal
    49: (81, True), 52: (81, True), 55: (81, True), 57: (81, True),  # crash, china, splash
    51: (77, True), 53: (77, True), 59: (77, True),  # ride, ride bell
}
_DRUM_OTHER = 64  # other percussion (cowbell, congas, ...): the bottom line, normal head
_X_HEAD_PITCHES = {p for p, x in _DRUM_STAFF.values() if x}

# verovio writes the note in a tempo mark ("♩ = 120") as a character of its embedded music font;
# a browser uses the embedded font, cairo cannot (no @font-face), so for the PDF the SMuFL
# metronome notes (quarter, eighth, dot; old and new code points) become the Unicode ones that
# ordinary text fonts (DejaVu) have. Others are dropped: "= 120" still reads.
_SMUFL_TEXT = {"\ueca5": "♩", "\ueca6": "♩", "\ueca7": "♪", "\ueca8": "♪", "\uecb7": ".",
               "\ue1d5": "♩", "\ue1d6": "♩", "\ue1d7": "♪", "\ue1d8": "♪", "\ue1e7": "."}
_SMUFL_TSPAN = re.compile(r'<tspan font-family="Leipzig"([^>]*)>([^<]*)</tspan>')


def engrave(score: symusic.Score, path: str | os.PathLike, *, title: str | None = None,
            name: str | None = None) -> list[Path]:
    """Write sheet music for ``score`` to ``path`` (.svg or .pdf); return the files written.

    .svg: page 1 goes to ``path``, later pages to ``STEM-2.svg``, ``STEM-3.svg``, ... beside it.
    Pages ``STEM-N.svg`` left from an earlier, longer engraving of the same path are removed, so
    the set on disk is always one engraving. .pdf: one file with all pages.
    ``title`` is printed above the music (default: the file stem); ``name`` names the score in
    error messages (default: the path).
    """
    path = check_output(path, SUFFIXES, "sheet music")
    what = name or str(path)
    if not isinstance(score, symusic.Score):
        raise CadenzaError(f"cannot engrave {what}: expected a symusic Score, not {type(score).__name__}")
    if count_notes(score) == 0:
        raise CadenzaError(f"{what} has no notes to engrave")
    pages = svg_pages(score, title=path.stem if title is None else title, name=what)
    if path.suffix.lower() == ".pdf":
        _write_pdf(pages, path)
        return [path]
    return _write_svgs(pages, path)


def svg_pages(score: symusic.Score, *, title: str = "", name: str = "score") -> list[str]:
    """The engraved pages of ``score`` as SVG documents (one string per page)."""
    xml = musicxml(score, title=title, name=name)
    import verovio

    verovio.enableLog(verovio.LOG_OFF)  # it would print its warnings to stderr; we raise instead
    # verovio finds its fonts through a resource path it sets up once per thread: in any other
    # thread (the studio renders on worker threads) it would look in its build folder and fail.
    # Naming the installed package's data folder works in every thread.
    tk = verovio.toolkit(False)
    tk.setResourcePath(str(Path(verovio.__file__).parent / "data"))
    tk.setOptions({**_OPTIONS, **_page_options(sum(1 for t in score.tracks if len(t.notes)))})
    if not tk.loadData(xml) or tk.getPageCount() < 1:
        raise CadenzaError(f"cannot engrave {name}: verovio could not read the MusicXML made from it")
    try:
        return [tk.renderToSVG(i) for i in range(1, tk.getPageCount() + 1)]
    except Exception as e:  # verovio's bindings raise RuntimeError and friends
        raise CadenzaError(f"cannot engrave {name}: {_one_line(e)}") from None


def _page_options(staves: int) -> dict:
    """Page size and scale for ``staves`` staves per system: smaller staves from four on."""
    zoom = max(0.65, min(1.0, 1.0 - 0.06 * (staves - 3)))  # 8 staves: 0.7, 5 mm staves
    scale = round(45 * zoom)  # verovio takes whole percents; the page follows the rounded scale
    return {"pageWidth": round(2100 * 45 / scale), "pageHeight": round(2970 * 45 / scale), "scale": scale}


def musicxml(score: symusic.Score, *, title: str = "", name: str = "score") -> str:
    """MusicXML text for ``score``: one part per track with notes, drums on a percussion staff."""
    import music21
    from music21.musicxml.m21ToXml import GeneralObjectExporter

    from cadenza.score import to_music21

    prepared, drum_parts = _with_written_drums(score)
    try:
        m21 = to_music21(prepared)
        parts = list(m21.parts)
        for i in drum_parts:
            if i < len(parts):  # to_music21 makes one part per track with notes, in order
                _percussion_part(parts[i])
        m21.metadata = music21.metadata.Metadata(title=title)
        return GeneralObjectExporter(m21).parse().decode("utf-8")
    except CadenzaError as e:
        raise CadenzaError(f"cannot engrave {name}: {e}") from None
    except Exception as e:  # music21 raises many kinds
        raise CadenzaError(f"cannot engrave {name}: {_one_line(e)}") from None


def _with_written_drums(score: symusic.Score) -> tuple[symusic.Score, list[int]]:
    """A copy whose drum tracks are pitched tracks holding written drum positions.

    Returns the copy and the indexes of the drum tracks among the tracks with notes (which are
    the parts that ``to_music21`` makes, in order).
    """
    out = score.copy()
    drum_parts = []
    part = 0
    for i, track in enumerate(score.tracks):
        if not len(track.notes):
            continue
        if track.is_drum:
            written = symusic.Track(track.name.strip() or "Drums", 0, False)
            for n in track.notes:
                pitch = _DRUM_STAFF.get(n.pitch, (_DRUM_OTHER, False))[0]
                written.notes.append(symusic.Note(n.time, n.duration, pitch, n.velocity))
            out.tracks[i] = written
            drum_parts.append(part)
        part += 1
    return out, drum_parts


def _percussion_part(part) -> None:
    """Turn a part of written drum positions into unpitched notes under a percussion clef."""
    from music21 import chord, clef, instrument, note, percussion

    name = part.partName
    for inst in list(part.recurse().getElementsByClass(instrument.Instrument)):
        inst.activeSite.remove(inst)
    drums = instrument.Percussion()
    drums.partName = name
    drums.partAbbreviation = "Dr."
    part.insert(0, drums)
    part.partName = name
    part.partAbbreviation = "Dr."
    for c in list(part.recurse().getElementsByClass(clef.Clef)):
        c.activeSite.replace(c, clef.PercussionClef())

    def unpitched(p: note.Note) -> note.Unpitched:
        u = note.Unpitched(displayName=p.pitch.nameWithOctave)
        if p.pitch.midi in _X_HEAD_PITCHES:
            u.notehead = "x"
        u.stemDirection = "up"
        return u

    for n in list(part.recurse().notes):
        if isinstance(n, chord.Chord):
            new = percussion.PercussionChord([unpitched(p) for p in n.notes])
        else:
            new = unpitched(n)
        new.duration = n.duration
        new.tie = n.tie
        new.stemDirection = "up"
        n.activeSite.replace(n, new)


def _write_svgs(pages: list[str], path: Path) -> list[Path]:
    """Page 1 to ``path``, page k to ``STEM-k.svg``; stale higher pages removed afterwards."""
    paths = [path] + [path.with_name(f"{path.stem}-{k}{path.suffix}") for k in range(2, len(pages) + 1)]
    with contextlib.ExitStack() as stack:
        # Every page goes to its own temporary file first; they replace the targets together at
        # the end, so a failure part-way leaves the earlier set of pages as it was.
        tmps = [stack.enter_context(atomic_output(p)) for p in paths]
        for tmp, svg in zip(tmps, pages):
            Path(tmp).write_text(svg, encoding="utf-8")
    _remove_stale_pages(path, len(pages))
    return paths


def _remove_stale_pages(path: Path, count: int) -> None:
    """Remove STEM-N.svg for N > count: pages of an earlier, longer engraving of the same path."""
    # Exactly the names _write_svgs makes: no leading zeros, nothing else around the number.
    pattern = re.compile(re.escape(path.stem) + r"-([1-9][0-9]*)" + re.escape(path.suffix) + r"\Z")
    folder = path.parent if str(path.parent) else Path(".")
    for other in folder.iterdir():
        m = pattern.match(other.name)
        if m and int(m.group(1)) > count and other.is_file():
            with contextlib.suppress(OSError):
                other.unlink()


def _write_pdf(pages: list[str], path: Path) -> None:
    """All pages into one A4 PDF."""
    try:
        import cairosvg
        import pypdf
    except ImportError as e:  # pragma: no cover - both are dependencies of cadenza
        raise CadenzaError(f"cannot write {path}: PDF output needs {e.name} (pip install cairosvg pypdf)") from None
    except OSError:  # cairocffi found no cairo library
        raise CadenzaError(f"cannot write {path}: PDF output needs the cairo library "
                           "(Debian: apt-get install libcairo2); .svg works without it") from None
    writer = pypdf.PdfWriter()
    try:
        for svg in pages:
            svg = _SMUFL_TSPAN.sub(_plain_text_tspan, svg)
            width = float(re.search(r'<svg[^>]*\bwidth="([0-9.]+)px"', svg).group(1))
            # The dpi that makes the page 210 mm wide: A4 whatever verovio's scale.
            data = cairosvg.svg2pdf(bytestring=svg.encode("utf-8"), dpi=width / _A4_WIDTH_IN)
            writer.append(pypdf.PdfReader(io.BytesIO(data)))
        with atomic_output(path) as tmp:
            with open(tmp, "wb") as f:
                writer.write(f)
    except CadenzaError:
        raise
    except Exception as e:
        raise CadenzaError(f"cannot write {path}: {_one_line(e)}") from None


def _plain_text_tspan(m: re.Match) -> str:
    text = "".join(_SMUFL_TEXT.get(ch, "") for ch in m.group(2))
    # The music font's em is larger than a text font's for the same note; keep it readable.
    attrs = re.sub(r'font-size="([0-9.]+)px"', lambda s: f'font-size="{float(s.group(1)) * 0.9:.0f}px"', m.group(1))
    return f"<tspan{attrs}>{text}</tspan>"




def _one_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__
