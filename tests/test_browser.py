"""The pictures and sheet music as people see them: loaded in a real headless Chromium.

Playwright drives the system's Chromium (Debian package ``chromium``; never a downloaded
browser). Without it the test is skipped, except under CI (CI=true), which installs Chromium, so
a missing browser there is a failure. Screenshots go to test-artifacts/ at the repository root.
"""

from __future__ import annotations

import contextlib
import html
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from cadenza.render.notation import engrave
from cadenza.render.pictures import piano_roll_png, spectrogram_png
from test_pictures import SR, band, sine

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def _unavailable(reason: str):
    if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        pytest.fail(f"{reason}; CI installs Chromium and Playwright, so this is a bug in the CI setup")
    pytest.skip(reason)


@contextlib.contextmanager
def launched_chromium(extra_args=()):
    """The system's Chromium under Playwright (skipped where missing, a failure under CI)."""
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        _unavailable("the playwright Python package is not installed (pip install -e '.[test]')")
    executable = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(executable).exists():
        _unavailable("Chromium is not installed (Debian: apt-get install chromium)")
    with sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS + list(extra_args))
        except Error as e:
            _unavailable(f"Chromium at {executable} did not start: {str(e).splitlines()[0]}")
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def browser():
    with launched_chromium() as b:
        yield b


def test_pictures_and_sheet_music_in_chromium(browser, tmp_path):
    score = band(bars=4)
    roll = piano_roll_png(score, tmp_path / "roll.png", title="Piano roll")
    audio = np.concatenate([sine(f, 0.5) for f in (262, 330, 392, 523)])
    spec = spectrogram_png(audio, SR, tmp_path / "spec.png", title="Spectrogram")
    sheet = engrave(score, tmp_path / "sheet.svg", title="Sheet music")[0]
    page = tmp_path / "page.html"
    page.write_text(f"""<!doctype html>
<html><head><meta charset="utf-8"><title>cadenza render</title>
<style>body {{ margin: 16px; background: #fff; }} img, object {{ display: block; margin: 8px 0; }}
#inline > svg {{ border: 1px solid #ddd; }}</style></head>
<body>
<img id="roll" src="{roll.name}" alt="piano roll">
<img id="spec" src="{spec.name}" alt="spectrogram">
<img id="sheet-img" src="{sheet.name}" alt="sheet music" width="945">
<div id="inline">{sheet.read_text(encoding="utf-8")}</div>
<p>{html.escape(str(tmp_path))}</p>
</body></html>""", encoding="utf-8")

    tab = browser.new_page(viewport={"width": 1300, "height": 1000})
    try:
        tab.goto(page.as_uri())
        tab.wait_for_load_state("load")
        images = tab.evaluate("""() => Array.from(document.images).map(i => (
            {id: i.id, complete: i.complete, w: i.naturalWidth, h: i.naturalHeight}))""")
        assert len(images) == 3
        for img in images:
            assert img["complete"] and img["w"] > 0 and img["h"] > 0, img
        sizes = {i["id"]: (i["w"], i["h"]) for i in images}
        assert sizes["roll"][0] >= 700 and sizes["spec"][0] >= 700
        assert sizes["sheet-img"][0] >= 500  # the SVG as an image: rendered at its page size

        # The inline SVG: a page-sized drawing with one staff per track in each system.
        svg_box = tab.evaluate("""() => { const r = document.querySelector('#inline > svg').getBoundingClientRect();
                                         return [r.width, r.height]; }""")
        assert 500 <= svg_box[0] <= 2000 and svg_box[1] > svg_box[0], svg_box  # portrait page
        staves = tab.evaluate("""() => Array.from(document.querySelectorAll('#inline g.system')).map(
            s => s.querySelector('g.measure').querySelectorAll('g.staff').length)""")
        assert staves and all(n == len(score.tracks) for n in staves), staves
        # The notes are drawn: note heads have a real size on screen.
        heads = tab.evaluate("""() => Array.from(document.querySelectorAll('#inline g.notehead')).map(
            g => g.getBoundingClientRect().width)""")
        assert len(heads) > 10 and min(heads) > 2, heads[:5]

        ARTIFACTS.mkdir(exist_ok=True)
        tab.screenshot(path=str(ARTIFACTS / "render-page.png"), full_page=True)
        tab.locator("#roll").screenshot(path=str(ARTIFACTS / "render-piano-roll.png"))
        tab.locator("#spec").screenshot(path=str(ARTIFACTS / "render-spectrogram.png"))
        tab.locator("#inline > svg").screenshot(path=str(ARTIFACTS / "render-sheet.png"))
        assert (ARTIFACTS / "render-sheet.png").stat().st_size > 10_000
    finally:
        tab.close()
