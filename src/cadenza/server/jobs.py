"""A bounded queue of generation jobs run by worker threads, with cancellation and event streams.

Generation is CPU work: it runs on worker threads, never on the event loop. Each worker holds its
own copies of the models it has used (a model's KV cache lives in its modules, so two threads must
not share one). A job publishes events (status, note, done, error, cancelled); any number of
readers follow them from the start, from the event loop, without polling.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import secrets
import threading
import time
import traceback
from concurrent.futures import Future
from typing import Any, Callable

from cadenza.errors import CadenzaError

log = logging.getLogger("cadenza.server")

TERMINAL = ("done", "cancelled", "error")


class QueueFull(Exception):
    pass


class Cancelled(Exception):
    """Raised inside a job's work when its user cancelled it."""


class Job:
    def __init__(self, kind: str, work: Callable[["Job", "WorkerContext"], Any]):
        self.id = "j" + secrets.token_hex(6)
        self.kind = kind
        self.work = work
        self.status = "queued"
        self.error: str | None = None
        self.take: str | None = None
        self.notes = 0
        self.created = time.time()
        self.started: float | None = None
        self.finished: float | None = None
        self.position = 0
        self.events: list[tuple[str, Any]] = []
        self.future: Future = Future()
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    # -- for the work ------------------------------------------------------------------------
    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check(self) -> None:
        """Stop the work here if the job was cancelled."""
        if self._cancel.is_set():
            raise Cancelled()

    def emit(self, event: str, data: Any) -> None:
        with self._lock:
            self.events.append((event, data))
            waiters = list(self._waiters)
        for loop, ev in waiters:
            try:
                loop.call_soon_threadsafe(ev.set)
            except RuntimeError:  # that loop is closed: its reader is gone
                pass

    def to_json(self) -> dict:
        return {"id": self.id, "kind": self.kind, "status": self.status, "position": self.position,
                "notes": self.notes, "take": self.take, "error": self.error,
                "waited_s": None if self.started is None else round(self.started - self.created, 3)}

    # -- for readers -------------------------------------------------------------------------
    async def follow(self):
        """Yield (event, data) from the job's first event until its last (async, for the event loop)."""
        loop = asyncio.get_running_loop()
        ev = asyncio.Event()
        entry = (loop, ev)
        with self._lock:
            self._waiters.append(entry)
        try:
            seen = 0
            while True:
                ev.clear()
                with self._lock:
                    new = self.events[seen:]
                seen += len(new)
                for name, data in new:
                    yield name, data
                    if name in TERMINAL:
                        return
                if not new:
                    await ev.wait()
        finally:
            with self._lock:
                self._waiters.remove(entry)


class WorkerContext:
    """What one worker thread keeps between jobs: its own loaded models."""

    def __init__(self, loaders: dict[str, Callable[[str | None], Any]]):
        self._loaders = loaders
        self._loaded: dict[tuple[str, str | None], Any] = {}

    def get(self, kind: str, name: str | None):
        key = (kind, name)
        if key not in self._loaded:
            if len(self._loaded) >= 4:  # a few models per worker; the oldest goes
                self._loaded.pop(next(iter(self._loaded)))
            self._loaded[key] = self._loaders[kind](name)
        return self._loaded[key]


class JobQueue:
    def __init__(self, max_queue: int, workers: int, max_jobs: int, loaders: dict[str, Callable]):
        self.max_queue = max_queue
        self.max_jobs = max_jobs
        self._waiting: collections.deque[Job] = collections.deque()
        self._jobs: collections.OrderedDict[str, Job] = collections.OrderedDict()
        self._running: set[str] = set()
        self._cond = threading.Condition()
        self._stop = False
        self._threads = [threading.Thread(target=self._worker, args=(WorkerContext(loaders),),
                                          name=f"cadenza-worker-{k}", daemon=True) for k in range(workers)]
        for t in self._threads:
            t.start()

    # -- public ------------------------------------------------------------------------------
    def submit(self, kind: str, work: Callable[[Job, WorkerContext], Any]) -> Job:
        job = Job(kind, work)
        with self._cond:
            if len(self._waiting) >= self.max_queue:
                raise QueueFull(f"the server is busy: {len(self._waiting)} jobs are waiting; try again shortly")
            self._waiting.append(job)
            job.position = len(self._waiting) - 1
            self._jobs[job.id] = job
            self._forget_old()
            self._cond.notify()
        job.emit("status", job.to_json())
        return job

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def cancel(self, job: Job) -> Job:
        with self._cond:
            job._cancel.set()
            if job in self._waiting:  # never started: it ends now
                self._waiting.remove(job)
                self._finish(job, "cancelled")
                self._update_positions()
        return job

    def stats(self) -> dict:
        with self._cond:
            return {"waiting": len(self._waiting), "running": len(self._running), "max": self.max_queue}

    def shutdown(self) -> None:
        with self._cond:
            self._stop = True
            for job in list(self._waiting):
                job._cancel.set()
                self._finish(job, "cancelled")
            self._waiting.clear()
            self._cond.notify_all()
            running = [j for j in self._jobs.values() if j.id in self._running]
        for job in running:  # running work stops at its next token
            job._cancel.set()
        for t in self._threads:
            t.join(timeout=10)

    # -- workers -----------------------------------------------------------------------------
    def _worker(self, ctx: WorkerContext) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                job = self._waiting.popleft()
                self._running.add(job.id)
                job.status, job.position, job.started = "running", 0, time.time()
                self._update_positions()
            job.emit("status", job.to_json())
            try:
                result = job.work(job, ctx)
            except Cancelled:
                self._end(job, "cancelled")
            except CadenzaError as e:
                self._end(job, "error", error=str(e), exc=e)
            except Exception as e:  # a bug: the job says so, the server goes on
                log.error("job %s failed:\n%s", job.id, traceback.format_exc())
                self._end(job, "error", error=f"internal error: {type(e).__name__}: {e}", exc=e)
            else:
                if job.cancelled:
                    self._end(job, "cancelled")
                else:
                    self._end(job, "done", result=result)

    def _end(self, job: Job, status: str, result: Any = None, error: str | None = None,
             exc: BaseException | None = None) -> None:
        with self._cond:
            self._running.discard(job.id)
            self._finish(job, status, result, error, exc)

    def _finish(self, job: Job, status: str, result: Any = None, error: str | None = None,
                exc: BaseException | None = None) -> None:
        job.status, job.error, job.finished, job.position = status, error, time.time(), 0
        if status == "done":
            job.emit("done", {"job": job.to_json(), **(result if isinstance(result, dict) else {})})
            job.future.set_result(result)
        elif status == "error":
            job.emit("error", {"job": job.to_json(), "message": error})
            job.future.set_exception(exc or CadenzaError(error or "failed"))
        else:
            job.emit("cancelled", job.to_json())
            job.future.set_exception(Cancelled())

    def _update_positions(self) -> None:
        for k, job in enumerate(self._waiting):
            if job.position != k:
                job.position = k
                job.emit("status", job.to_json())

    def _forget_old(self) -> None:
        while len(self._jobs) > self.max_jobs:
            oldest = next((j for j in self._jobs.values() if j.status in TERMINAL), None)
            if oldest is None:
                return
            del self._jobs[oldest.id]
