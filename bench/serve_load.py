"""The studio under load: many clients generating at once on this machine.

    python bench/serve_load.py [--clients 20] [--bars 8] [--requests 200] [--model NAME|DIR]

Starts the real server (``cadenza serve``, uvicorn, the bundled default model, default settings:
two generation workers, a queue of 64) in a subprocess, then:

- ``--clients`` clients at once each POST /api/generate (``--bars`` bars, their own random seed) and
  follow the job's Server-Sent Events to the end: ``requests``, ``completed``,
  ``queued_then_completed`` (jobs that waited over 0.1 s for a worker, then finished),
  ``errors_5xx`` (must be 0), ``errors_4xx``, ``first_note_p50_ms`` / ``first_note_p95_ms`` (from
  the POST to the first streamed note, queueing included), ``burst_wall_s``.
- ``--requests`` more short jobs (2 bars, 10 clients at a time, each also fetching its take and
  its MIDI file): the server's resident memory before and after, ``rss_growth_mb``, and half-way
  (``rss_mid_mb``) to show whether it levels off.

Prints one ``name: value`` line per figure (progress on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np

TOKEN = secrets.token_urlsafe(16)  # the studio's per-run token, chosen here and given to it (CADENZA_TOKEN)
HEADERS = {"X-Cadenza-Token": TOKEN}


def emit(name: str, value) -> None:
    print(f"{name}: {value:.4f}" if isinstance(value, float) else f"{name}: {value}", flush=True)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def one_job(base: str, body: dict, fetch: bool = False) -> dict:
    """POST a generation, follow its events; what happened and when."""
    out = {"status": None, "first_note_ms": None, "queued": False, "done": False}
    t0 = time.perf_counter()
    with httpx.Client(base_url=base, timeout=600, headers=HEADERS) as c:
        r = c.post("/api/generate", json=body)
        out["status"] = r.status_code
        if r.status_code != 202:
            return out
        job = r.json()
        name = None
        with c.stream("GET", f"/api/jobs/{job['id']}/events") as s:
            for line in s.iter_lines():
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    data = json.loads(line[6:])
                    if name == "status" and (data.get("waited_s") or 0) > 0.1:
                        out["queued"] = True  # it waited for a worker
                    elif name == "note" and out["first_note_ms"] is None:
                        out["first_note_ms"] = 1000 * (time.perf_counter() - t0)
                    elif name == "done":
                        out["done"] = True
                        take = data["take"]["id"]
                    elif name in ("error", "cancelled"):
                        out["error"] = data
        if fetch and out["done"]:
            for path in (f"/api/takes/{take}", f"/api/takes/{take}/file.mid"):
                r = c.get(path)
                out.setdefault("fetch_status", []).append(r.status_code)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--bars", type=int, default=8)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--model", help="model name or folder (default: the bundled default)")
    a = ap.parse_args()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "cadenza.cli", "serve", "--port", str(port)] + (["--model", a.model] if a.model else [])
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "PYTHONUNBUFFERED": "1", "CADENZA_TOKEN": TOKEN})
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(server.stdout), daemon=True).start()
    try:
        t0 = time.time()
        while True:
            try:
                if httpx.get(base + "/api/health", timeout=1, headers=HEADERS).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.time() - t0 > 120:
                raise SystemExit("the server did not start:\n" + "".join(lines))
            time.sleep(0.2)
        emit("machine_cores", os.cpu_count())
        # warm-up: the worker loads its model on first use
        one_job(base, {"bars": 1, "random_seed": 0})

        log(f"burst: {a.clients} clients at once, {a.bars} bars each")
        t0 = time.perf_counter()
        with ThreadPoolExecutor(a.clients) as ex:
            res = list(ex.map(lambda k: one_job(base, {"bars": a.bars, "random_seed": k}), range(a.clients)))
        burst = time.perf_counter() - t0
        firsts = [r["first_note_ms"] for r in res if r["first_note_ms"] is not None]
        emit("requests", len(res))
        emit("completed", sum(r["done"] for r in res))
        emit("queued_then_completed", sum(r["done"] and r["queued"] for r in res))
        emit("errors_5xx", sum(1 for r in res if r["status"] >= 500))
        emit("errors_4xx", sum(1 for r in res if 400 <= r["status"] < 500))
        emit("first_note_p50_ms", float(np.percentile(firsts, 50)) if firsts else float("nan"))
        emit("first_note_p95_ms", float(np.percentile(firsts, 95)) if firsts else float("nan"))
        emit("burst_wall_s", burst)

        if a.requests <= 0:
            return
        log(f"memory: {a.requests} short jobs, 10 at a time")
        rss0 = rss_mb(server.pid)
        done = errors = 0
        mid = None
        with ThreadPoolExecutor(10) as ex:
            for k, r in enumerate(ex.map(lambda k: one_job(base, {"bars": 2, "random_seed": 1000 + k}, fetch=True),
                                         range(a.requests))):
                done += r["done"] and all(s == 200 for s in r.get("fetch_status", []))
                errors += r["status"] >= 500 or any(s >= 500 for s in r.get("fetch_status", []))
                if k + 1 == a.requests // 2:
                    mid = rss_mb(server.pid)
        rss1 = rss_mb(server.pid)
        emit("memory_requests", a.requests)
        emit("memory_completed", done)
        emit("memory_errors_5xx", errors)
        emit("rss_start_mb", rss0)
        emit("rss_mid_mb", mid)
        emit("rss_end_mb", rss1)
        emit("rss_growth_mb", rss1 - rss0)
        emit("rss_growth_second_half_mb", rss1 - mid)
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    main()
