"""The studio's settings, all in one place. ``cadenza serve`` flags map onto these fields, and
each can also come from the environment as CADENZA_<FIELD> (e.g. CADENZA_PORT=9000)."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    model: str | None = None  # the default model: a name or a folder (None: the bundled default)
    harmonize_model: str = "chorale"
    results_dir: Path | None = None  # rendered files of takes (None: a temporary folder)
    # limits
    upload_bytes: int = 2_000_000
    upload_notes: int = 20_000
    upload_seconds: float = 1200.0
    max_bars: int = 128
    max_seconds: float = 300.0
    max_queue: int = 64  # waiting jobs; one more is answered 429
    # generation threads, each with its own copy of the model: on 2 cores, 2 workers finish a burst
    # of 20 jobs about 20% sooner than 1 (bench/serve_load.py); a lone job runs as fast either way
    workers: int = 2
    max_takes: int = 500  # takes kept in memory; the oldest go first
    max_jobs: int = 1000  # finished jobs remembered

    @classmethod
    def from_env(cls, **overrides) -> "Settings":
        kw = {}
        for f in fields(cls):
            v = os.environ.get(f"CADENZA_{f.name.upper()}")
            if v is not None:
                kind = {"int": int, "float": float}.get(str(f.type).split(" ")[0], str)
                kw[f.name] = Path(v) if f.name == "results_dir" else kind(v)
        kw.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**kw)
