"""The studio's HTTP app: the JSON API of docs/studio-api.md and the page in ./static.

Routes stay thin: they check the request, then either answer from memory or hand the work on:
generation to the job queue (worker threads), long score work (MusicXML, WAV, sheet music,
MusicXML uploads) to a child process the server can stop (render.py), short work to a thread. The
event loop itself only routes, so /api/health answers while all of that runs. Nothing the server
sends comes from a path a client chose: takes and jobs are looked up by id, files by a fixed list
of kinds. Who may ask, and how much a request may send: guard.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import shutil
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from cadenza.errors import CadenzaError
from cadenza.limits import LIMITS
from cadenza.server import bodies, studio
from cadenza.server.bodies import Generate, Harmonize, Learn, Regenerate, Surprise, TextSeed
from cadenza.server.guard import BodyLimit, Guard, host_names
from cadenza.server.jobs import Cancelled, JobQueue, QueueFull
from cadenza.server.render import Renderer, read_upload, write_file
from cadenza.server.settings import Settings

STATIC = Path(__file__).resolve().parent / "static"
FILE_KINDS = {"mid": "audio/midi", "musicxml": "application/vnd.recordare.musicxml+xml", "abc": "text/vnd.abc",
              "wav": "audio/wav"}
SLOW_KINDS = ("musicxml", "wav")  # written in a child process (render.py); the others in a thread
UPLOAD_PATH = "/api/takes/upload"
UPLOAD_SUFFIXES = (".mid", ".midi", ".abc", ".musicxml", ".mxl", ".xml")
XML_SUFFIXES = (".musicxml", ".mxl", ".xml")  # read by music21: in a child process
MULTIPART_SLACK = 64_000  # an upload's body is its file plus the multipart framing
ID = re.compile(r"^[tj][0-9a-f]{12}$")
log = logging.getLogger("cadenza.server")


# ------------------------------------------------------------------------------------- models
def model_infos(settings: Settings) -> list[dict]:
    from cadenza.model import read_config
    from cadenza.tasks import find_model, list_models

    infos, seen = [], set()
    entries = list_models()
    if settings.model:  # the configured default first, even when it is a folder outside the lists
        entries.insert(0, {"name": settings.model, "path": str(find_model(settings.model))})
    for m in entries:
        cfg = read_config(m["path"])
        if m["name"] in seen or Path(m["path"]).resolve() in seen:
            continue
        seen.update({m["name"], Path(m["path"]).resolve()})
        controls = (cfg.get("tokenizer") or {}).get("controls", [])
        infos.append({"name": m["name"], "family": cfg.get("family", "?"), "styles": cfg.get("styles", []),
                      "default_style": cfg.get("default_style"), "key_control": "key" in controls,
                      "chord_control": "chords" in controls})
    return infos


# -------------------------------------------------------------------------------- the studio
class Studio:
    """What the routes share: settings, takes, the job queue, the renderer, and the checks that
    turn an id or a name into an object or a 4xx."""

    def __init__(self, settings: Settings):
        from cadenza.tasks import find_model, load_model
        from cadenza.tasks.harmonize import Harmonizer

        self.settings = s = settings
        self.results = Path(s.results_dir) if s.results_dir else Path(tempfile.mkdtemp(prefix="cadenza-studio-"))
        self.results.mkdir(parents=True, exist_ok=True)
        self.infos = model_infos(s)
        self.gen_models = [m for m in self.infos if m["family"] == "remi-lm"]
        if not self.gen_models:
            raise CadenzaError("the studio needs a generation (remi-lm) model; none was found")
        self.default_model = self.gen_models[0]["name"]
        self.by_name = {m["name"]: m for m in self.infos}
        self.queue = JobQueue(s.max_queue, s.workers, s.max_jobs,
                              {"model": lambda name: load_model(find_model(name)),
                               "harmonizer": lambda name: Harmonizer.load(name)}, job_seconds=s.job_seconds)
        self.takes = studio.TakeStore(s.max_takes)
        self.takes.on_forget = lambda tid: shutil.rmtree(self.results / tid, ignore_errors=True)
        self.renderer = Renderer(s.renderers, s.job_seconds)
        self.token = None if s.no_token else (s.token or secrets.token_urlsafe(32))

    def stop(self) -> None:
        """Cancel every job and kill every child process, without waiting: the server is stopping
        (their requests and event streams end now rather than at a timeout)."""
        self.queue.stop_jobs()
        self.renderer.stop()

    def close(self) -> None:
        self.renderer.stop()
        self.queue.shutdown()
        if not self.settings.results_dir:
            shutil.rmtree(self.results, ignore_errors=True)

    # -- lookups: the object or a 4xx --------------------------------------------------------
    def take(self, take_id: str | None) -> studio.Take | None:
        if take_id is None:
            return None
        t = self.takes.get(take_id) if ID.match(take_id or "") else None
        if t is None:
            raise HTTPException(404, f"no take '{take_id}' (it may have been forgotten; the studio keeps "
                                     f"the last {self.settings.max_takes})")
        return t

    def job(self, job_id: str):
        j = self.queue.get(job_id) if ID.match(job_id) else None
        if j is None:
            raise HTTPException(404, f"no job '{job_id}'")
        return j

    def gen_model(self, name: str | None, style: str | None) -> str:
        name = name or self.default_model
        info = self.by_name.get(name)
        if info is None or info["family"] != "remi-lm":
            known = ", ".join(m["name"] for m in self.gen_models)
            raise HTTPException(422, f"unknown model '{name}' (known: {known})")
        if style is not None and style not in info["styles"]:
            raise HTTPException(422, f"unknown style '{style}': model {name} knows {', '.join(info['styles'])}")
        return name

    @staticmethod
    def instruments(names: list[str] | None):
        if names is None:
            return None
        from cadenza.score import parse_instrument

        return [parse_instrument(n) for n in names]  # an unknown name: a 422 from the CadenzaError handler

    # -- handing work on ---------------------------------------------------------------------
    def submit(self, kind: str, work) -> JSONResponse:
        try:
            job = self.queue.submit(kind, work)
        except QueueFull as e:
            raise HTTPException(429, str(e)) from None
        return JSONResponse(job.to_json(), status_code=202)

    async def run_sync(self, kind: str, work, request: Request):
        """A short job whose answer is the response (it waits its turn in the same queue); the job
        is cancelled when the client leaves."""
        try:
            job = self.queue.submit(kind, work)
        except QueueFull as e:
            raise HTTPException(429, str(e)) from None
        waiting = asyncio.wrap_future(job.future)
        while not (await asyncio.wait({waiting}, timeout=0.25))[0]:
            if await request.is_disconnected():
                self.queue.cancel(job)
        try:
            return waiting.result()
        except Cancelled:
            raise HTTPException(409, "cancelled") from None


def take_response(take: studio.Take, status: int = 200) -> JSONResponse:
    """A take as JSON (call it off the event loop: a long take's JSON takes a while)."""
    return JSONResponse(take.to_json(), status_code=status)


# ------------------------------------------------------------------------------------- the app
def create_app(settings: Settings | None = None) -> FastAPI:
    """The studio. ``settings.token`` (or a new random one) guards /api unless ``settings.no_token``;
    the token in use is ``app.state.token`` (None without one)."""
    settings = settings or Settings()
    st = Studio(settings)

    @asynccontextmanager
    async def lifespan(app):
        yield
        st.close()

    app = FastAPI(title="cadenza studio", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Compose with cadenza's models: upload or type a seed, generate with notes "
                              "streamed as they are written, regenerate bars, harmonize, look inside the model. "
                              "See docs/studio-api.md.")
    app.state.settings, app.state.queue, app.state.takes = settings, st.queue, st.takes
    app.state.studio, app.state.token = st, st.token
    _error_handlers(app)
    _meta_routes(app, st)
    _take_routes(app, st)
    _generation_routes(app, st)
    _job_routes(app, st)
    _look_inside_routes(app, st)
    _page_routes(app)
    mb = settings.upload_bytes / 1e6
    upload = (settings.upload_bytes + MULTIPART_SLACK, f"the upload is larger than {mb:.1f} MB, the studio's limit")
    app.add_middleware(BodyLimit, limit=settings.body_bytes, paths={UPLOAD_PATH: upload},
                       detail=f"the request body is larger than {settings.body_bytes / 1e6:.1f} MB (limit body_bytes)")
    app.add_middleware(Guard, names=host_names(settings.host, settings.allow_hosts), token=st.token)  # outermost
    return app


def _error_handlers(app: FastAPI) -> None:
    """Errors are one line, 4xx."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        parts = []
        for e in exc.errors()[:3]:
            where = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
            msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
            parts.append(f"{where}: {msg}" if where else msg)
        return JSONResponse({"detail": "; ".join(parts) or "invalid request"}, status_code=422)

    @app.exception_handler(CadenzaError)
    async def _cadenza_error(request: Request, exc: CadenzaError):
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception):  # pragma: no cover - a bug; said, never a crash
        log.exception("unhandled error on %s", request.url.path)
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}"}, status_code=500)


def _meta_routes(app: FastAPI, st: Studio) -> None:
    s = st.settings

    @app.get("/api/health")
    async def health():  # on the event loop itself: it answers as long as the loop is free
        return {"status": "ok", "queue": st.queue.stats()}

    @app.get("/api/options")
    def options():
        from cadenza.score import GM_PROGRAMS

        keys = [f"{n} {m}" for m in ("major", "minor") for n in
                ("C", "C#", "Db", "D", "Eb", "E", "F", "F#", "Gb", "G", "Ab", "A", "Bb", "B")]
        meters = ["2/4", "3/4", "4/4", "5/4", "6/8", "9/8", "12/8", "2/2"]
        return {"models": st.infos, "default_model": st.default_model,
                "instruments": [*GM_PROGRAMS, "drums"], "meters": meters, "keys": keys,
                "limits": {"upload_bytes": s.upload_bytes, "upload_notes": s.upload_notes,
                           "upload_seconds": s.upload_seconds, "bars": s.max_bars, "seconds": s.max_seconds,
                           "queue": s.max_queue, "body_bytes": s.body_bytes, "job_seconds": s.job_seconds,
                           "temperature_min": LIMITS.temperature_min, "temperature_max": LIMITS.temperature_max,
                           "tempo_min": LIMITS.tempo_min, "tempo_max": LIMITS.tempo_max, "seed_max": LIMITS.seed_max},
                "defaults": {"bars": 8, "temperature": 1.0, "top_p": 0.95, "meter": "4/4"}}


def _take_routes(app: FastAPI, st: Studio) -> None:
    s = st.settings

    @app.post(UPLOAD_PATH, status_code=201)
    async def upload(request: Request):
        try:  # the body is already bounded (BodyLimit): the file is never written in full past it
            form = await request.form(max_files=1, max_fields=4)
        except StarletteHTTPException:  # BodyTooLarge (413), or python-multipart's own 400
            raise
        except Exception as e:  # malformed multipart
            raise HTTPException(400, f"cannot read the upload: {e}") from None
        f = form.get("file")
        if f is None or not hasattr(f, "read"):
            raise HTTPException(400, "no file in the upload (send it as the multipart field 'file')")
        name = Path(f.filename or "upload").name
        suffix = Path(name).suffix.lower()
        if suffix not in UPLOAD_SUFFIXES:
            raise HTTPException(400, f"{name}: not a score file the studio reads ({', '.join(UPLOAD_SUFFIXES)})")
        data = await f.read(s.upload_bytes + 1)
        if len(data) > s.upload_bytes:
            raise HTTPException(413, f"{name} is larger than {s.upload_bytes / 1e6:.1f} MB")
        if not data.strip():
            raise HTTPException(400, f"{name} is empty")
        kw = {"data": data, "name": name, "suffix": suffix, "max_notes": s.upload_notes,
              "max_seconds": s.upload_seconds}
        if suffix in XML_SUFFIXES:
            score = await st.renderer.run("read", gone=request.is_disconnected, **kw)
        else:
            score = await run_in_threadpool(read_upload, **kw)
        return await run_in_threadpool(lambda: take_response(st.takes.add(studio.Take(score, "upload", name)), 201))

    @app.post("/api/takes/text", status_code=201)
    async def typed(body: TextSeed):
        if (body.notes is None) == (body.chords is None):
            raise HTTPException(422, "give notes or chords (one of them)")
        meter = bodies.meter(body.meter) or (4, 4)
        inst = st.instruments([body.instrument])[0] if body.instrument else (0, False)

        def parse():
            from cadenza.score import parse_chords, parse_notes

            fn = parse_notes if body.notes is not None else parse_chords
            text = body.notes if body.notes is not None else body.chords
            score = fn(text, tempo=body.tempo or 120.0, program=inst[0], time_signature=meter)
            if score.note_num() == 0:
                raise HTTPException(422, "no notes in the text")
            label = ("notes: " if body.notes is not None else "chords: ") + (text[:40] + ("..." if len(text) > 40 else ""))
            return take_response(st.takes.add(studio.Take(studio.normalize(score), "typed", label)), 201)

        return await run_in_threadpool(parse)

    @app.get("/api/takes")
    def list_takes():
        return [t.summary() for t in st.takes.all()]

    @app.get("/api/takes/{take_id}")
    def get_take(take_id: str):
        return take_response(st.take(take_id))

    @app.get("/api/takes/{take_id}/file.{kind}")
    async def take_file(take_id: str, kind: str, request: Request):
        take = st.take(take_id)
        if kind not in FILE_KINDS:
            raise HTTPException(404, f"no file kind '{kind}' (there are {', '.join(FILE_KINDS)})")
        path = st.results / take.id / f"{take.id}.{kind}"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            kw = {"score": take.score, "path": str(path), "name": take.label}
            if kind in SLOW_KINDS:
                await st.renderer.run("file", gone=request.is_disconnected, **kw)
            else:
                await run_in_threadpool(write_file, **kw)
        stem = re.sub(r"[^A-Za-z0-9_-]+", "-", take.label).strip("-")[:40] or "take"
        return FileResponse(path, media_type=FILE_KINDS[kind], filename=f"cadenza-{stem}-{take.id}.{kind}")

    @app.get("/api/takes/{take_id}/sheet")
    async def sheet(take_id: str, request: Request):
        take = st.take(take_id)
        return {"pages": await st.renderer.run("sheet", gone=request.is_disconnected, score=take.score,
                                               title=take.label)}


def _generation_routes(app: FastAPI, st: Studio) -> None:
    """Generate, regenerate, harmonize: each a job in the queue, answered 202 at once."""
    s = st.settings

    @app.post("/api/generate", status_code=202)
    def generate(body: Generate):
        name = st.gen_model(body.model, body.style)
        seed = st.take(body.seed_take)
        bodies.length(body.bars, body.seconds, s.max_bars, s.max_seconds)
        if body.key and not st.by_name[name]["key_control"]:
            raise HTTPException(422, f"model {name} has no key control yet; leave key empty")
        meter, inst = bodies.meter(body.meter), st.instruments(body.instruments)
        chords = None
        if body.chords:
            if not st.by_name[name]["chord_control"]:
                raise HTTPException(422, f"model {name} cannot follow chords; type them as a seed instead")
            from cadenza.score.harmony import bar_chords

            chords = bar_chords(body.chords) * body.repeat  # a ScoreError is a 422 with its message
            if len(chords) > min(s.max_bars, LIMITS.bars):
                raise HTTPException(422, f"chords: at most {min(s.max_bars, LIMITS.bars)} bars (got {len(chords)})")
        default_bars = len(chords) if chords else 8
        bars = body.bars if body.bars is not None or body.seconds is not None else default_bars
        kw = dict(bars=bars if body.seconds is None else None, seconds=body.seconds, style=body.style,
                  instruments=inst, tempo=body.tempo, time_signature=meter, temperature=body.temperature,
                  top_p=body.top_p, seed=body.random_seed, key=body.key or None, chords=chords)

        def work(job, ctx):
            score = studio.stream_into(job, ctx.get("model", name), seed.score if seed else None, **kw)
            what = f"{body.style or st.by_name[name]['default_style'] or 'music'}, " \
                   + (f"{body.seconds:g} s" if body.seconds else f"{bars} bars")
            take = st.takes.add(studio.Take(score, "generate", ("continued: " if seed else "") + what,
                                            parent=seed.id if seed else None, model=name, style=body.style))
            job.take = take.id
            messages = []
            if job.notes == 0:  # a model may give an instrument it hardly knows almost no chance
                asked = f" for {', '.join(body.instruments)}" if body.instruments else ""
                messages.append(f"the model wrote no new notes{asked}; it may not know "
                                f"{'those instruments' if body.instruments else 'how to go on here'} "
                                "(try other instruments, another style or a higher temperature)")
            return {"take": take.to_json(), "messages": messages}

        return st.submit("generate", work)

    @app.post("/api/regenerate", status_code=202)
    def regenerate(body: Regenerate):
        take = st.take(body.take)
        name = st.gen_model(body.model, body.style or take.style)
        first, last = body.bars
        bodies.bar_range(first, last, take.to_json()["bars"], s.max_bars)

        def work(job, ctx):
            score = studio.regenerate_bars(job, ctx.get("model", name), take, first, last,
                                           style=body.style or take.style, temperature=body.temperature,
                                           top_p=body.top_p, seed=body.random_seed)
            new = st.takes.add(studio.Take(score, "regenerate", f"bars {first}-{last} of {take.label}"[:80],
                                           parent=take.id, model=name, style=body.style or take.style))
            job.take = new.id
            return {"take": new.to_json()}

        return st.submit("regenerate", work)

    @app.post("/api/harmonize", status_code=202)
    def harmonize(body: Harmonize):
        from cadenza.tasks.harmonize import REGION_RE

        take = st.take(body.take)
        for part in (p.strip() for p in (body.regenerate or "").split(";") if p.strip()):
            if not REGION_RE.match(part):
                raise HTTPException(422, f"regenerate '{part}': use BAR.BEAT-BAR.BEAT (e.g. 3.2-3.2) or BARS (e.g. 3-4)")

        def work(job, ctx):
            h = ctx.get("harmonizer", s.harmonize_model)
            res = h.harmonize(take.score, name=take.label, regenerate=body.regenerate,
                              temperature=body.temperature, seed=body.random_seed, progress=lambda *_: job.check())
            score = studio.normalize(res.scores[0])
            label = take.label if take.label.startswith("harmonized: ") else f"harmonized: {take.label}"
            new = st.takes.add(studio.Take(score, "harmonize", label[:80], parent=take.id,
                                           model=s.harmonize_model, style="chorale"))
            for n in new.to_json()["notes"]:
                job.notes += 1
                job.emit("note", n)
            job.take = new.id
            return {"take": new.to_json(), "messages": res.notes}

        return st.submit("harmonize", work)


def _job_routes(app: FastAPI, st: Studio) -> None:
    @app.get("/api/jobs/{job_id}")
    def get_job(job_id: str):
        return st.job(job_id).to_json()

    @app.delete("/api/jobs/{job_id}")
    def cancel_job(job_id: str):  # a running job stops at its next token: its answer says "cancelled"
        return st.queue.cancel(st.job(job_id), wait=2.0).to_json()

    @app.get("/api/jobs/{job_id}/events")
    async def job_events(job_id: str):
        job = st.job(job_id)

        async def events():
            async for name, data in job.follow():
                yield f"event: {name}\ndata: {json.dumps(data)}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _look_inside_routes(app: FastAPI, st: Studio) -> None:
    """Learn and surprise: short jobs whose answer is the response."""

    @app.post("/api/learn")
    async def learn(body: Learn, request: Request):
        name = st.gen_model(body.model, body.style)
        seed = st.take(body.seed_take)

        def work(job, ctx):
            from cadenza.tasks.learn import learn_steps

            steps = learn_steps(ctx.get("model", name), seed.score if seed else None, notes=body.notes,
                                top=body.top, style=body.style, temperature=body.temperature, top_p=body.top_p,
                                seed=body.random_seed)
            return studio.learn_json(steps)

        return await st.run_sync("learn", work, request)

    @app.post("/api/surprise")
    async def surprise(body: Surprise, request: Request):
        take = st.take(body.take)
        name = st.gen_model(body.model, body.style)

        def work(job, ctx):
            from cadenza.tasks.learn import note_surprise

            return studio.surprise_json(note_surprise(ctx.get("model", name), take.score, body.style))

        return await st.run_sync("surprise", work, request)


def _page_routes(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    def index():
        page = STATIC / "index.html"
        if not page.is_file():
            raise HTTPException(404, "the studio page is not installed")
        return FileResponse(page, media_type="text/html")

    if STATIC.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC), name="static")
