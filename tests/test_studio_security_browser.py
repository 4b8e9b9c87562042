"""A web page from another origin cannot drive the studio, in a real headless Chromium (issue 18).

The user opens the studio with its token address (so the browser holds the studio's cookie), then
visits a hostile page served by a tiny http.server on another port. That page tries a multipart
fetch() POST (which needs no CORS preflight) and a multipart form POST to the studio; neither
creates a take. The studio's own page still works. Skipped without Chromium, as test_browser.py.
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import socket
import threading
import time
import urllib.request

import pytest
from conftest import make_score
from test_browser import launched_chromium

pytestmark = pytest.mark.browser

TOKEN = "browser-test-token"
EVIL_PAGE = """<!doctype html><html><body>
<iframe name="sink"></iframe>
<form id="f" method="POST" action="{studio}/api/takes/upload" enctype="multipart/form-data" target="sink">
  <input id="file" type="file" name="file"></form>
<script>
const bytes = Uint8Array.from(atob("{midi}"), (c) => c.charCodeAt(0));
const file = new File([bytes], "evil.mid", {{ type: "audio/midi" }});
window.results = [];
async function attack() {{
  const body = new FormData();
  body.append("file", file);
  for (const path of ["/api/takes/upload", "/api/takes/upload?token=guess"]) {{
    try {{
      const r = await fetch("{studio}" + path, {{ method: "POST", body, mode: "no-cors", credentials: "include" }});
      window.results.push("fetch " + r.type);
    }} catch (e) {{ window.results.push("fetch failed"); }}
  }}
  const t = new DataTransfer();
  t.items.add(file);
  document.getElementById("file").files = t.files;
  document.querySelector("iframe").addEventListener("load", () => {{ window.formDone = true; }});
  document.getElementById("f").submit();
}}
attack().then(() => {{ window.fetchDone = true; }});
</script></body></html>"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def studio(tiny_model_dir, tmp_path_factory):
    """The studio (token TOKEN) on a free port, in a background thread; yields its base URL."""
    uvicorn = pytest.importorskip("uvicorn")
    from cadenza.server.app import create_app
    from cadenza.server.settings import Settings

    app = create_app(Settings(model=str(tiny_model_dir), results_dir=tmp_path_factory.mktemp("results"),
                              workers=1, token=TOKEN))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="studio-security-server", daemon=True)
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
def evil(studio, tmp_path_factory):
    """A hostile page on another port of the same machine; yields its URL."""
    folder = tmp_path_factory.mktemp("evil")
    midi = base64.b64encode(make_score([(60, 0, 1, 80), (64, 1, 1, 80)]).dumps_midi()).decode()
    (folder / "index.html").write_text(EVIL_PAGE.format(studio=studio, midi=midi))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    server.shutdown()
    thread.join(timeout=10)


def takes(studio: str) -> list:
    req = urllib.request.Request(studio + "/api/takes", headers={"X-Cadenza-Token": TOKEN})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def test_another_origin_cannot_change_the_studio_but_its_own_page_can(studio, evil, tmp_path):
    seed = tmp_path / "seed.mid"
    make_score([(60 + d, b, 1, 80) for b, d in enumerate([0, 2, 4, 5])]).dump_midi(seed)
    with launched_chromium() as browser:
        context = browser.new_context()
        own = context.new_page()
        own.set_default_timeout(60_000)
        own.goto(f"{studio}/?token={TOKEN}")  # the address `cadenza serve` prints
        assert own.url == studio + "/"  # the token left the address bar for an HttpOnly cookie
        own.wait_for_function("window.studio && window.studio.ready")
        assert TOKEN not in own.evaluate("document.cookie")
        assert takes(studio) == []

        page = context.new_page()  # the same browser (with the studio's cookie) visits the hostile page
        page.set_default_timeout(60_000)
        page.goto(evil)
        page.wait_for_function("window.fetchDone && window.formDone")
        assert page.evaluate("window.results") == ["fetch opaque", "fetch opaque"]
        frame = page.frame(name="sink")
        assert "cross-origin request refused" in frame.content()
        assert takes(studio) == []  # nothing reached the studio's state

        own.set_input_files("#file", str(seed))  # the studio's own page still works
        own.wait_for_function("window.studio.seedId !== null")
        assert [t["label"] for t in takes(studio)] == ["seed.mid"]
        context.close()
