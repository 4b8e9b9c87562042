"""The studio's HTTP app: the JSON API of docs/studio-api.md and the page in ./static.

Routes stay thin: they check the request, then either answer from memory or hand CPU work to the
job queue (generation) or a thread (parsing uploads, rendering files). Nothing the server sends
comes from a path a client chose: takes and jobs are looked up by id, files by a fixed list of kinds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from cadenza.errors import CadenzaError
from cadenza.server import studio
from cadenza.server.jobs import Cancelled, JobQueue, QueueFull
from cadenza.server.settings import Settings

STATIC = Path(__file__).resolve().parent / "static"
FILE_KINDS = {"mid": "audio/midi", "musicxml": "application/vnd.recordare.musicxml+xml", "abc": "text/vnd.abc",
              "wav": "audio/wav"}
UPLOAD_SUFFIXES = (".mid", ".midi", ".abc", ".musicxml", ".mxl", ".xml")
ID = re.compile(r"^[tj][0-9a-f]{12}$")
log = logging.getLogger("cadenza.server")


# ----------------------------------------------------------------------------------- requests
class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


Temperature = Annotated[float, Field(gt=0, le=3.0)]
TopP = Annotated[float, Field(gt=0, le=1.0)]
RandomSeed = Annotated[int | None, Field(ge=0, le=2**31 - 1)]


class TextSeed(Body):
    notes: str | None = Field(None, max_length=5000)
    chords: str | None = Field(None, max_length=2000)
    tempo: Annotated[float | None, Field(ge=20, le=300)] = None
    meter: str | None = None
    instrument: str | None = None


class Generate(Body):
    model: str | None = None
    style: str | None = None
    seed_take: str | None = None
    bars: Annotated[int | None, Field(ge=1)] = None
    seconds: Annotated[float | None, Field(gt=0)] = None
    temperature: Temperature = 1.0
    top_p: TopP = 0.95
    tempo: Annotated[float | None, Field(ge=20, le=300)] = None
    key: str | None = None
    meter: str | None = None
    instruments: list[str] | None = Field(None, max_length=16)
    chords: str | None = Field(None, max_length=2000)
    repeat: Annotated[int, Field(ge=1, le=16)] = 1
    random_seed: RandomSeed = None


class Regenerate(Body):
    take: str
    bars: Annotated[list[int], Field(min_length=2, max_length=2)]
    model: str | None = None
    style: str | None = None
    temperature: Temperature = 1.0
    top_p: TopP = 0.95
    random_seed: RandomSeed = None


class Harmonize(Body):
    take: str
    regenerate: str | None = Field(None, max_length=200)
    temperature: Temperature = 0.9
    random_seed: RandomSeed = None


class Learn(Body):
    model: str | None = None
    style: str | None = None
    seed_take: str | None = None
    notes: Annotated[int, Field(ge=1, le=64)] = 16
    temperature: Temperature = 1.0
    top_p: TopP = 0.95
    random_seed: RandomSeed = None
    top: Annotated[int, Field(ge=1, le=32)] = 8


class Surprise(Body):
    take: str
    model: str | None = None
    style: str | None = None


# ------------------------------------------------------------------------------------- the app
def _meter(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d{1,2})\s*/\s*(\d{1,2})\s*", text)
    if not m or int(m[1]) < 1 or int(m[2]) not in (1, 2, 4, 8, 16, 32):
        raise HTTPException(422, f"meter '{text}' is not a time signature like 3/4 or 6/8")
    return int(m[1]), int(m[2])


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    results = Path(settings.results_dir) if settings.results_dir else Path(tempfile.mkdtemp(prefix="cadenza-studio-"))
    results.mkdir(parents=True, exist_ok=True)

    from cadenza.tasks import find_model, list_models, load_model
    from cadenza.tasks.harmonize import Harmonizer

    def model_infos() -> list[dict]:
        from cadenza.model import read_config

        infos, seen = [], set()
        entries = list_models()
        if settings.model:  # the configured default first, even when it is a folder outside the lists
            p = find_model(settings.model)
            entries.insert(0, {"name": settings.model, "path": str(p)})
        for m in entries:
            cfg = read_config(m["path"])
            if m["name"] in seen or Path(m["path"]).resolve() in seen:
                continue
            seen.update({m["name"], Path(m["path"]).resolve()})
            infos.append({"name": m["name"], "family": cfg.get("family", "?"), "styles": cfg.get("styles", []),
                          "default_style": cfg.get("default_style"),
                          "key_control": "key" in (cfg.get("tokenizer") or {}).get("controls", []),
                          "chord_control": "chords" in (cfg.get("tokenizer") or {}).get("controls", [])})
        return infos

    infos = model_infos()
    gen_models = [m for m in infos if m["family"] == "remi-lm"]
    if not gen_models:
        raise CadenzaError("the studio needs a generation (remi-lm) model; none was found")
    default_model = gen_models[0]["name"]
    by_name = {m["name"]: m for m in infos}
    queue = JobQueue(settings.max_queue, settings.workers, settings.max_jobs,
                     {"model": lambda name: load_model(find_model(name)),
                      "harmonizer": lambda name: Harmonizer.load(name)})
    takes = studio.TakeStore(settings.max_takes)
    takes.on_forget = lambda tid: shutil.rmtree(results / tid, ignore_errors=True)

    @asynccontextmanager
    async def lifespan(app):
        yield
        queue.shutdown()
        if not settings.results_dir:
            shutil.rmtree(results, ignore_errors=True)

    app = FastAPI(title="cadenza studio", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Compose with cadenza's models: upload or type a seed, generate with notes "
                              "streamed as they are written, regenerate bars, harmonize, look inside the model. "
                              "See docs/studio-api.md.")
    app.state.settings, app.state.queue, app.state.takes = settings, queue, takes

    # -- errors: one line, 4xx ---------------------------------------------------------------
    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        parts = []
        for e in exc.errors()[:3]:
            where = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
            parts.append(f"{where}: {e.get('msg', 'invalid')}" if where else e.get("msg", "invalid"))
        return JSONResponse({"detail": "; ".join(parts) or "invalid request"}, status_code=422)

    @app.exception_handler(CadenzaError)
    async def _cadenza_error(request: Request, exc: CadenzaError):
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception):  # pragma: no cover - a bug; said, never a crash
        log.exception("unhandled error on %s", request.url.path)
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}"}, status_code=500)

    # -- helpers -----------------------------------------------------------------------------
    def take_or_404(take_id: str | None) -> studio.Take | None:
        if take_id is None:
            return None
        t = takes.get(take_id) if ID.match(take_id or "") else None
        if t is None:
            raise HTTPException(404, f"no take '{take_id}' (it may have been forgotten; the studio keeps "
                                     f"the last {settings.max_takes})")
        return t

    def job_or_404(job_id: str):
        j = queue.get(job_id) if ID.match(job_id) else None
        if j is None:
            raise HTTPException(404, f"no job '{job_id}'")
        return j

    def gen_model(name: str | None, style: str | None) -> str:
        name = name or default_model
        info = by_name.get(name)
        if info is None or info["family"] != "remi-lm":
            known = ", ".join(m["name"] for m in gen_models)
            raise HTTPException(422, f"unknown model '{name}' (known: {known})")
        if style is not None and style not in info["styles"]:
            raise HTTPException(422, f"unknown style '{style}': model {name} knows {', '.join(info['styles'])}")
        return name

    def submit(kind: str, work):
        try:
            job = queue.submit(kind, work)
        except QueueFull as e:
            raise HTTPException(429, str(e)) from None
        return JSONResponse(job.to_json(), status_code=202)

    def instruments(names: list[str] | None):
        if names is None:
            return None
        from cadenza.score import parse_instrument

        return [parse_instrument(n) for n in names]  # an unknown name: a 422 from the CadenzaError handler

    # -- meta --------------------------------------------------------------------------------
    @app.get("/api/health")
    def health():
        return {"status": "ok", "queue": queue.stats()}

    @app.get("/api/options")
    def options():
        from cadenza.score import GM_PROGRAMS

        keys = [f"{n} {m}" for m in ("major", "minor") for n in
                ("C", "C#", "Db", "D", "Eb", "E", "F", "F#", "Gb", "G", "Ab", "A", "Bb", "B")]
        meters = ["2/4", "3/4", "4/4", "5/4", "6/8", "9/8", "12/8", "2/2"]
        return {"models": infos, "default_model": default_model,
                "instruments": [*GM_PROGRAMS, "drums"],
                "meters": meters, "keys": keys,
                "limits": {"upload_bytes": settings.upload_bytes, "upload_notes": settings.upload_notes,
                           "upload_seconds": settings.upload_seconds, "bars": settings.max_bars,
                           "seconds": settings.max_seconds, "queue": settings.max_queue},
                "defaults": {"bars": 8, "temperature": 1.0, "top_p": 0.95, "meter": "4/4"}}

    # -- takes -------------------------------------------------------------------------------
    @app.post("/api/takes/upload", status_code=201)
    async def upload(request: Request):
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > settings.upload_bytes + 64_000:
            raise HTTPException(413, f"the upload is {int(size) / 1e6:.1f} MB; the studio takes files up to "
                                     f"{settings.upload_bytes / 1e6:.1f} MB")
        try:
            form = await request.form(max_files=1, max_fields=4)
        except Exception as e:  # malformed multipart
            raise HTTPException(400, f"cannot read the upload: {e}") from None
        f = form.get("file")
        if f is None or not hasattr(f, "read"):
            raise HTTPException(400, "no file in the upload (send it as the multipart field 'file')")
        name = Path(f.filename or "upload").name
        suffix = Path(name).suffix.lower()
        if suffix not in UPLOAD_SUFFIXES:
            raise HTTPException(400, f"{name}: not a score file the studio reads "
                                     f"({', '.join(UPLOAD_SUFFIXES)})")
        data = await f.read(settings.upload_bytes + 1)
        if len(data) > settings.upload_bytes:
            raise HTTPException(413, f"{name} is larger than {settings.upload_bytes / 1e6:.1f} MB")
        if not data.strip():
            raise HTTPException(400, f"{name} is empty")

        def parse():
            from cadenza.score import read_score

            with tempfile.TemporaryDirectory() as tmp:
                p = Path(tmp) / f"upload{suffix}"
                p.write_bytes(data)
                try:
                    score = read_score(p)
                except CadenzaError as e:
                    raise HTTPException(400, str(e).replace(p.name, name)) from None
            try:
                score = studio.check_upload(score, name, settings.upload_notes, settings.upload_seconds)
            except CadenzaError as e:
                raise HTTPException(413, str(e)) from None
            return takes.add(studio.Take(score, "upload", name))

        take = await run_in_threadpool(parse)
        return take.to_json()

    @app.post("/api/takes/text", status_code=201)
    async def typed(body: TextSeed):
        if (body.notes is None) == (body.chords is None):
            raise HTTPException(422, "give notes or chords (one of them)")
        meter = _meter(body.meter) or (4, 4)
        inst = instruments([body.instrument])[0] if body.instrument else (0, False)

        def parse():
            from cadenza.score import parse_chords, parse_notes

            fn = parse_notes if body.notes is not None else parse_chords
            text = body.notes if body.notes is not None else body.chords
            score = fn(text, tempo=body.tempo or 120.0, program=inst[0], time_signature=meter)
            if score.note_num() == 0:
                raise HTTPException(422, "no notes in the text")
            label = ("notes: " if body.notes is not None else "chords: ") + (text[:40] + ("..." if len(text) > 40 else ""))
            return takes.add(studio.Take(studio.normalize(score), "typed", label))

        return (await run_in_threadpool(parse)).to_json()

    @app.get("/api/takes")
    def list_takes():
        return [t.summary() for t in takes.all()]

    @app.get("/api/takes/{take_id}")
    def get_take(take_id: str):
        return take_or_404(take_id).to_json()

    @app.get("/api/takes/{take_id}/file.{kind}")
    async def take_file(take_id: str, kind: str):
        take = take_or_404(take_id)
        if kind not in FILE_KINDS:
            raise HTTPException(404, f"no file kind '{kind}' (there are {', '.join(FILE_KINDS)})")
        path = results / take.id / f"{take.id}.{kind}"

        def render():
            if not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                from cadenza.render.outputs import write_outputs

                write_outputs(take.score, [path], name=take.label)
            return path

        await run_in_threadpool(render)
        stem = re.sub(r"[^A-Za-z0-9_-]+", "-", take.label).strip("-")[:40] or "take"
        return FileResponse(path, media_type=FILE_KINDS[kind], filename=f"cadenza-{stem}-{take.id}.{kind}")

    @app.get("/api/takes/{take_id}/sheet")
    async def sheet(take_id: str):
        take = take_or_404(take_id)

        def pages():
            from cadenza.render.notation import svg_pages

            return svg_pages(take.score, title=take.label, name=take.label)

        return {"pages": await run_in_threadpool(pages)}

    # -- jobs --------------------------------------------------------------------------------
    @app.post("/api/generate", status_code=202)
    def generate(body: Generate):
        name = gen_model(body.model, body.style)
        seed = take_or_404(body.seed_take)
        if body.bars is not None and body.seconds is not None:
            raise HTTPException(422, "give bars or seconds, not both")
        if body.bars is not None and body.bars > settings.max_bars:
            raise HTTPException(422, f"bars: at most {settings.max_bars} (got {body.bars})")
        if body.seconds is not None and body.seconds > settings.max_seconds:
            raise HTTPException(422, f"seconds: at most {settings.max_seconds:g} (got {body.seconds:g})")
        if body.key and not by_name[name]["key_control"]:
            raise HTTPException(422, f"model {name} has no key control yet; leave key empty")
        meter, inst = _meter(body.meter), instruments(body.instruments)
        chords = None
        if body.chords:
            if not by_name[name]["chord_control"]:
                raise HTTPException(422, f"model {name} cannot follow chords; type them as a seed instead")
            from cadenza.score.harmony import bar_chords

            chords = bar_chords(body.chords) * body.repeat  # a ScoreError is a 422 with its message
        default_bars = len(chords) if chords else 8
        if chords and len(chords) > settings.max_bars:
            raise HTTPException(422, f"chords: at most {settings.max_bars} bars (got {len(chords)})")
        bars = body.bars if body.bars is not None or body.seconds is not None else default_bars
        kw = dict(bars=bars if body.seconds is None else None, seconds=body.seconds, style=body.style,
                  instruments=inst, tempo=body.tempo, time_signature=meter, temperature=body.temperature,
                  top_p=body.top_p, seed=body.random_seed, key=body.key or None, chords=chords)

        def work(job, ctx):
            cm = ctx.get("model", name)
            score = studio.stream_into(job, cm, seed.score if seed else None, **kw)
            what = f"{body.style or by_name[name]['default_style'] or 'music'}, " \
                   + (f"{body.seconds:g} s" if body.seconds else f"{bars} bars")
            take = takes.add(studio.Take(score, "generate", ("continued: " if seed else "") + what,
                                         parent=seed.id if seed else None, model=name, style=body.style))
            job.take = take.id
            messages = []
            if job.notes == 0:  # a model may give an instrument it hardly knows almost no chance
                asked = f" for {', '.join(body.instruments)}" if body.instruments else ""
                messages.append(f"the model wrote no new notes{asked}; it may not know "
                                f"{'those instruments' if body.instruments else 'how to go on here'} "
                                "(try other instruments, another style or a higher temperature)")
            return {"take": take.to_json(), "messages": messages}

        return submit("generate", work)

    @app.post("/api/regenerate", status_code=202)
    def regenerate(body: Regenerate):
        take = take_or_404(body.take)
        name = gen_model(body.model, body.style or take.style)
        first, last = body.bars
        if first < 1 or last < first:
            raise HTTPException(422, f"bars {first}-{last}: give a range from bar 1 on, first <= last")
        n_bars = take.to_json()["bars"]
        if first > n_bars:
            raise HTTPException(422, f"bars {first}-{last} are outside the piece, which has {n_bars} bars")

        def work(job, ctx):
            cm = ctx.get("model", name)
            score = studio.regenerate_bars(job, cm, take, first, last, style=body.style or take.style,
                                           temperature=body.temperature, top_p=body.top_p, seed=body.random_seed)
            new = takes.add(studio.Take(score, "regenerate", f"bars {first}-{last} of {take.label}"[:80],
                                        parent=take.id, model=name, style=body.style or take.style))
            job.take = new.id
            return {"take": new.to_json()}

        return submit("regenerate", work)

    @app.post("/api/harmonize", status_code=202)
    def harmonize(body: Harmonize):
        from cadenza.tasks.harmonize import REGION_RE

        take = take_or_404(body.take)
        for part in (p.strip() for p in (body.regenerate or "").split(";") if p.strip()):
            if not REGION_RE.match(part):
                raise HTTPException(422, f"regenerate '{part}': use BAR.BEAT-BAR.BEAT (e.g. 3.2-3.2) or BARS (e.g. 3-4)")

        def work(job, ctx):
            h = ctx.get("harmonizer", settings.harmonize_model)

            def progress(*_):
                job.check()

            res = h.harmonize(take.score, name=take.label, regenerate=body.regenerate,
                              temperature=body.temperature, seed=body.random_seed, progress=progress)
            score = studio.normalize(res.scores[0])
            label = take.label if take.label.startswith("harmonized: ") else f"harmonized: {take.label}"
            new = takes.add(studio.Take(score, "harmonize", label[:80], parent=take.id,
                                        model=settings.harmonize_model, style="chorale"))
            for n in new.to_json()["notes"]:
                job.notes += 1
                job.emit("note", n)
            job.take = new.id
            return {"take": new.to_json(), "messages": res.notes}

        return submit("harmonize", work)

    @app.get("/api/jobs/{job_id}")
    def get_job(job_id: str):
        return job_or_404(job_id).to_json()

    @app.delete("/api/jobs/{job_id}")
    def cancel_job(job_id: str):
        return queue.cancel(job_or_404(job_id)).to_json()

    @app.get("/api/jobs/{job_id}/events")
    async def job_events(job_id: str, request: Request):
        job = job_or_404(job_id)

        async def events():
            async for name, data in job.follow():
                yield f"event: {name}\ndata: {json.dumps(data)}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def run_sync(kind: str, work):
        """A short job whose answer is the response (it waits its turn in the same queue)."""
        try:
            job = queue.submit(kind, work)
        except QueueFull as e:
            raise HTTPException(429, str(e)) from None
        try:
            return await asyncio.wrap_future(job.future)
        except Cancelled:
            raise HTTPException(409, "cancelled") from None

    @app.post("/api/learn")
    async def learn(body: Learn):
        name = gen_model(body.model, body.style)
        seed = take_or_404(body.seed_take)

        def work(job, ctx):
            from cadenza.tasks.learn import learn_steps

            cm = ctx.get("model", name)
            steps = learn_steps(cm, seed.score if seed else None, notes=body.notes, top=body.top,
                                style=body.style, temperature=body.temperature, top_p=body.top_p,
                                seed=body.random_seed)
            return studio.learn_json(steps)

        return await run_sync("learn", work)

    @app.post("/api/surprise")
    async def surprise(body: Surprise):
        take = take_or_404(body.take)
        name = gen_model(body.model, body.style)

        def work(job, ctx):
            from cadenza.tasks.learn import note_surprise

            return studio.surprise_json(note_surprise(ctx.get("model", name), take.score, body.style))

        return await run_sync("surprise", work)

    # -- the page ----------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def index():
        page = STATIC / "index.html"
        if not page.is_file():
            raise HTTPException(404, "the studio page is not installed")
        return FileResponse(page, media_type="text/html")

    if STATIC.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
