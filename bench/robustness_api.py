"""The studio half of bench/robustness.py: one real ``cadenza serve`` gets every corpus file as an upload,
every route absurd JSON, huge and chunked bodies, path tricks, Host/Origin/token attacks, and has its
/api/health timed while heavy work runs. Every answer is counted (``Studio.call``); a 5xx, a dropped
connection, a job ending in "internal error" and an answer showing the canary or /etc/passwd are listed.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import robustness_cases as rc

REPO = Path(__file__).resolve().parent.parent
PASSWD = b"root:x:0:0"


def log(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


class Studio:
    """One real ``cadenza serve`` (token on, one worker, $CADENZA_MODELS with the broken folders in it) under
    the audit hook and an address-space cap, and an HTTP client that counts every answer."""

    def __init__(self, ctx: dict, args, log):
        import resource
        import socket

        self.dir, self.log, self.token = ctx["work"] / "server", log, None
        for sub in ("tmp", "results"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        roots = rc.allowed_roots(self.dir, ctx["models_root"])
        env = {**os.environ, "PYTHONPATH": str(ctx["work"] / "site"), "TMPDIR": str(self.dir / "tmp"),
               "ROBUST_AUDIT_LOG": str(self.dir / "audit.log"), "ROBUST_AUDIT_ALLOW": os.pathsep.join(roots),
               "CADENZA_MODELS": str(ctx["models_root"])}
        mem = int((args.memory_gb + 2) * (1 << 30))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cadenza", "serve",
             "--port", str(self.port), "--model", ctx["tiny"], "--workers", "1",
             "--results", str(self.dir / "results")],
            stdout=subprocess.PIPE, stderr=open(self.dir / "stderr", "wb"), env=env, cwd=self.dir, text=True,
            start_new_session=True,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (mem, mem)))
        line = self.proc.stdout.readline()
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()
        m = re.search(r"token=([\w-]+)", line)
        self.token = m[1] if m else None
        self.n, self.statuses, self.bad, self.leaks, self.rss = 0, Counter(), [], [], 0.0
        self.leak_needles = (ctx["token"].encode(), PASSWD)
        deadline = time.monotonic() + 180
        while self.call("GET", "/api/health", timeout=5, count=False)[0] != 200:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the studio did not start: {line!r}, {(self.dir / 'stderr').read_text()[-2000:]}")
            time.sleep(0.5)
        self._sampling = True
        threading.Thread(target=self._sample_rss, daemon=True).start()

    def call(self, method, path, body=b"", headers=None, timeout=60.0, chunks=None, token=True, count=True):
        """(status, body, ms); status 0 when the connection failed, -1 when no answer came in ``timeout``.
        Counts it (unless ``count`` is false); a 5xx, a failure and a leak are remembered."""
        import http.client

        h = {"Host": f"127.0.0.1:{self.port}", **({"X-Cadenza-Token": self.token} if token and self.token else {}),
             **({"Content-Type": "application/json"} if method == "POST" else {}), **(headers or {})}
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        t0 = time.perf_counter()
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for k, v in h.items():
                if v is not None:
                    conn.putheader(k, v)
            length = ("Transfer-Encoding", "chunked") if chunks is not None else ("Content-Length", str(len(body)))
            conn.putheader(*length)
            conn.endheaders()
            try:
                for c in ([] if chunks is None else chunks):
                    conn.send(b"%x\r\n%s\r\n" % (len(c), c))
                conn.send(b"0\r\n\r\n" if chunks is not None else body)
            except OSError:  # the server answered and closed early (a 413)
                pass
            resp = conn.getresponse()
            status, data = resp.status, resp.read()
        except TimeoutError:  # the bench gave up waiting (timeout): counted apart from a dropped connection
            status, data = -1, f"no answer in {timeout:g} s".encode()
        except (OSError, http.client.HTTPException, ValueError) as e:
            status, data = 0, f"{type(e).__name__}: {e}".encode()
        finally:
            conn.close()
        ms = (time.perf_counter() - t0) * 1000
        if not count:
            return status, data, ms
        self.n += 1
        self.statuses[status] += 1
        if status >= 500 or status <= 0:
            self.bad.append(f"{status if status >= 0 else 'gave up'} {method} {path[:120]}: {data[:300]!r}")
        self.leaks += [f"{method} {path[:120]} answered {n[:10]!r}" for n in self.leak_needles if n in data]
        return status, data, ms

    def post(self, path, obj, **kw):
        return self.call("POST", path, obj if isinstance(obj, bytes) else json.dumps(obj).encode(), **kw)

    def _sample_rss(self):
        """The largest VmHWM of the server and its children (the renderers), every 0.5 s."""
        while self._sampling:
            pids, parent = {self.proc.pid}, {}
            for d in Path("/proc").glob("[0-9]*"):
                try:
                    parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
            for pid in sorted(parent):
                if parent[pid] in pids:
                    pids.add(pid)
            for pid in pids:
                try:
                    hwm = [ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines() if ln.startswith("VmHWM")]
                    self.rss = max(self.rss, int(hwm[0].split()[1]) / 1024) if hwm else self.rss
                except OSError:
                    continue
            time.sleep(0.5)

    def stop(self) -> dict:
        self._sampling = False
        alive = self.proc.poll() is None
        self.proc.terminate()
        try:
            code = self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        try:  # renderers it left behind
            os.killpg(self.proc.pid, 9)
        except OSError:
            pass
        err = (self.dir / "stderr").read_text(errors="replace")
        audit = self.dir / "audit.log"
        lines = audit.read_text(errors="replace").splitlines() if audit.is_file() else []
        watched = sum(ln.endswith("\t<hooked>") for ln in lines)  # the server and each renderer child
        paths = sorted({ln.split("\t", 1)[1] for ln in lines if "\t" in ln and not ln.endswith("\t<hooked>")})
        for p in paths:
            self.log(f"[read outside] the studio opened {p}")
        for m in re.finditer(r"Traceback.*?(?=\n\S|\Z)", err, re.S):
            self.log(f"[server traceback]\n{m[0][-1500:]}")
        return {"server_alive_at_end": int(alive), "server_exit_code": code,
                "server_log_tracebacks": err.count("Traceback"),
                "server_files_outside": len(paths), "server_processes_audited": watched}


def multipart(name: str, data: bytes) -> tuple[bytes, str]:
    b = f"robust{os.urandom(8).hex()}"
    head = (f'--{b}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode("utf-8", "surrogateescape")
    return head + data + f"\r\n--{b}--\r\n".encode(), f"multipart/form-data; boundary={b}"


def upload(st: Studio, name: str, data: bytes, timeout: float = 120) -> str | None:
    body, ctype = multipart(name, data)
    status, out, _ = st.call("POST", "/api/takes/upload", body, headers={"Content-Type": ctype}, timeout=timeout)
    return json.loads(out)["id"] if status == 201 else None


ABSURD = [b"", b"null", b"[]", b'"x"', b"1e999", b"{", b'{"a":', b"\xff\xfe{}", b"[" * 50000 + b"]" * 50000,
          b'{"bars": 1, "bars": 2}', json.dumps({f"k{i}": i for i in range(40000)}).encode(),
          b'{"temperature": NaN}', b'{"seconds": Infinity}', b'{"random_seed": 1e400}']
ABSURD_FIELDS = [
    {"bars": 1e308}, {"bars": -1}, {"bars": "8"}, {"bars": True}, {"bars": 1000000000}, {"seconds": 1e9},
    {"seconds": 1e-300}, {"temperature": 0}, {"temperature": 1e308}, {"top_p": -1}, {"random_seed": -1},
    {"random_seed": 2 ** 64}, {"tempo": 0}, {"meter": "0/0"}, {"meter": "99/3"}, {"key": "H"}, {"key": "C\nx"},
    {"instruments": ["kazoo"]}, {"instruments": [1, 2]}, {"instruments": "piano"}, {"instruments": ["piano"] * 10000},
    {"chords": "Xyz"}, {"chords": "C " * 999}, {"repeat": 1000000000}, {"model": "../../etc/passwd"}, {"model": "/etc"},
    {"style": "\u0000"}, {"seed_take": "t000000000000"}, {"seed_take": "../../etc/passwd"}, {"take": "tzzzz"},
    {"bars": [1, 1000000000]}, {"bars": [0, 0]}, {"bars": [5, 1]}, {"bars": [-1, 2]}, {"bars": [1]},
    {"notes": "C4/0"}, {"notes": "C4*99999999"}, {"notes": 5}, {"notes": 1000}, {"notes": "C4 " * 1666},
    {"top": 1000000}, {"regenerate": "1-999999999"}, {"regenerate": "tenor:0.0-0.0"}, {"chords": "| " * 999}]
ROUTES = ["/api/takes/text", "/api/generate", "/api/regenerate", "/api/harmonize", "/api/learn", "/api/surprise"]


def absurd_bodies(st: Studio, take: str | None, jobs: list) -> None:
    for route in ROUTES:
        for body in ABSURD:
            st.post(route, body)
        for fields in ABSURD_FIELDS:
            for obj in ([fields, {"take": take, **fields}] if take and route in ROUTES[2:4] + ROUTES[5:] else [fields]):
                status, out, _ = st.post(route, obj, timeout=120)
                if status == 202:
                    jobs.append(json.loads(out)["id"])


def take_work(st: Studio, take: str, jobs: list, quick: bool) -> None:
    kinds = ["mid", "abc"] if quick else ["mid", "abc", "musicxml", "wav"]
    for path in [f"/api/takes/{take}", *[f"/api/takes/{take}/file.{k}" for k in kinds]] + ([] if quick else
                                                                                           [f"/api/takes/{take}/sheet"]):
        st.call("GET", path, timeout=180)
    st.post("/api/surprise", {"take": take}, timeout=120)
    st.post("/api/learn", {"seed_take": take, "notes": 2}, timeout=120)
    for route, obj in (("/api/regenerate", {"take": take, "bars": [1, 1]}), ("/api/harmonize", {"take": take}),
                       ("/api/generate", {"seed_take": take, "bars": 1})):
        status, out, _ = st.post(route, obj)
        if status == 202:
            jobs.append(json.loads(out)["id"])


def finish_jobs(st: Studio, jobs: list, seconds: float) -> dict:
    """Wait for every job (cancel what is still running after ``seconds``): their final statuses."""
    deadline, final = time.monotonic() + seconds, Counter()
    for jid in jobs:
        while True:
            status, out, _ = st.call("GET", f"/api/jobs/{jid}", timeout=30)
            job = json.loads(out) if status == 200 else {"status": f"http {status}"}
            if job["status"] in ("done", "error", "cancelled") or not status == 200:
                break
            if time.monotonic() > deadline:
                st.call("DELETE", f"/api/jobs/{jid}", timeout=30)
                job["status"] = "cancelled by the bench"
                break
            time.sleep(0.3)
        final[job["status"]] += 1
        if job.get("error"):
            log(f"job {jid} ended in error: {job['error'][:200]}")
        if str(job.get("error") or "").startswith("internal error"):
            final["internal"] += 1
            st.bad.append(f"job {jid}: {job['error'][:300]}")
    return final


def big_bodies(st: Studio, quick: bool) -> None:
    big = json.dumps({"notes": "C4 " * 3_866_667}).encode()  # 11.6 MB
    st.post("/api/generate", big)
    st.call("POST", "/api/takes/text", chunks=(big[i:i + 65536] for i in range(0, len(big), 65536)))
    mb = 64 if quick else 400  # a chunked upload without Content-Length of hundreds of MB
    body, ctype = multipart("huge.mid", b"")
    head, tail = body[:body.index(b"\r\n--robust", 10)], body[body.index(b"\r\n--robust", 10):]
    t0 = time.monotonic()
    status = st.call("POST", "/api/takes/upload", headers={"Content-Type": ctype}, timeout=120,
                     chunks=iter([head, *(b"\0" * (1 << 20) for _ in range(mb)), tail]))[0]
    log(f"chunked upload of {mb} MB: {status} after {time.monotonic() - t0:.1f} s")


def path_tricks(st: Studio, take: str | None, ctx: dict) -> None:
    static = REPO / "src" / "cadenza" / "server" / "static"
    rel = os.path.relpath(ctx["canary"], static)
    t = take or "t000000000000"
    for path in ["/static/../../../../etc/passwd", "/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
                 "/static/..%2f..%2f..%2f..%2f..%2fetc%2fpasswd", "/static//etc/passwd", f"/static/{rel}",
                 "/static/" + rel.replace("../", "%2e%2e%2f"), "/api/takes/..%2f..%2fetc%2fpasswd",
                 f"/api/takes/{t}/file.mid/../../../../etc/passwd",
                 f"/api/takes/{t}/file.%2e%2e%2f%2e%2e%2fetc%2fpasswd",
                 f"/api/takes/{t}/file.mid%00", "/api/jobs/..%2f..%2fetc%2fpasswd", "/%2e%2e/%2e%2e/etc/passwd",
                 "//etc/passwd", f"/api/takes/{t}/file.{'x' * 10000}", "/" + "a/" * 5000]:
        st.call("GET", path)
    seed = Path(ctx["seed_mid"]).read_bytes()
    for name in ["../../../../etc/passwd.mid", "/etc/passwd.mid", "a\x00.mid", "..mid", "x" * 10000 + ".mid",
                 f"{ctx['canary']}.mid"]:
        upload(st, name, seed)


def guard_attacks(st: Studio) -> int:
    """Requests that must be refused; returns how many were answered 2xx or 3xx."""
    me = f"127.0.0.1:{st.port}"
    text = json.dumps({"notes": "C4 D4"}).encode()
    attacks = [("GET", "/api/health", {"Host": h}, b"", True) for h in
               ["evil.example", "", None, "localhost.evil.example", "127.0.0.1.nip.io", f"evil.example:{st.port}",
                f"localhost@evil.example:{st.port}", "x" * 10000]]
    attacks += [("POST", "/api/takes/text", {"Origin": o}, text, True) for o in
                ["http://evil.example", "null", "http://localhost:1", f"http://{me}.evil.example",
                 f"http://{me}@evil.example", f"file://{me}"]]
    attacks += [("POST", "/api/takes/text", {"Referer": "http://evil.example/page", "Origin": None}, text, True),
                ("GET", "/api/takes", {}, b"", False), ("GET", "/api/takes", {"X-Cadenza-Token": "wrong"}, b"", False),
                ("GET", "/api/takes?token=wrong", {}, b"", False), ("GET", "/?token=wrong", {}, b"", False),
                ("GET", "/api/takes", {"Cookie": f"cadenza_token_{st.port}=wrong"}, b"", False),
                ("GET", "/api/takes", {"Authorization": "token "}, b"", False)]
    passed = 0
    for method, path, headers, body, token in attacks:
        status = st.call(method, path, body, headers=headers, token=token)[0]
        if 200 <= status < 400:
            passed += 1
            log(f"[guard bypassed] {method} {path} {str(headers)[:100]}: {status}")
    return passed


def heavy_health(st: Studio, seconds: float) -> tuple[float, float]:
    """/api/health latency (max, median ms) while a 300 s generation and a 19,000-note MusicXML export run."""
    tracks = [b"".join(rc.note(48 + (k * 7 + i) % 40, 240) for i in range(2375)) for k in range(8)]
    take = upload(st, "heavy.mid", rc.midi(tracks))
    status, out, _ = st.post("/api/generate", {"seconds": 300})
    job = json.loads(out)["id"] if status == 202 else None
    heavy = threading.Thread(target=lambda: take and st.call("GET", f"/api/takes/{take}/file.musicxml", count=False,
                                                             timeout=seconds + 5), daemon=True)
    heavy.start()
    times, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        times.append(st.call("GET", "/api/health", timeout=30)[2])
        time.sleep(0.1)
    if job:
        st.call("DELETE", f"/api/jobs/{job}")
    heavy.join(timeout=seconds + 10)
    log(f"heavy: take {take}, job {job} ({status}); {len(times)} health calls")
    return max(times, default=math.nan), sorted(times)[len(times) // 2] if times else math.nan


def api_phase(ctx: dict, args, log) -> dict:
    st = Studio(ctx, args, log)
    jobs: list[str] = []
    try:
        files = [p for paths in ctx["corpus_files"].values() for p in paths if p.is_file() and not p.is_symlink()]
        with ThreadPoolExecutor(3) as ex:  # a slow MusicXML (a renderer child) waits up to args.timeout
            takes = [t for t in ex.map(lambda p: upload(st, p.name, p.read_bytes(), args.timeout), files) if t]
        log(f"uploads: {len(takes)} takes from {sum(len(v) for v in ctx['corpus_files'].values())} files")
        for take in takes[:3 if args.quick else 20]:
            take_work(st, take, jobs, args.quick)
        absurd_bodies(st, takes[0] if takes else None, jobs)
        final = finish_jobs(st, jobs, 30 if args.quick else 120)
        big_bodies(st, args.quick)
        path_tricks(st, takes[0] if takes else None, ctx)
        bypassed = guard_attacks(st)
        hmax, hmed = heavy_health(st, 10 if args.quick else 30)
        if not args.quick:  # a burst past the queue: 429s, not 5xx
            burst = [st.post("/api/generate", {"bars": 1})[1] for _ in range(70)]
            final += finish_jobs(st, [json.loads(b)["id"] for b in burst if b.startswith(b'{"id"')], 120)
        healthy = int(st.call("GET", "/api/health")[0] == 200)
    finally:
        end = st.stop()
    for line in st.bad:
        log(f"[http] {line}")
    for line in st.leaks:
        log(f"[read outside] {line}")
    return {"http_requests": st.n, "http_5xx": sum(n for s, n in st.statuses.items() if s >= 500),
            "http_dropped": st.statuses.get(0, 0), "http_client_timeouts": st.statuses.get(-1, 0),
            "http_4xx": sum(n for s, n in st.statuses.items() if 400 <= s < 500),
            "jobs": sum(v for k, v in final.items() if k != "internal"), "jobs_done": final.get("done", 0),
            "jobs_error": final.get("error", 0), "job_internal_errors": final.get("internal", 0),
            "guard_bypassed": bypassed, "health_ms_max_during_heavy": hmax, "health_ms_p50_during_heavy": hmed,
            "healthy_at_end": healthy, **end, "server_rss_mb": st.rss,
            "reads_outside": len(st.leaks) + end["server_files_outside"]}
