"""The studio's settings, all in one place. ``cadenza serve`` flags map onto these fields, and
each can also come from the environment as CADENZA_<FIELD> (e.g. CADENZA_PORT=9000)."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

from cadenza.limits import LIMITS


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    model: str | None = None  # the default model: a name or a folder (None: the bundled default)
    harmonize_model: str = "chorale"
    results_dir: Path | None = None  # rendered files of takes (None: a temporary folder)
    # who may use it (server/guard.py): every /api request shows this token (None: a new random one
    # each run, printed in the address `cadenza serve` shows); no_token: none asked (--no-token)
    token: str | None = None
    no_token: bool = False
    allow_hosts: str = ""  # host names it answers to beyond localhost, 127.0.0.1, [::1] and --host (commas)
    # limits: the CLI's own (the shared table cadenza.limits.LIMITS, the README's "Limits"); a server may
    # set them lower (e.g. CADENZA_MAX_BARS=64), never higher: bars and seconds are capped at LIMITS too
    body_bytes: int = LIMITS.body_bytes  # a JSON request body
    upload_bytes: int = LIMITS.upload_bytes
    upload_notes: int = LIMITS.notes
    upload_seconds: float = LIMITS.score_seconds
    max_bars: int = LIMITS.bars
    max_seconds: float = LIMITS.seconds
    job_seconds: float = LIMITS.job_seconds  # one job's or one rendering's wall time; past it, it stops
    max_queue: int = 64  # waiting jobs; one more is answered 429
    # generation threads, each with its own copy of the model: on 2 cores, 2 workers finish a burst
    # of 20 jobs about 20% sooner than 1 (bench/serve_load.py); a lone job runs as fast either way
    workers: int = 2
    renderers: int = 2  # child processes at once for MusicXML, WAV, sheet music and MusicXML uploads
    max_takes: int = 500  # takes kept in memory; the oldest go first
    max_jobs: int = 1000  # finished jobs remembered

    @classmethod
    def from_env(cls, **overrides) -> Settings:
        kw = {}
        for f in fields(cls):
            v = os.environ.get(f"CADENZA_{f.name.upper()}")
            if v is not None:
                kw[f.name] = _parse(f.name, str(f.type).split(" ")[0], v)
        kw.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**kw)


def _parse(name: str, kind: str, text: str):
    if name == "results_dir":
        return Path(text)
    if kind == "bool":
        return text.strip().lower() in ("1", "true", "yes", "on")
    return {"int": int, "float": float}.get(kind, str)(text)
