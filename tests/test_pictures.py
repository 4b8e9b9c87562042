"""Piano roll, spectrogram and engraved sheet music: the files, what is in them, and bad input."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest
import symusic
from matplotlib import image as mpimg

from cadenza.errors import CadenzaError
from cadenza.render.notation import engrave, musicxml
from cadenza.render.pictures import (bar_ticks, mel_filterbank, mel_spectrogram, piano_roll_figure, piano_roll_png,
                                     spectrogram_png, track_labels, _tick_seconds)
from conftest import make_score

SR = 22050


def band(bars: int = 2, tempo: float = 120.0, drums: bool = True, velocity: int = 127) -> symusic.Score:
    """Piano eighths, a bass in quarters and (optionally) a drum kit, ``bars`` bars of 4/4."""
    beats = 4 * bars
    score = make_score([(60 + (i * 5) % 14, i * 0.5, 0.5, velocity) for i in range(beats * 2)], program=0,
                       tempo=tempo)
    score.tracks[0].name = "Piano"
    bass = make_score([(36 + (i * 7) % 12, i, 1, velocity) for i in range(beats)], program=33).tracks[0]
    bass.name = ""
    score.tracks.append(bass)
    if drums:
        kit = make_score([(36 if i % 4 == 0 else 38 if i % 4 == 2 else 42, i * 0.5, 0.5, velocity)
                          for i in range(beats * 2)], is_drum=True).tracks[0]
        kit.name = ""
        score.tracks.append(kit)
    return score


def rgb(path) -> np.ndarray:
    img = mpimg.imread(str(path))
    assert img.ndim == 3 and img.shape[2] in (3, 4)
    return img[:, :, :3]


def has_colour(img: np.ndarray, colour, tol: float = 0.03) -> bool:
    return bool((np.abs(img - np.asarray(colour[:3])).max(axis=2) < tol).any())


def all_text(fig) -> list[str]:
    from matplotlib.text import Text

    fig.canvas.draw()
    return [t.get_text() for t in fig.findobj(Text) if t.get_text()]


# ------------------------------------------------------------------------------------- piano roll

def test_piano_roll_png_is_a_readable_picture(tmp_path):
    out = piano_roll_png(band(), tmp_path / "roll.png", title="A band")
    assert out == tmp_path / "roll.png" and out.is_file()
    img = rgb(out)
    h, w = img.shape[:2]
    assert 700 <= w <= 1400 and 400 <= h <= 1200, (w, h)
    # Not blank: plenty of non-white pixels, and more than a couple of colours.
    assert (img.min(axis=2) < 0.9).mean() > 0.02
    assert len(np.unique((img * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 50
    assert not list(tmp_path.glob(".*tmp*"))  # the temporary file was renamed, not left behind


def test_piano_roll_tracks_have_their_own_colours_in_the_png(tmp_path):
    import matplotlib

    out = piano_roll_png(band(), tmp_path / "roll.png")  # velocity 127: full colour, no transparency
    img = rgb(out)
    tab10 = matplotlib.colormaps["tab10"]
    for k in range(3):  # piano, bass, drums
        assert has_colour(img, tab10(k)), f"track {k}'s colour is missing"
    assert not has_colour(img, tab10(3))  # a fourth colour would mean a fourth track


def test_piano_roll_legend_names_instruments_and_drums_are_marks():
    fig = piano_roll_figure(band(), title="t")
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["Acoustic Grand Piano", "Electric Bass (finger)", "Drums"]
    roll, drums = fig.axes[0], fig.axes[1]
    faces = [tuple(np.round(c.get_facecolor()[0][:3], 3)) for c in roll.collections if c.get_label() in legend]
    assert len(faces) == 2 and faces[0] != faces[1]
    # Drums: x marks in a lane of their own, one row per drum, named.
    assert drums.get_ylabel() == "drums"
    assert [t.get_text() for t in drums.get_yticklabels()] == ["Kick", "Snare", "Hi-hat closed"]
    assert drums.collections[0].get_paths()  # the scatter of x marks


def test_piano_roll_has_bar_numbers_and_octave_names():
    texts = all_text(piano_roll_figure(band(bars=4)))
    for bar in ("1", "2", "3", "4"):
        assert bar in texts
    assert "bar" in texts
    assert "C4" in texts and "C5" in texts


def test_bars_follow_time_signatures_and_tempo():
    score = make_score([(60, i, 1, 80) for i in range(12)], ts=(3, 4), tempo=60)
    bars, beats = bar_ticks(score, 12 * 480)
    assert bars.tolist() == [0, 1440, 2880, 4320, 5760]  # bar starts, then the closing bar line
    assert len(beats) == 12
    # 60 bpm: a 3/4 bar lasts 3 s; from tick 1440 on, 120 bpm halves the rest.
    score.tempos.append(symusic.Tempo(1440, qpm=120))
    assert _tick_seconds(score, bars).tolist() == pytest.approx([0.0, 3.0, 4.5, 6.0, 7.5])
    score.time_signatures.append(symusic.TimeSignature(2880, 4, 4))
    assert bar_ticks(score, 12 * 480)[0].tolist() == [0, 1440, 2880, 4800, 6720]
    assert bar_ticks(score, 4000)[0].tolist() == [0, 1440, 2880, 4800]  # ends inside bar 3: drawn whole


def test_piano_roll_width_grows_with_length_and_is_capped(tmp_path):
    long = make_score([(48 + i % 24, i * 0.5, 0.5, 90) for i in range(960)])  # 4 minutes at 120 bpm
    img = rgb(piano_roll_png(long, tmp_path / "long.png"))
    short = rgb(piano_roll_png(band(bars=2, drums=False), tmp_path / "short.png"))
    assert short.shape[1] < img.shape[1] <= 2700
    assert img.shape[1] >= 2000


def test_track_labels_add_informative_names_and_number_twins():
    score = band(drums=False)
    score.tracks[1].name = "Left hand"
    twin = score.tracks[0].copy()
    twin.name = ""
    score.tracks.append(twin)
    score.tracks.append(symusic.Track("empty", 0, False))  # no notes: not drawn, not listed
    assert track_labels(score) == ["Acoustic Grand Piano 1", "Electric Bass (finger) (Left hand)",
                                   "Acoustic Grand Piano 2"]


def test_drum_only_and_seconds_scores_draw(tmp_path):
    kit = make_score([(36, i, 1, 100) for i in range(8)], is_drum=True)
    assert piano_roll_png(kit, tmp_path / "kit.png").is_file()
    assert piano_roll_png(band().to("second"), tmp_path / "sec.png").is_file()


def test_figures_are_not_kept_open(tmp_path):
    from matplotlib import _pylab_helpers

    for k in range(3):
        piano_roll_png(band(), tmp_path / f"r{k}.png")
        spectrogram_png(np.zeros(SR, np.float32), SR, tmp_path / f"s{k}.png")
    assert _pylab_helpers.Gcf.get_num_fig_managers() == 0


def test_piano_roll_bad_input(tmp_path):
    empty = make_score([])
    with pytest.raises(CadenzaError, match="no notes to draw"):
        piano_roll_png(empty, tmp_path / "e.png")
    with pytest.raises(CadenzaError, match=r"\.bmp"):
        piano_roll_png(band(), tmp_path / "roll.bmp")
    with pytest.raises(CadenzaError, match="does not exist"):
        piano_roll_png(band(), tmp_path / "missing" / "roll.png")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------ spectrogram

def sine(hz: float, seconds: float = 1.0, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def test_mel_spectrogram_of_a_sine_peaks_in_its_band():
    db, freqs, times = mel_spectrogram(sine(440), SR)
    assert db.shape == (128, len(times)) and len(freqs) == 128
    assert len(times) == 1 + SR // 512
    assert times[1] == pytest.approx(512 / SR)
    assert np.all(np.diff(freqs) > 0)
    peak = int(np.argmax(db.mean(axis=1)))
    assert peak == int(np.argmin(np.abs(freqs - 440))), (freqs[peak], 440)
    assert db.max() == pytest.approx(0.0) and db.min() >= -80.0
    # Far from 440 Hz (and its window's leakage) it is near the floor.
    assert db[np.argmin(np.abs(freqs - 5000))].mean() < -60


def test_mel_filterbank_is_slaney():
    fb, centres = mel_filterbank(SR)
    assert fb.shape == (128, 1025) and (fb >= 0).all()
    assert (fb.sum(axis=1) > 0).all()  # no empty band at this size
    below = np.diff(centres[centres < 1000])  # linear below 1 kHz ...
    assert np.allclose(below, below[0], rtol=1e-6)
    above = centres[centres > 1000]  # ... logarithmic above
    ratios = above[1:] / above[:-1]
    assert np.allclose(ratios, ratios[0], rtol=1e-6)


def test_mel_spectrogram_mixes_channels_and_reads_pcm():
    mono = sine(1000)
    stereo = np.stack([mono, mono], axis=1)
    assert np.allclose(mel_spectrogram(stereo, SR)[0], mel_spectrogram(mono, SR)[0], atol=1e-3)
    pcm = (mono * 32767).astype(np.int16)
    assert np.allclose(mel_spectrogram(pcm, SR)[0], mel_spectrogram(mono, SR)[0], atol=0.1)


def test_spectrogram_png(tmp_path):
    audio = np.concatenate([sine(220, 1.0), sine(880, 1.0)])
    out = spectrogram_png(np.stack([audio, audio * 0.5], 1), SR, tmp_path / "spec.png", title="two tones")
    img = rgb(out)
    h, w = img.shape[:2]
    assert 700 <= w <= 2000 and 350 <= h <= 700, (w, h)
    assert img.std() > 0.1


def test_spectrogram_of_silence_is_a_valid_picture(tmp_path):
    db, _, _ = mel_spectrogram(np.zeros(SR, np.float32), SR)
    assert (db == -80).all()
    img = rgb(spectrogram_png(np.zeros((300, 2), np.float32), SR, tmp_path / "silence.png"))
    assert img.shape[1] >= 700


def test_spectrogram_bad_input(tmp_path):
    with pytest.raises(CadenzaError, match="empty"):
        spectrogram_png(np.zeros(0, np.float32), SR, tmp_path / "s.png")
    with pytest.raises(CadenzaError, match="empty"):
        mel_spectrogram(np.zeros((0, 2), np.float32), SR)
    with pytest.raises(CadenzaError, match="shape"):
        mel_spectrogram(np.zeros((2, 2, 2), np.float32), SR)
    with pytest.raises(CadenzaError, match="sample rate"):
        mel_spectrogram(sine(440), 0)
    with pytest.raises(CadenzaError, match=r"\.jpg"):
        spectrogram_png(sine(440), SR, tmp_path / "s.jpg")
    assert list(tmp_path.iterdir()) == []


# -------------------------------------------------------------------------------------- notation

def staves_per_system(svg: str) -> list[int]:
    """Staves in each <g class="system"> of a verovio SVG page.

    verovio nests one <g class="staff"> per staff inside every <g class="measure">, so the
    staves of a system are those of its first measure.
    """
    counts = []
    for system in re.split(r'<g\b[^>]*\bclass="system"', svg)[1:]:
        first_measure = re.split(r'<g\b[^>]*\bclass="measure"', system)[1]
        counts.append(len(re.findall(r'<g\b[^>]*\bclass="staff"', first_measure)))
    return counts


def test_engrave_svg_one_staff_per_track(tmp_path):
    one = engrave(make_score([(60 + i % 8, i, 1, 80) for i in range(8)]), tmp_path / "one.svg")
    assert one == [tmp_path / "one.svg"]
    assert staves_per_system(one[0].read_text())[0] == 1

    pages = engrave(band(), tmp_path / "band.svg", title="The band")
    assert pages == [tmp_path / "band.svg"]
    svg = pages[0].read_text()
    assert svg.startswith("<svg") or svg.lstrip().startswith("<?xml") or "<svg" in svg[:200]
    counts = staves_per_system(svg)
    assert counts and all(c == 3 for c in counts)  # piano, bass, drums: each its own staff
    assert "The band" in svg
    assert 'class="clef"' in svg and "E069" in svg  # SMuFL unpitchedPercussionClef1 for the drums


def test_drums_are_written_as_a_percussion_part():
    xml = musicxml(band(), title="x")
    assert xml.count("<score-part ") == 3
    assert "<sign>percussion</sign>" in xml
    assert "<unpitched>" in xml and re.search(r"<notehead[^>]*>x</notehead>", xml)  # hi-hat: x heads
    assert "<display-step>F</display-step>" in xml  # kick in the bottom space


def test_engrave_long_score_makes_pages_and_removes_stale_ones(tmp_path):
    long = band(bars=48)
    pages = engrave(long, tmp_path / "long.svg")
    assert len(pages) >= 2
    assert pages[1:] == [tmp_path / f"long-{k}.svg" for k in range(2, len(pages) + 1)]
    for p in pages:
        assert p.is_file()
        assert staves_per_system(p.read_text())[0] == 3
    unrelated = [tmp_path / "long-notes.svg", tmp_path / "long-2b.svg", tmp_path / "longer-2.svg"]
    for p in unrelated:
        p.write_text("keep me")
    # A shorter piece to the same path: one page, and the old page 2, 3, ... are gone.
    assert engrave(band(bars=2), tmp_path / "long.svg") == [tmp_path / "long.svg"]
    assert not any((tmp_path / f"long-{k}.svg").exists() for k in range(2, len(pages) + 1))
    assert all(p.read_text() == "keep me" for p in unrelated)
    assert not list(tmp_path.glob(".*tmp*"))


def test_engrave_pdf_has_all_pages(tmp_path):
    import pypdf

    long = band(bars=48)
    svgs = engrave(long, tmp_path / "long.svg")
    out = engrave(long, tmp_path / "long.pdf", title="Long piece")
    assert out == [tmp_path / "long.pdf"]
    reader = pypdf.PdfReader(str(out[0]))
    assert len(reader.pages) == len(svgs) >= 2
    box = reader.pages[0].mediabox
    assert float(box.width) == pytest.approx(595.3, abs=2) and float(box.height) == pytest.approx(841.9, abs=2)
    assert "Long piece" in reader.pages[0].extract_text()
    # The notes are music-font glyphs (SVG <use> of <symbol>s): drawn as paths, they make a
    # large content stream on every page.
    for page in reader.pages:
        assert len(page.get_contents().get_data()) > 20_000


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="pdftoppm (poppler-utils) is not installed")
def test_engrave_pdf_rasterizes_with_ink(tmp_path):
    out = engrave(band(bars=4), tmp_path / "band.pdf")[0]
    subprocess.run(["pdftoppm", "-r", "40", "-png", "-f", "1", "-l", "1", str(out), str(tmp_path / "page")],
                   check=True)
    img = rgb(next(tmp_path.glob("page*.png")))
    dark = img.mean(axis=2) < 0.5
    assert 0.005 < dark.mean() < 0.5  # staves, notes and text; not blank, not black


def test_engrave_bad_input(tmp_path, monkeypatch):
    with pytest.raises(CadenzaError, match="no notes"):
        engrave(make_score([]), tmp_path / "e.svg")
    with pytest.raises(CadenzaError, match=r"\.bmp"):
        engrave(band(), tmp_path / "e.bmp")
    with pytest.raises(CadenzaError, match="does not exist"):
        engrave(band(), tmp_path / "nowhere" / "e.svg")
    from cadenza.render import notation

    monkeypatch.setattr(notation, "musicxml", lambda *a, **k: "this is not MusicXML")
    with pytest.raises(CadenzaError, match="verovio could not read"):
        engrave(band(), tmp_path / "e.svg")
    assert list(tmp_path.iterdir()) == []


def test_every_staff_has_the_scores_meter():
    score = make_score([(60 + i % 5, i, 1, 80) for i in range(12)], ts=(3, 4))
    score.tracks.append(make_score([(48 + i % 5, i, 1, 80) for i in range(12)], program=32).tracks[0])
    xml = musicxml(score)
    assert re.findall(r"<time>\s*<beats>(\d+)</beats>\s*<beat-type>(\d+)</beat-type>", xml) == [("3", "4")] * 2


def test_spectrogram_has_axes_a_db_colour_bar_and_marks():
    """README: mel scale, time and frequency axes, dB colour bar; `audio continue`'s picture marks the seam."""
    from cadenza.render.pictures import spectrogram_figure

    fig = spectrogram_figure(sine(440, 2.0), SR, marks=[(1.0, "continuation")])
    ax, bar = fig.axes
    assert ax.get_xlabel() == "time (s)" and "mel" in ax.get_ylabel() and "dB" in bar.get_ylabel()
    assert [line.get_xdata()[0] for line in ax.lines] == [1.0] and ax.texts[0].get_text().strip() == "continuation"
