"""Score work that may take long, in a child process the studio can stop: reading a MusicXML
upload, writing MusicXML or WAV, engraving sheet music.

music21, verovio and FluidSynth cannot be stopped midway from another thread (a hostile upload of
2,000 notes in 8 parts takes music21 about 35 s to write as MusicXML); a process can. Each task runs
in a fresh ``python -m cadenza.server.render`` (about 0.7 s to start), killed when its time
(``job_seconds``) runs out, when the client that asked has left, or when the server stops. At most
``processes`` run at once; the others wait their turn, off the event loop.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import sys
import tempfile
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.exceptions import HTTPException

from cadenza.errors import CadenzaError


# ------------------------------------------------------------------------ the work (any process)
def read_upload(data: bytes, name: str, suffix: str, max_notes: int, max_seconds: float):
    """An uploaded file's Score (ticks, tpq 480): 400 for a file it cannot read, 413 for one too big."""
    from cadenza.score import read_score
    from cadenza.server import studio

    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / f"upload{suffix}"
        p.write_bytes(data)
        try:
            score = read_score(p)
        except CadenzaError as e:
            raise HTTPException(400, str(e).replace(p.name, name)) from None
    try:
        return studio.check_upload(score, name, max_notes, max_seconds)
    except CadenzaError as e:
        raise HTTPException(413, str(e)) from None


def write_file(score, path: str, name: str) -> str:
    """``score`` written to ``path`` by its suffix (through a temporary name: never half a file)."""
    from cadenza.render.outputs import write_outputs

    final = Path(path)
    part = final.with_name(f"{final.stem}.part-{os.getpid()}{final.suffix}")
    write_outputs(score, [part], name=name)
    os.replace(part, final)
    return path


def sheet_pages(score, title: str) -> list[str]:
    from cadenza.render.notation import svg_pages

    return svg_pages(score, title=title, name=title)


TASKS = {"read": read_upload, "file": write_file, "sheet": sheet_pages}


def child_main() -> None:
    """Read (task, kwargs) pickled on stdin; write ("ok", result) or ("error", status, line) to stdout."""
    answer = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # what a library prints goes to stderr, never into the answer
    task, kw = pickle.loads(sys.stdin.buffer.read())
    try:
        result = ("ok", TASKS[task](**kw))
    except HTTPException as e:
        result = ("error", e.status_code, e.detail)
    except CadenzaError as e:
        result = ("error", 422, str(e))
    except Exception as e:  # a bug: said in one line, the traceback on stderr
        traceback.print_exc()
        result = ("error", 500, f"internal error: {type(e).__name__}: {e}"[:300])
    pickle.dump(result, answer)
    answer.flush()


# -------------------------------------------------------------------------- the parent's side
class Renderer:
    """Runs TASKS in child processes, ``processes`` at once, each for at most ``seconds``."""

    def __init__(self, processes: int, seconds: float):
        self.processes, self.seconds = processes, seconds
        self._slots: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}
        self._children: set[asyncio.subprocess.Process] = set()

    async def run(self, task: str, gone: Callable[[], Awaitable[bool]] | None = None, **kw):
        """The task's result. HTTPException: its own error, 503 when its time ran out or the
        server is stopping (``gone()`` true: the client left, the child is killed)."""
        loop = asyncio.get_running_loop()
        slots = self._slots.setdefault(loop, asyncio.Semaphore(self.processes))
        async with slots:
            child = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "cadenza.server.render", stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            self._children.add(child)
            try:
                out, err = await self._wait(child, pickle.dumps((task, kw)), gone)
            finally:
                self._children.discard(child)
        return self._result(task, out, err, child.returncode)

    async def _wait(self, child, payload: bytes, gone) -> tuple[bytes, bytes]:
        talk = asyncio.ensure_future(child.communicate(payload))
        deadline = asyncio.get_running_loop().time() + self.seconds
        try:
            while True:
                done, _ = await asyncio.wait({talk}, timeout=0.2)
                if done:
                    return talk.result()
                if asyncio.get_running_loop().time() > deadline:
                    raise HTTPException(503, f"stopped: took longer than {self.seconds:g} s (limit job_seconds)")
                if gone is not None and await gone():
                    raise HTTPException(503, "stopped: the client left")
        finally:
            if child.returncode is None:
                child.kill()
            if not talk.done():
                await asyncio.shield(talk)  # the pipes close once the child is gone

    @staticmethod
    def _result(task: str, out: bytes, err: bytes, code: int | None):
        try:
            answer = pickle.loads(out)  # our own child's answer
        except Exception:
            lines = err.decode("utf-8", "replace").strip().splitlines()
            raise HTTPException(503, f"stopped: the {task} process ended ({code}) without an answer"
                                     + (f": {lines[-1][:200]}" if lines else "")) from None
        if answer[0] == "ok":
            return answer[1]
        raise HTTPException(answer[1], answer[2])

    def stop(self) -> None:
        """Kill every running child (the server is stopping)."""
        for child in list(self._children):
            if child.returncode is None:
                child.kill()


if __name__ == "__main__":
    child_main()
