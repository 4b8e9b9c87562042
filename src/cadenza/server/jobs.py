"""A bounded queue of generation jobs run by worker threads, with cancellation and event streams.

Generation is CPU work: it runs on worker threads, never on the event loop. Each worker holds its
own copies of the models it has used (a model's KV cache lives in its modules, so two threads must
not share one). A job publishes events (status, note, done, error, cancelled); any number of
readers follow them from the start, from the event loop, without polling.

A job stops when it is cancelled or when its time (``job_seconds``) runs out, wherever its work is:
every forward pass of a worker's models checks (a forward pre-hook), as do the tasks' own progress
callbacks. A job that is past its time ends as an error: "stopped: took longer than N s (limit
job_seconds)".
"""

from __future__ import annotations

import asyncio
import collections
import logging
import secrets
import threading
import time
import traceback
from collections.abc import Callable
from concurrent import futures
from concurrent.futures import Future
from typing import Any

from cadenza.errors import CadenzaError

log = logging.getLogger("cadenza.server")

TERMINAL = ("done", "cancelled", "error")


class QueueFull(Exception):
    pass


class Cancelled(Exception):
    """Raised inside a job's work when its user cancelled it."""


class TimedOut(CadenzaError):
    """Raised inside a job's work once it has run longer than its limit."""

    def __init__(self, seconds: float):
        super().__init__(f"stopped: took longer than {seconds:g} s (limit job_seconds)")


_current = threading.local()  # the job a worker thread is running


def check_current(*_) -> None:
    """Stop the job this thread runs if it was cancelled or is past its time (a forward pre-hook)."""
    job = getattr(_current, "job", None)
    if job is not None:
        job.check()


class Job:
    def __init__(self, kind: str, work: Callable[[Job, WorkerContext], Any]):
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
        self.seconds: float | None = None  # its limit; the clock starts when it does
        self.deadline: float | None = None
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
        """Stop the work here if the job was cancelled or is past its time."""
        if self._cancel.is_set():
            raise Cancelled()
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise TimedOut(self.seconds)

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
            self._loaded[key] = watched(self._loaders[kind](name))
        return self._loaded[key]


def watched(loaded):
    """``loaded`` (a model or a task object holding one as ``.model``) with every forward pass
    checking the running job: work that never calls back (scoring a piece) still stops."""
    import torch

    module = loaded if isinstance(loaded, torch.nn.Module) else getattr(loaded, "model", None)
    if isinstance(module, torch.nn.Module):
        module.register_forward_pre_hook(check_current)
    return loaded


class JobQueue:
    def __init__(self, max_queue: int, workers: int, max_jobs: int, loaders: dict[str, Callable],
                 job_seconds: float | None = None):
        self.max_queue = max_queue
        self.job_seconds = job_seconds
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
            if self._stop:
                raise QueueFull("the server is stopping")
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

    def cancel(self, job: Job, wait: float = 0.0) -> Job:
        """Cancel ``job``; a running one stops at its next token (waited for up to ``wait`` s)."""
        with self._cond:
            job._cancel.set()
            if job in self._waiting:  # never started: it ends now
                self._waiting.remove(job)
                self._finish(job, "cancelled")
                self._update_positions()
        if wait > 0:
            futures.wait([job.future], timeout=wait)
        return job

    def stats(self) -> dict:
        with self._cond:
            return {"waiting": len(self._waiting), "running": len(self._running), "max": self.max_queue}

    def stop_jobs(self) -> None:
        """Take no more jobs and cancel every one (without waiting): the server is stopping."""
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

    def shutdown(self, wait: float = 2.0) -> None:
        """``stop_jobs``, then wait up to ``wait`` s in all for the workers (daemon threads: a
        worker stuck in a library call does not keep the process alive)."""
        self.stop_jobs()
        end = time.monotonic() + wait
        for t in self._threads:
            t.join(timeout=max(0.0, end - time.monotonic()))

    # -- workers -----------------------------------------------------------------------------
    def _worker(self, ctx: WorkerContext) -> None:
        while (job := self._next()) is not None:
            job.emit("status", job.to_json())
            _current.job = job
            try:
                self._run(job, ctx)
            finally:
                _current.job = None

    def _next(self) -> Job | None:
        """The next job, marked running (None: the queue is stopping)."""
        with self._cond:
            while not self._waiting and not self._stop:
                self._cond.wait()
            if self._stop:
                return None
            job = self._waiting.popleft()
            self._running.add(job.id)
            job.status, job.position, job.started = "running", 0, time.time()
            if self.job_seconds is not None:
                job.seconds, job.deadline = self.job_seconds, time.monotonic() + self.job_seconds
            self._update_positions()
        return job

    def _run(self, job: Job, ctx: WorkerContext) -> None:
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
            self._end(job, "cancelled" if job.cancelled else "done", result=result)

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
