"""The studio is safe by default (issue 18): it answers only to its own host names, refuses writes
from other origins, asks for the run's token, and bounds every request (body size, bar ranges, a
job's time), stops what is cancelled, keeps its event loop free, and stops within seconds.

TestClient for the app; a real server (``python -m cadenza.cli serve``) in a subprocess for what
needs one: /api/health while heavy requests run, and SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import symusic
import torch
from conftest import make_score
from test_server_api import detail, events, finish, studio_client

from cadenza.server.app import create_app
from cadenza.server.jobs import JobQueue
from cadenza.server.settings import Settings

MIDI = make_score([(60 + d, b, 1, 80) for b, d in enumerate([0, 2, 4, 5, 7, 5, 4, 2])]).dumps_midi()


@pytest.fixture(scope="module")
def app(tiny_model_dir, tmp_path_factory):
    settings = Settings(model=str(tiny_model_dir), results_dir=tmp_path_factory.mktemp("results"), workers=1,
                        upload_bytes=200_000, max_bars=32, token="the-token")
    a = create_app(settings)
    with studio_client(a):  # the lifespan: closed at the end
        yield a


@pytest.fixture()
def client(app):
    return studio_client(app)


def n_takes(client) -> int:
    return len(client.get("/api/takes").json())


# --------------------------------------------------------------------------- host and origin
def test_a_foreign_host_header_is_refused(client):
    for host in ("attacker.example", "attacker.example:8000", "127.0.0.1.attacker.example", "localhost.:8000", ""):
        r = client.get("/api/health", headers={"Host": host})
        assert r.status_code == 400 and "not this studio's" in detail(r), host
        assert client.get("/", headers={"Host": host}).status_code == 400
    for host in ("localhost", "localhost:8000", "127.0.0.1:8000", "[::1]:8000", "LOCALHOST"):
        assert client.get("/api/health", headers={"Host": host}).status_code == 200, host


def test_host_names_follow_host_and_allow_host(tiny_model_dir):
    a = create_app(Settings(model=str(tiny_model_dir), host="192.168.1.5", allow_hosts="studio.lan, ::2"))
    c = studio_client(a)
    for host in ("192.168.1.5:8000", "studio.lan", "[::2]:8000", "localhost:8000"):
        assert c.get("/api/health", headers={"Host": host}).status_code == 200, host
    assert c.get("/api/health", headers={"Host": "192.168.1.6"}).status_code == 400


def test_a_cross_origin_multipart_post_is_refused(client):
    before = n_takes(client)
    upload = {"file": ("tune.mid", MIDI, "audio/midi")}
    for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"}, {"Origin": "http://127.0.0.1:9999"},
                    {"Origin": "http://localhost.evil.example:8000"}, {"Referer": "http://evil.example/page.html"}):
        r = client.post("/api/takes/upload", files=upload, headers=headers)
        assert r.status_code == 403 and "cross-origin" in detail(r), headers
    r = client.post("/api/takes/text", json={"notes": "C4 D4"}, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403
    assert n_takes(client) == before
    # the studio's own page (and a script, with no Origin) may write
    r = client.post("/api/takes/upload", files=upload, headers={"Origin": "http://127.0.0.1:8000"})
    assert r.status_code == 201, r.text
    assert client.post("/api/takes/upload", files=upload, headers={"Referer": "http://127.0.0.1:8000/"}).status_code == 201
    assert client.post("/api/takes/upload", files=upload).status_code == 201


# ----------------------------------------------------------------------------------- the token
def test_the_token_is_asked_on_every_api_request(app):
    bare = studio_client(app)
    bare.headers.pop("X-Cadenza-Token")
    r = bare.get("/api/takes")
    assert r.status_code == 401 and "token" in detail(r)
    assert bare.get("/api/takes", headers={"X-Cadenza-Token": "nope"}).status_code == 403
    assert bare.get("/api/takes?token=nope").status_code == 403
    assert bare.get("/api/takes", headers={"X-Cadenza-Token": "the-token"}).status_code == 200
    assert bare.get("/api/takes", headers={"Authorization": "token the-token"}).status_code == 200
    assert bare.get("/api/takes?token=the-token").status_code == 200
    assert bare.get("/").status_code == 200  # the page itself holds nothing secret
    assert bare.get("/?token=nope", follow_redirects=False).status_code == 403
    # the address `cadenza serve` prints: a cookie (HttpOnly, SameSite=Strict), then the page without the token
    r = bare.get("/?token=the-token", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "the-token" in cookie
    assert cookie.startswith("cadenza_token_")  # docs/studio-api.md: named cadenza_token_PORT (one per port)
    assert bare.get("/api/takes").status_code == 200  # the client keeps the cookie


def test_a_token_is_made_per_run_and_no_token_turns_it_off(tiny_model_dir, monkeypatch):
    a, b = (create_app(Settings(model=str(tiny_model_dir))) for _ in range(2))
    assert len(a.state.token) >= 32 and a.state.token != b.state.token
    c = create_app(Settings(model=str(tiny_model_dir), no_token=True))
    assert c.state.token is None
    bare = studio_client(c)
    bare.headers.pop("X-Cadenza-Token")
    assert bare.get("/api/takes").status_code == 200
    assert bare.get("/api/takes", headers={"Host": "attacker.example"}).status_code == 400  # hosts still checked
    from cadenza.cli import build_parser

    assert build_parser().parse_args(["serve", "--no-token"]).no_token is True
    monkeypatch.setenv("CADENZA_NO_TOKEN", "1")
    assert Settings.from_env().no_token is True


def test_the_address_and_the_warning_for_other_machines():
    from cadenza.server.serve import address, exposure_warning

    assert address(Settings(port=8123), "abc") == "http://127.0.0.1:8123/?token=abc"
    assert address(Settings(host="::1"), None) == "http://[::1]:8000/"
    assert exposure_warning(Settings()) is None and exposure_warning(Settings(host="localhost")) is None
    assert "other machines" in exposure_warning(Settings(host="0.0.0.0"))
    assert "anyone who can reach" in exposure_warning(Settings(host="192.168.1.5", no_token=True))


# ------------------------------------------------------------------------------- bounded bodies
def asgi_post(app, path: str, chunks, headers: dict) -> tuple[int, dict, int]:
    """POST ``chunks`` (no Content-Length: chunked) straight to the ASGI app; (status, JSON, bytes it read)."""
    pulled, sent = 0, []
    it = iter(chunks)

    async def receive():
        nonlocal pulled
        chunk = next(it, None)
        pulled += len(chunk or b"")
        return {"type": "http.request", "body": chunk or b"", "more_body": chunk is not None}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
             "headers": [(k.lower().encode(), v.encode()) for k, v in
                         {"host": "127.0.0.1:8000", "x-cadenza-token": "the-token", **headers}.items()]}
    asyncio.run(asyncio.wait_for(app(scope, receive, send), 60))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body or b"{}"), pulled


def test_a_huge_json_body_is_413_before_it_is_read(client, app):
    junk = json.dumps({f"key{k}": k for k in range(1_000_000)}).encode()  # 16 MB of unknown keys
    t0 = time.perf_counter()
    r = client.post("/api/generate", content=junk, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "body_bytes" in detail(r)
    assert time.perf_counter() - t0 < 1.0
    # chunked (no Content-Length): read no further than the limit
    t0 = time.perf_counter()
    status, body, pulled = asgi_post(app, "/api/generate", (junk[k:k + 65536] for k in range(0, len(junk), 65536)),
                                     {"content-type": "application/json"})
    assert status == 413 and "body_bytes" in body["detail"]
    assert pulled < 1_100_000 and time.perf_counter() - t0 < 1.0
    # just under the limit: one line, at once (not one error per unknown key)
    t0 = time.perf_counter()
    r = client.post("/api/generate", content=junk[:900_000].rsplit(b",", 1)[0] + b"}",
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "unknown fields 'key0'" in detail(r) and "more" in detail(r)
    assert time.perf_counter() - t0 < 1.0


def test_a_chunked_upload_is_cut_at_the_limit(client, app):
    head = (b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="big.mid"\r\n'
            b"Content-Type: audio/midi\r\n\r\nMThd")
    filler = (b"\0" * 65536 for _ in range(300))  # 20 MB, never all read
    t0 = time.perf_counter()
    status, body, pulled = asgi_post(app, "/api/takes/upload", iter([head, *filler]),
                                     {"content-type": "multipart/form-data; boundary=XyZ"})
    assert status == 413 and "0.2 MB" in body["detail"]
    assert pulled < 400_000 and time.perf_counter() - t0 < 1.0
    r = client.post("/api/takes/upload", files={"file": ("big.mid", b"MThd" + b"\0" * 5_000_000, "audio/midi")})
    assert r.status_code == 413 and "MB" in detail(r)


# ------------------------------------------------------------------------------- bounded work
def test_bar_ranges_are_checked_before_a_job_is_queued(client):
    take = client.post("/api/takes/text", json={"notes": "C4 D4 E4 F4 | " * 40}).json()
    assert take["bars"] == 40
    for bars, words in (([1, 1_000_000_000], "outside the piece"), ([39, 41], "outside the piece"),
                        ([1, 40], "at most 32 bars"), ([0, 2], "from bar 1")):
        t0 = time.perf_counter()
        r = client.post("/api/regenerate", json={"take": take["id"], "bars": bars})
        assert r.status_code == 422 and words in detail(r) and "\n" not in detail(r), (bars, r.text)
        assert time.perf_counter() - t0 < 1.0
    assert client.get("/api/health").json()["queue"] == {"waiting": 0, "running": 0, "max": 64}
    assert client.post("/api/generate", json={"bars": 1_000_000_000}).status_code == 422


def test_a_cancelled_job_ends_cancelled_and_stops_using_the_cpu(client):
    job = client.post("/api/generate", json={"seconds": 300, "random_seed": 1}).json()
    t0 = time.time()
    while client.get(f"/api/jobs/{job['id']}").json()["notes"] < 3 and time.time() - t0 < 60:
        time.sleep(0.02)
    r = client.delete(f"/api/jobs/{job['id']}")
    assert r.json()["status"] == "cancelled"  # the answer already says so: the work has stopped
    assert events(client, job["id"])[-1][0] == "cancelled"
    time.sleep(0.3)
    cpu = time.process_time()
    time.sleep(1.0)
    assert time.process_time() - cpu < 0.4  # a running generation takes a whole core


class Slow:
    """A 'model' whose work never calls back: only its forward passes can stop it."""

    def __init__(self):
        self.model = torch.nn.Linear(4, 4)

    def run(self, seconds: float):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.model(torch.zeros(1, 4))
            time.sleep(0.005)
        return {}


def test_a_job_stops_when_cancelled_or_past_its_time_even_without_callbacks():
    q = JobQueue(4, 1, 100, {"model": lambda name: Slow()}, job_seconds=0.5)
    try:
        job = q.submit("surprise", lambda job, ctx: ctx.get("model", None).run(10))
        while job.status == "queued":
            time.sleep(0.01)
        time.sleep(0.1)
        t0 = time.perf_counter()
        assert q.cancel(job, wait=2.0).status == "cancelled" and time.perf_counter() - t0 < 1.0
        job = q.submit("surprise", lambda job, ctx: ctx.get("model", None).run(10))
        t0 = time.perf_counter()
        while job.status in ("queued", "running"):
            time.sleep(0.01)
        assert job.status == "error" and job.error == "stopped: took longer than 0.5 s (limit job_seconds)"
        assert time.perf_counter() - t0 < 2.0
    finally:
        q.shutdown()


def test_a_generation_past_job_seconds_stops_with_one_line(tiny_model_dir):
    with studio_client(create_app(Settings(model=str(tiny_model_dir), workers=1, job_seconds=0.5))) as c:
        j = c.post("/api/generate", json={"seconds": 300, "random_seed": 3}).json()
        done = finish(c, j["id"], timeout=30)
        assert done["status"] == "error" and done["error"] == "stopped: took longer than 0.5 s (limit job_seconds)"


def test_a_rendering_past_job_seconds_stops_with_one_line(tiny_model_dir):
    """README: renderings (sheet music, WAV) stop after job_seconds too: their child process is killed."""
    with studio_client(create_app(Settings(model=str(tiny_model_dir), workers=1, job_seconds=0.3))) as c:
        heavy = make_score([(48 + k % 36, k / 8, 0.125, 80) for k in range(4000)]).dumps_midi()
        take = c.post("/api/takes/upload", files={"file": ("heavy.mid", heavy, "audio/midi")}).json()
        t0 = time.monotonic()
        for url in (f"/api/takes/{take['id']}/sheet", f"/api/takes/{take['id']}/file.wav"):
            r = c.get(url)
            assert r.status_code == 503 and detail(r) == "stopped: took longer than 0.3 s (limit job_seconds)", url
        assert time.monotonic() - t0 < 10


# --------------------------------------------------------------------------------- a real server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def heavy_midi() -> bytes:
    """2,000 notes in 8 parts at random times: MusicXML takes music21 over half a minute."""
    random.seed(0)
    s = symusic.Score(480)
    s.tempos.append(symusic.Tempo(0, qpm=120))
    for k in range(8):
        tr = symusic.Track(f"t{k}", k, False)
        for _ in range(250):
            tr.notes.append(symusic.Note(random.randint(0, 480 * 1000), random.randint(1, 2000),
                                         random.randint(40, 90), 80))
        s.tracks.append(tr)
    return s.dumps_midi()


def children(pid: int) -> set[int]:
    out = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        out |= {int(x) for x in (task / "children").read_text().split()}
    return out


@pytest.fixture()
def server(tiny_model_dir, tmp_path):
    """``cadenza serve`` in a subprocess; yields (process, base URL, token)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cadenza.cli", "serve", "--port", str(port), "--workers", "1",
                             "--model", str(tiny_model_dir), "--results", str(tmp_path / "results")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = proc.stdout.readline()
        m = re.search(r"(http://127\.0\.0\.1:\d+)/\?token=([\w-]+)", line)
        assert m, line + proc.stdout.read() if proc.poll() is not None else line
        base, token = m[1], m[2]
        threading.Thread(target=proc.stdout.read, daemon=True).start()  # never a full pipe
        t0 = time.time()
        while True:
            try:
                httpx.get(base + "/api/health", headers={"X-Cadenza-Token": token}, timeout=1)
                break
            except httpx.TransportError:
                assert time.time() - t0 < 60 and proc.poll() is None, "the server did not start"
                time.sleep(0.1)
        yield proc, base, token
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def test_health_answers_while_heavy_requests_run(server):
    proc, base, token = server
    c = httpx.Client(base_url=base, headers={"X-Cadenza-Token": token}, timeout=30)
    assert httpx.get(base + "/api/health").status_code == 401
    r = c.post("/api/takes/upload", files={"file": ("heavy.mid", heavy_midi(), "audio/midi")})
    assert r.status_code == 201, r.text
    take = r.json()["id"]

    def leave_early(path):  # asks for sheet music / MusicXML, then goes away after 2 s
        try:
            httpx.get(base + path, headers={"X-Cadenza-Token": token}, timeout=2)
        except httpx.TimeoutException:
            pass

    def junk(n):
        try:
            c.post("/api/generate", content=json.dumps({f"k{k}": k for k in range(n)}),
                   headers={"Content-Type": "application/json"})
        except httpx.TransportError:
            pass

    work = [threading.Thread(target=leave_early, args=(f"/api/takes/{take}/{p}",), daemon=True)
            for p in ("sheet", "file.musicxml")]
    work += [threading.Thread(target=junk, args=(n,), daemon=True) for n in (800_000, 50_000)]
    for t in work:
        t.start()
    t0 = time.time()
    while len(children(proc.pid)) < 2 and time.time() - t0 < 5:
        time.sleep(0.05)
    assert len(children(proc.pid)) == 2  # the renderings run in child processes
    slowest = 0.0
    for _ in range(10):
        t0 = time.perf_counter()
        assert c.get("/api/health").status_code == 200
        slowest = max(slowest, time.perf_counter() - t0)
        time.sleep(0.15)
    # not a speed figure (bench/robustness.py prints health_ms_max_during_heavy): the renderings take
    # about 35 s, so a blocked event loop would keep health waiting far longer than this on any machine
    assert slowest < 10.0
    for t in work:
        t.join(timeout=30)
    t0 = time.time()  # the clients left: their renderings are killed
    while children(proc.pid) and time.time() - t0 < 5:
        time.sleep(0.1)
    assert not children(proc.pid)


def test_sigterm_stops_the_server_within_5_s(server):
    proc, base, token = server
    c = httpx.Client(base_url=base, headers={"X-Cadenza-Token": token}, timeout=30)
    job = c.post("/api/generate", json={"seconds": 300}).json()
    c.post("/api/generate", json={"seconds": 300})  # a second one waits in the queue
    streamed = threading.Event()

    def follow():  # an event stream held open, as the page holds one
        try:
            with c.stream("GET", f"/api/jobs/{job['id']}/events") as s:
                for line in s.iter_lines():
                    if line.startswith("event: note"):
                        streamed.set()
        except httpx.HTTPError:
            pass

    threading.Thread(target=follow, daemon=True).start()
    assert streamed.wait(60)
    t0 = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=15)
    assert time.perf_counter() - t0 < 5.0
