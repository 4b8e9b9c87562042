"""The studio page as people use it: the real app (uvicorn, the bundled default model) driven in a
headless Chromium.

One flow: load the page; upload a MIDI seed; generate and see notes drawn while they are still
being written; play (the cursor moves); download the MIDI; regenerate bars 3-4 (every note outside
them unchanged, checked through the API); undo; step through the learn view and measure surprise;
harmonize a melody; a bad upload shows a message. Playwright drives the system's Chromium as in
test_browser.py (skipped without it, except under CI=true). Screenshots: test-artifacts/studio-*.png.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request

import pytest
import symusic

from conftest import make_score
from test_browser import ARTIFACTS, launched_chromium

pytestmark = pytest.mark.browser

TIMEOUT_MS = 120_000  # generous: the machines that run this may be slow and shared


# ----------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    """The real studio app on a free port, in a background thread; yields its base URL."""
    uvicorn = pytest.importorskip("uvicorn")
    from cadenza.server.app import create_app
    from cadenza.server.settings import Settings

    app = create_app(Settings(results_dir=tmp_path_factory.mktemp("studio-results"), no_token=True))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="studio-test-server", daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not server.started:
        if not thread.is_alive() or time.time() > deadline:
            pytest.fail("the studio server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)


@pytest.fixture(scope="module")
def chromium():
    with launched_chromium(["--autoplay-policy=no-user-gesture-required"]) as b:
        yield b


def get_json(base: str, path: str):
    with urllib.request.urlopen(base + path, timeout=60) as r:
        return json.loads(r.read())


def studio_value(page, name: str):
    return page.evaluate(f"window.studio.{name}")


def key(n: dict) -> tuple:
    return (n["pitch"], round(n["start"], 4), round(n["duration"], 4), n["velocity"], n["program"], n["drum"])


# ----------------------------------------------------------------------------------- the flow
def test_studio_compose_learn_harmonize_in_chromium(chromium, studio, tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    # a two-bar seed: a C major line
    seed = make_score([(60 + d, b, 1, 80) for b, d in enumerate([0, 2, 4, 5, 7, 5, 4, 2])])
    seed_path = tmp_path / "seed.mid"
    seed.dump_midi(seed_path)
    bad_path = tmp_path / "bad.mid"
    bad_path.write_bytes(b"this is not a MIDI file \x00\x01\x02" * 20)

    page = chromium.new_page(viewport={"width": 1300, "height": 1000}, accept_downloads=True)
    page.set_default_timeout(TIMEOUT_MS)
    requests, errors = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        # -- load -------------------------------------------------------------------------------
        page.goto(studio + "/")
        page.wait_for_function("window.studio && window.studio.ready")
        assert page.locator("#model option").count() >= 1
        assert page.locator("#style option").count() >= 1
        assert page.locator("#message").is_hidden()

        # -- upload a MIDI seed: it becomes the seed and the current take, drawn on the roll --------
        page.set_input_files("#file", str(seed_path))
        page.wait_for_function("window.studio.seedId !== null")
        upload_id = studio_value(page, "seedId")
        assert studio_value(page, "takeId") == upload_id
        assert studio_value(page, "notesDrawn") == 8
        assert "seed.mid" in page.locator("#seed-info").inner_text()
        assert page.locator("#note-count").inner_text().startswith("8 notes")

        # -- generate: notes are drawn while the job is still running ------------------------------
        page.fill("#bars", "8")
        page.fill("#random-seed", "7")
        page.select_option("#style", "pop")
        # sample the page's state every few ms from inside the page, so no fast note is missed
        page.evaluate("""() => { window.__samples = [];
            window.__sampler = setInterval(() => window.__samples.push(
              [window.studio.jobId, window.studio.jobStatus, window.studio.streamedNotes, window.studio.notesDrawn]), 5); }""")
        page.click("#generate")
        # playback may start as soon as notes exist, while they are still coming
        page.wait_for_function("window.studio.streamedNotes > 0 || window.studio.takeId !== %s" % json.dumps(upload_id))
        page.click("#play")
        page.wait_for_function("window.studio.jobId === null && window.studio.takeId !== %s" % json.dumps(upload_id))
        samples = page.evaluate("() => { clearInterval(window.__sampler); return window.__samples; }")
        gen_id = studio_value(page, "takeId")
        gen = get_json(studio, f"/api/takes/{gen_id}")
        new_notes = len(gen["notes"]) - 8
        assert gen["parent"] == upload_id and gen["kind"] == "generate" and new_notes > 0
        streaming = [s for s in samples if s[0] is not None and s[2] > 0]
        assert streaming, "no note was drawn while the job was running"
        assert all(s[3] == 8 + s[2] for s in streaming), "the roll shows the seed plus each streamed note"
        # the notes came in over time, not all at once at the end
        partial = {s[2] for s in streaming if s[2] < new_notes}
        assert partial, f"every streamed sample already had all {new_notes} notes"
        assert studio_value(page, "notesDrawn") == len(gen["notes"])
        assert page.locator("#note-count").inner_text().startswith(f"{len(gen['notes'])} notes")
        assert studio_value(page, "history") == [upload_id, gen_id]

        # -- play: the cursor moves (pause, then play from where it stopped) -----------------------
        page.wait_for_function("window.studio.playing && window.studio.cursor > 0.3")
        t1 = studio_value(page, "cursor")
        page.wait_for_timeout(400)
        t2 = studio_value(page, "cursor")
        assert t2 > t1, (t1, t2)
        page.click("#play")  # pause
        assert studio_value(page, "playing") is False
        paused = studio_value(page, "cursor")
        assert paused >= t2
        page.click("#play")
        page.wait_for_function(f"window.studio.playing && window.studio.cursor > {paused + 0.2}")
        page.click("#play")

        # -- sheet music: engraved pages with note heads --------------------------------------------
        page.click("#sheet-panel summary")
        page.wait_for_selector("#sheet svg, #message:not([hidden])")
        assert page.locator("#message").is_hidden(), page.locator("#message-text").inner_text()
        heads = page.evaluate("() => Array.from(document.querySelectorAll('#sheet g.notehead')).map("
                              "g => g.getBoundingClientRect().width)")
        assert len(heads) > 10 and min(heads) > 2, heads[:5]
        page.screenshot(path=str(ARTIFACTS / "studio-compose.png"), full_page=True)

        # -- download the MIDI -------------------------------------------------------------------
        with page.expect_download() as dl:
            page.click("#download-mid")
        mid = tmp_path / "download.mid"
        dl.value.save_as(mid)
        score = symusic.Score(str(mid))
        assert score.note_num() == len(gen["notes"]) > 8

        # -- regenerate bars 3-4: everything outside them is unchanged -----------------------------
        page.fill("#bar-from", "3")
        page.fill("#bar-to", "4")
        assert studio_value(page, "selection") == [3, 4]
        page.click("#regenerate")
        page.wait_for_function("window.studio.jobId === null && window.studio.takeId !== %s" % json.dumps(gen_id))
        regen_id = studio_value(page, "takeId")
        old, new = get_json(studio, f"/api/takes/{gen_id}"), get_json(studio, f"/api/takes/{regen_id}")
        assert new["parent"] == gen_id and new["kind"] == "regenerate"
        a, b = old["bar_starts"][2], old["bar_starts"][4]
        outside = lambda take: sorted(key(n) for n in take["notes"] if not a - 1e-6 <= n["start"] < b - 1e-6)  # noqa: E731
        assert outside(new) == outside(old) and len(outside(old)) > 0
        assert any(a - 1e-6 <= n["start"] < b - 1e-6 for n in new["notes"]), "bars 3-4 came back empty"
        assert studio_value(page, "notesDrawn") == len(new["notes"])

        # -- undo goes back to the take before; the history keeps all three -----------------------
        page.click("#undo")
        assert studio_value(page, "takeId") == gen_id
        assert studio_value(page, "history") == [upload_id, gen_id, regen_id]
        assert page.locator("#history li").count() == 3

        # -- learn: step through generation one note at a time ------------------------------------
        page.click(f"#history button[data-take='{upload_id}']")  # the upload again: surprise is measured on it
        assert studio_value(page, "takeId") == upload_id
        page.click("#tab-learn")
        page.fill("#learn-notes", "6")
        page.click("#learn-start")
        page.wait_for_function("window.studio.learnSteps > 0")
        assert studio_value(page, "learnStep") == 1
        page.click("#learn-next")
        page.click("#learn-next")
        assert studio_value(page, "learnStep") == 3
        items = page.locator("#learn-candidates li")
        assert items.count() >= 2
        probs = [float(items.nth(k).get_attribute("data-p")) for k in range(items.count())]
        assert all(0 < p <= 1 for p in probs) and sum(probs) <= 1.0001
        assert page.locator("#learn-candidates li.chosen").count() == 1
        assert page.locator("#learn-candidates li").first.inner_text().strip().endswith("%")
        assert "chose" in page.locator("#learn-step").inner_text()
        # surprise of the uploaded piece: a curve with its mean
        page.click("#surprise-run")
        page.wait_for_function("window.studio.surpriseMean !== null")
        assert studio_value(page, "surpriseMean") > 0
        assert "bits" in page.locator("#surprise-mean").inner_text()
        page.screenshot(path=str(ARTIFACTS / "studio-learn.png"), full_page=True)

        # -- harmonize the uploaded melody, then one beat again ------------------------------------
        page.click("#tab-harmonize")
        assert "seed.mid" in page.locator("#harmonize-melody").inner_text()
        page.click("#harmonize")
        page.wait_for_function("window.studio.harmonyTakeId !== null && window.studio.jobId === null")
        harm_id = studio_value(page, "harmonyTakeId")
        harm = get_json(studio, f"/api/takes/{harm_id}")
        assert harm["kind"] == "harmonize" and len(harm["notes"]) > 8
        assert studio_value(page, "harmonyNotesDrawn") == len(harm["notes"])
        box = page.locator("#harmonize-roll").bounding_box()
        page.mouse.click(box["x"] + box["width"] * 0.55, box["y"] + box["height"] * 0.6)  # a beat in bar 2
        page.wait_for_function("window.studio.jobId === null && window.studio.harmonyTakeId !== %s" % json.dumps(harm_id))
        again = get_json(studio, f"/api/takes/{studio_value(page, 'harmonyTakeId')}")
        assert again["parent"] == harm_id and again["kind"] == "harmonize"
        page.screenshot(path=str(ARTIFACTS / "studio-harmonize.png"), full_page=True)

        # -- a bad upload: a message in the page -------------------------------------------------
        page.click("#tab-compose")
        page.set_input_files("#file", str(bad_path))
        page.wait_for_selector("#message:not([hidden])")
        text = page.locator("#message-text").inner_text()
        assert "bad.mid" in text and len(text) > 15, text
        assert studio_value(page, "takeId") == page.evaluate("window.studio.history.at(-1)")  # nothing new
        page.screenshot(path=str(ARTIFACTS / "studio-error.png"), full_page=True)

        # nothing came from anywhere but the studio itself, and no script error happened
        assert not errors, errors
        foreign = [u for u in requests if not (u.startswith(studio + "/") or u.startswith("data:") or u.startswith("blob:"))]
        assert not foreign, foreign
    finally:
        page.close()
