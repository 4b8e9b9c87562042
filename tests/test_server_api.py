"""The studio's JSON API, endpoint by endpoint, through FastAPI's TestClient (the real app, real
models: the tiny random one for speed, the bundled chorale model for harmonizing)."""

from __future__ import annotations

import json
import time

import pytest
import symusic
from fastapi.testclient import TestClient

from cadenza.server.app import create_app
from cadenza.server.settings import Settings
from conftest import make_score


def studio_client(app) -> TestClient:
    """A client as the studio's own page is: one of its host names, and the run's token."""
    return TestClient(app, base_url="http://127.0.0.1:8000", headers={"X-Cadenza-Token": app.state.token or ""})


@pytest.fixture(scope="module")
def client(tiny_model_dir, tmp_path_factory):
    settings = Settings(model=str(tiny_model_dir), results_dir=tmp_path_factory.mktemp("results"),
                        upload_bytes=200_000, upload_notes=500, upload_seconds=120, max_bars=32,
                        workers=1)
    with studio_client(create_app(settings)) as c:
        yield c


def midi_bytes(score: symusic.Score) -> bytes:
    return score.dumps_midi()


def melody_take(client) -> dict:
    r = client.post("/api/takes/text", json={"notes": "E4 D4 C4 D4 | E4 E4 E4*2 | D4 D4 D4*2 | E4 G4 G4*2"})
    assert r.status_code == 201, r.text
    return r.json()


def events(client, job_id: str) -> list[tuple[str, dict]]:
    out = []
    with client.stream("GET", f"/api/jobs/{job_id}/events") as s:
        assert s.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in s.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                out.append((name, json.loads(line[6:])))
    return out


def finish(client, job_id: str, timeout: float = 120) -> dict:
    t0 = time.time()
    while time.time() - t0 < timeout:
        j = client.get(f"/api/jobs/{job_id}").json()
        if j["status"] not in ("queued", "running"):
            return j
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def detail(r) -> str:
    return r.json()["detail"]


# ------------------------------------------------------------------------------------ meta
def test_health_options_and_openapi(client, tiny_model_dir):
    assert client.get("/api/health").json()["status"] == "ok"
    o = client.get("/api/options").json()
    assert o["default_model"] == str(tiny_model_dir)
    assert {"chorale", "arrange", "small"} <= {m["name"] for m in o["models"]}
    assert "Acoustic Grand Piano" in o["instruments"] and "drums" in o["instruments"]
    assert o["limits"]["bars"] == 32 and o["limits"]["upload_bytes"] == 200_000
    paths = client.get("/openapi.json").json()["paths"]
    for p in ("/api/health", "/api/options", "/api/takes/upload", "/api/takes/text", "/api/takes",
              "/api/takes/{take_id}", "/api/takes/{take_id}/file.{kind}", "/api/takes/{take_id}/sheet",
              "/api/generate", "/api/regenerate", "/api/harmonize", "/api/jobs/{job_id}",
              "/api/jobs/{job_id}/events", "/api/learn", "/api/surprise"):
        assert p in paths, p


# ----------------------------------------------------------------------------------- takes
def test_upload_midi_gives_its_notes(client, melody):
    r = client.post("/api/takes/upload", files={"file": ("tune.mid", midi_bytes(melody), "audio/midi")})
    assert r.status_code == 201, r.text
    t = r.json()
    assert t["kind"] == "upload" and t["label"] == "tune.mid" and t["meter"] == "4/4" and t["bars"] == 2
    assert [n["pitch"] for n in t["notes"]] == [64, 62, 60, 62, 64, 64, 64]
    assert t["notes"][1]["start"] == 0.5 and t["notes"][1]["bar"] == 1 and t["notes"][4]["bar"] == 2
    assert t["bar_starts"] == [0.0, 2.0, 4.0]
    assert client.get(f"/api/takes/{t['id']}").json() == t
    assert t["id"] in [x["id"] for x in client.get("/api/takes").json()]
    assert "notes" not in client.get("/api/takes").json()[0]


def test_upload_abc(client):
    abc = b"X:1\nT:Tune\nM:3/4\nL:1/4\nK:G\nGAB|d2B|\n"
    r = client.post("/api/takes/upload", files={"file": ("tune.abc", abc, "text/plain")})
    assert r.status_code == 201, r.text
    assert r.json()["meter"] == "3/4" and len(r.json()["notes"]) == 5


@pytest.mark.parametrize("name, data, status, words", [
    ("bad.mid", b"MThd this is not a midi file at all", 400, "bad.mid"),
    ("empty.mid", b"", 400, "empty"),
    ("notes.txt", b"C D E", 400, "not a score file"),
    ("big.mid", b"MThd" + b"\0" * 300_000, 413, "MB"),
])
def test_bad_uploads_are_4xx_with_a_message(client, name, data, status, words):
    r = client.post("/api/takes/upload", files={"file": (name, data, "application/octet-stream")})
    assert r.status_code == status, r.text
    assert words in detail(r)


def test_upload_limits_on_notes_and_duration(client):
    many = make_score([(60 + k % 12, k * 0.25, 0.25, 80) for k in range(600)])
    r = client.post("/api/takes/upload", files={"file": ("many.mid", midi_bytes(many), "audio/midi")})
    assert r.status_code == 413 and "600 notes" in detail(r)
    long = make_score([(60, 0, 1, 80), (62, 400, 1, 80)])  # 200 s at 120 bpm
    r = client.post("/api/takes/upload", files={"file": ("long.mid", midi_bytes(long), "audio/midi")})
    assert r.status_code == 413 and "minutes" in detail(r)


def test_upload_without_a_file_field(client):
    r = client.post("/api/takes/upload", data={"x": "1"})
    assert r.status_code == 400 and "no file" in detail(r)


def test_typed_notes_and_chords(client):
    t = melody_take(client)
    assert t["kind"] == "typed" and t["bars"] == 4 and t["notes"][0]["name"] == "E4"
    r = client.post("/api/takes/text", json={"chords": "Am F C G", "meter": "3/4", "tempo": 90})
    assert r.status_code == 201 and r.json()["meter"] == "3/4" and r.json()["tempo"] == 90
    for body, words in [({"notes": "C4 H9"}, "H9"), ({}, "notes or chords"), ({"notes": "C4", "chords": "C"}, "one of"),
                        ({"chords": "C Xmaj13b"}, "Xmaj13b"), ({"notes": "C4", "meter": "3/5"}, "meter"),
                        ({"notes": "C4", "tempo": 1001}, "tempo"), ({"notes": "C4", "instrument": "kazooo"}, "kazooo")]:
        r = client.post("/api/takes/text", json=body)
        assert r.status_code == 422 and words in detail(r), (body, r.text)


def test_files_and_sheet(client, melody, tmp_path):
    t = client.post("/api/takes/upload", files={"file": ("m.mid", midi_bytes(melody), "audio/midi")}).json()
    r = client.get(f"/api/takes/{t['id']}/file.mid")
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    (tmp_path / "x.mid").write_bytes(r.content)
    assert symusic.Score(str(tmp_path / "x.mid")).note_num() == 7
    for kind, head in (("musicxml", b"<?xml"), ("abc", b"X:"), ("wav", b"RIFF")):
        r = client.get(f"/api/takes/{t['id']}/file.{kind}")
        assert r.status_code == 200 and r.content.startswith(head), kind
    pages = client.get(f"/api/takes/{t['id']}/sheet").json()["pages"]
    assert len(pages) >= 1 and pages[0].lstrip().startswith(("<svg", "<?xml"))
    assert client.get(f"/api/takes/{t['id']}/file.exe").status_code == 404
    assert client.get("/api/takes/tffffffffffff").status_code == 404
    assert client.get("/api/takes/..%2F..%2Fetc%2Fpasswd").status_code == 404


def test_server_serves_nothing_outside_its_files(client):
    for path in ("/static/../app.py", "/static/%2e%2e/app.py", "/static/..%2Fapp.py", "/../../etc/passwd",
                 "/api/takes/../../etc/passwd"):
        r = client.get(path)
        assert r.status_code == 404 and b"import" not in r.content and b"root:" not in r.content, path


# ------------------------------------------------------------------------------------ jobs
@pytest.mark.parametrize("body, words", [
    ({"bars": 0}, "bars"), ({"bars": 33}, "at most 32"), ({"seconds": 901}, "seconds"),
    ({"bars": 4, "seconds": 4}, "not both"),
    ({"temperature": 0}, "temperature"), ({"top_p": 1.5}, "top_p"), ({"style": "zydeco"}, "zydeco"),
    ({"model": "nope"}, "unknown model"), ({"model": "chorale"}, "unknown model"), ({"instruments": ["kazooo"]}, "kazooo"),
    ({"key": "D minor"}, "no key control"), ({"meter": "7"}, "meter"), ({"tempo": 5}, "tempo"), ({"colour": "red"}, "colour"),
    ({"random_seed": -1}, "random_seed"), ({"chords": "| Am | F |"}, "cannot follow chords"), ({"repeat": 0}, "repeat"),
])
def test_generate_rejects_bad_parameters(client, body, words):
    r = client.post("/api/generate", json=body)
    assert r.status_code == 422 and words in detail(r), r.text


def test_generate_streams_notes_then_the_take(client):
    seed = melody_take(client)
    r = client.post("/api/generate", json={"seed_take": seed["id"], "bars": 4, "style": "folk", "random_seed": 3,
                                           "instruments": ["violin"], "meter": "4/4", "tempo": 100})
    assert r.status_code == 202 and r.json()["status"] in ("queued", "running")
    evs = events(client, r.json()["id"])
    names = [n for n, _ in evs]
    assert names[0] == "status" and names[-1] == "done" and "note" in names
    streamed = [d for n, d in evs if n == "note"]
    done = evs[-1][1]
    take = done["take"]
    assert done["job"]["status"] == "done" and take["parent"] == seed["id"] and take["kind"] == "generate"
    assert 4 < max(n["bar"] for n in take["notes"]) <= 8 and all(n["program"] == 40 for n in streamed)
    key = lambda n: (n["pitch"], round(n["beat"], 3), n["program"])  # noqa: E731  (the tempo changed: beats stay)
    # the take holds the seed's notes and exactly the streamed ones
    assert sorted(map(key, take["notes"])) == sorted(map(key, seed["notes"] + streamed))
    assert client.get(f"/api/jobs/{r.json()['id']}").json()["take"] == take["id"]
    # a finished job replays its events to a late reader
    assert [n for n, _ in events(client, r.json()["id"])] == names


def test_cancel_running_and_queued_jobs(client):
    first = client.post("/api/generate", json={"seconds": 300, "random_seed": 1}).json()
    second = client.post("/api/generate", json={"bars": 4, "random_seed": 2}).json()
    t0 = time.time()
    while client.get(f"/api/jobs/{first['id']}").json()["status"] == "queued" and time.time() - t0 < 30:
        time.sleep(0.02)
    assert client.get(f"/api/jobs/{second['id']}").json()["status"] == "queued"
    assert client.delete(f"/api/jobs/{second['id']}").json()["status"] == "cancelled"
    client.delete(f"/api/jobs/{first['id']}")
    assert finish(client, first["id"])["status"] == "cancelled"
    assert events(client, first["id"])[-1][0] == "cancelled"
    assert events(client, second["id"])[-1][0] == "cancelled"
    assert client.delete("/api/jobs/jffffffffffff").status_code == 404
    assert client.get("/api/jobs/nonsense").status_code == 404


def test_full_queue_answers_429(tiny_model_dir):
    with studio_client(create_app(Settings(model=str(tiny_model_dir), max_queue=1, workers=1))) as c:
        a = c.post("/api/generate", json={"seconds": 300}).json()
        t0 = time.time()
        while c.get(f"/api/jobs/{a['id']}").json()["status"] == "queued" and time.time() - t0 < 30:
            time.sleep(0.02)
        assert c.post("/api/generate", json={"seconds": 300}).status_code == 202
        r = c.post("/api/generate", json={"bars": 2})
        assert r.status_code == 429 and "busy" in detail(r)
        assert c.get("/api/health").json()["queue"]["waiting"] == 1
        c.delete(f"/api/jobs/{a['id']}")


def test_regenerate_bars_keeps_the_rest(client):
    seed = melody_take(client)
    j = client.post("/api/generate", json={"seed_take": seed["id"], "bars": 4, "random_seed": 5}).json()
    old = client.get(f"/api/takes/{finish(client, j['id'])['take']}").json()
    for body, status, words in [({"bars": [0, 2]}, 422, "from bar 1"), ({"bars": [4, 3]}, 422, "first <= last"),
                                ({"bars": [40, 41]}, 422, "outside the piece"), ({"bars": [3]}, 422, "bars"),
                                ({"temperature": -1, "bars": [3, 4]}, 422, "temperature")]:
        r = client.post("/api/regenerate", json={"take": old["id"], **body})
        assert r.status_code == status and words in detail(r), r.text
    assert client.post("/api/regenerate", json={"take": "tffffffffffff", "bars": [3, 4]}).status_code == 404
    j = client.post("/api/regenerate", json={"take": old["id"], "bars": [3, 4], "random_seed": 9}).json()
    evs = events(client, j["id"])
    new = evs[-1][1]["take"]
    assert new["parent"] == old["id"] and new["kind"] == "regenerate"
    key = lambda n: (n["pitch"], n["start"], n["duration"], n["velocity"], n["program"])  # noqa: E731
    outside = lambda t: sorted(key(n) for n in t["notes"] if n["bar"] not in (3, 4))  # noqa: E731
    assert outside(new) == outside(old)
    inside = [n for n in new["notes"] if n["bar"] in (3, 4)]
    assert inside and all(n["start"] + n["duration"] <= new["bar_starts"][4] + 1e-6 for n in inside)
    assert {n["bar"] for _, n in evs if _ == "note"} <= {3, 4}


def test_harmonize_a_typed_melody_then_one_beat(client):
    seed = melody_take(client)
    assert client.post("/api/harmonize", json={"take": seed["id"], "regenerate": "beat three"}).status_code == 422
    j = client.post("/api/harmonize", json={"take": seed["id"], "random_seed": 1}).json()
    done = events(client, j["id"])[-1]
    assert done[0] == "done", done
    h = done[1]["take"]
    assert len(h["tracks"]) == 4 and h["kind"] == "harmonize"
    j = client.post("/api/harmonize", json={"take": h["id"], "regenerate": "2.1-2.1", "random_seed": 2}).json()
    h2 = events(client, j["id"])[-1][1]["take"]
    def sounding(t):  # the pitches sounding at each sixteenth (120 bpm) outside beat 2.1
        steps = {}
        for n in t["notes"]:
            for k in range(round(n["start"] / 0.125), round((n["start"] + n["duration"]) / 0.125)):
                if not 16 <= k < 20:
                    steps.setdefault(k, []).append(n["pitch"])
        return {k: sorted(v) for k, v in steps.items()}

    assert sounding(h2) == sounding(h)
    # a melody cannot be "regenerated" in part: the message says why
    j = client.post("/api/harmonize", json={"take": seed["id"], "regenerate": "2-2"}).json()
    name, data = events(client, j["id"])[-1]
    assert name == "error" and "four-part" in data["message"]


def test_learn_steps_and_surprise(client):
    seed = melody_take(client)
    r = client.post("/api/learn", json={"seed_take": seed["id"], "notes": 5, "top": 4, "random_seed": 1})
    assert r.status_code == 200, r.text
    steps = r.json()["steps"]
    assert len(steps) == 5
    for s in steps:
        ps = [c["p"] for c in s["candidates"]]
        assert 1 <= len(ps) <= 4 and ps == sorted(ps, reverse=True) and 0 < sum(ps) <= 1 + 1e-6
        assert s["note"]["pitch"] == s["chosen"]["pitch"] and 0 < s["chosen"]["p"] <= 1
        # new notes follow the seed: none starts before its last onset (one may start inside its last bar)
        assert s["note"]["start"] >= max(n["start"] for n in seed["notes"]) - 1e-6
    for body, words in [({"notes": 0}, "notes"), ({"notes": 65}, "notes"), ({"top": 0}, "top"), ({"style": "zz"}, "zz")]:
        r = client.post("/api/learn", json=body)
        assert r.status_code == 422 and words in detail(r)
    r = client.post("/api/surprise", json={"take": seed["id"]})
    assert r.status_code == 200
    sur = r.json()
    assert [n["pitch"] for n in sur["notes"]] == [n["pitch"] for n in seed["notes"]]
    assert all(n["bits"] > 0 for n in sur["notes"]) and sur["mean_bits"] > 0
    assert client.post("/api/surprise", json={"take": "tffffffffffff"}).status_code == 404
    assert client.post("/api/surprise", json={"take": seed["id"], "style": "zz"}).status_code == 422
def test_page_is_served(client):
    r = client.get("/")
    assert r.status_code == 200 and "<html" in r.text.lower()


def test_chords_and_key_with_a_control_model(tmp_path):
    import torch

    from cadenza.model import ModelConfig, Transformer, save_model_folder
    from cadenza.tokenizers import RemiSpec, RemiTokenizer

    tok = RemiTokenizer(RemiSpec(controls=["key", "instruments", "chords", "infill"]))
    torch.manual_seed(0)
    m = Transformer(ModelConfig(vocab_size=tok.vocab_size, d_model=32, n_layers=1, n_heads=4, d_ff=64, max_seq_len=256))
    save_model_folder(tmp_path / "ctl", m, {"name": "ctl", "family": "remi-lm", "tokenizer": tok.to_config(),
                                            "styles": tok.styles, "license": "test", "default_style": "pop"})
    with studio_client(create_app(Settings(model=str(tmp_path / "ctl"), workers=1))) as c:
        info = next(x for x in c.get("/api/options").json()["models"] if x["name"] == str(tmp_path / "ctl"))
        assert info["key_control"] and info["chord_control"]
        r = c.post("/api/generate", json={"chords": "| Am | F | C | G |", "repeat": 2, "key": "A minor",
                                          "instruments": ["flute"], "random_seed": 1})
        assert r.status_code == 202, r.text
        done = events(c, r.json()["id"])[-1]
        assert done[0] == "done" and max(n["bar"] for n in done[1]["take"]["notes"]) <= 8
        assert all(n["program"] == 73 for n in done[1]["take"]["notes"])
        r = c.post("/api/generate", json={"chords": "| Am | Qx |"})
        assert r.status_code == 422 and "bar 2" in r.json()["detail"]


def test_jobs_say_their_queue_position_and_wait(client):
    """docs/studio-api.md: `position` (jobs ahead while queued) and `waited_s` (null until it starts)."""
    jobs = [client.post("/api/generate", json={"bars": 32, "random_seed": k}).json() for k in range(3)]
    assert jobs[2]["status"] == "queued" and jobs[2]["waited_s"] is None and jobs[2]["position"] >= 1
    done = [finish(client, j["id"]) for j in jobs]
    assert all(j["status"] == "done" and j["position"] == 0 and j["waited_s"] >= 0 for j in done)
    assert done[2]["waited_s"] >= done[0]["waited_s"]  # one worker: the third waited for the first two


def test_done_carries_messages_for_the_user(client):
    """docs/studio-api.md: `done` carries `messages`, e.g. a harmonization's transposition."""
    low = client.post("/api/takes/text", json={"notes": "C3 D3 E3 F3 | G3*4"}).json()
    j = client.post("/api/harmonize", json={"take": low["id"], "random_seed": 1}).json()
    kind, body = events(client, j["id"])[-1]
    assert kind == "done" and any("transpos" in m for m in body["messages"]), body["messages"]


def test_options_list_meters_keys_and_defaults(client):
    """docs/studio-api.md: options hold meters, keys, limits and the generate defaults."""
    o = client.get("/api/options").json()
    assert "4/4" in o["meters"] and "C major" in o["keys"] and "A minor" in o["keys"]
    assert {"upload_bytes", "upload_notes", "upload_seconds", "bars", "seconds", "queue"} <= set(o["limits"])
    assert o["defaults"]["bars"] == 8 and o["defaults"]["top_p"] == 0.95
