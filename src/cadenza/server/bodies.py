"""The JSON bodies the studio's API takes, and the checks that need more than one field.

Every limit is checked here, before a job is queued: a request the studio cannot finish in
reasonable time and memory is a 422 with one line, never a job that grows without end.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import HTTPException
from pydantic import BaseModel, ConfigDict, Field, model_validator

from cadenza.limits import LIMITS


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data):
        """Unknown fields in one error, found before any is validated (pydantic would build one
        error per unknown key: a second of the event loop for a megabyte of them)."""
        if isinstance(data, dict):
            unknown = [k for k in data if k not in cls.model_fields]
            if unknown:
                more = f" (and {len(unknown) - 3} more)" if len(unknown) > 3 else ""
                names = ", ".join(repr(str(k)[:40]) for k in unknown[:3])
                raise ValueError(f"unknown field{'s' if len(unknown) > 1 else ''} {names}{more}")
        return data


Temperature = Annotated[float, Field(ge=LIMITS.temperature_min, le=LIMITS.temperature_max)]
TopP = Annotated[float, Field(gt=0, le=1.0)]
RandomSeed = Annotated[int | None, Field(ge=0, le=LIMITS.seed_max)]
Tempo = Annotated[float | None, Field(ge=LIMITS.tempo_min, le=LIMITS.tempo_max)]


class TextSeed(Body):
    notes: str | None = Field(None, max_length=5000)
    chords: str | None = Field(None, max_length=2000)
    tempo: Tempo = None
    meter: str | None = Field(None, max_length=20)
    instrument: str | None = Field(None, max_length=100)


class Generate(Body):
    model: str | None = Field(None, max_length=1000)
    style: str | None = Field(None, max_length=100)
    seed_take: str | None = Field(None, max_length=20)
    bars: Annotated[int | None, Field(ge=1)] = None
    seconds: Annotated[float | None, Field(gt=0)] = None
    temperature: Temperature = 1.0
    top_p: TopP = 0.95
    tempo: Tempo = None
    key: str | None = Field(None, max_length=20)
    meter: str | None = Field(None, max_length=20)
    instruments: list[Annotated[str, Field(max_length=100)]] | None = Field(None, max_length=16)
    chords: str | None = Field(None, max_length=2000)
    repeat: Annotated[int, Field(ge=1, le=16)] = 1
    random_seed: RandomSeed = None


class Regenerate(Body):
    take: str = Field(max_length=20)
    bars: Annotated[list[int], Field(min_length=2, max_length=2)]
    model: str | None = Field(None, max_length=1000)
    style: str | None = Field(None, max_length=100)
    temperature: Temperature = 1.0
    top_p: TopP = 0.95
    random_seed: RandomSeed = None


class Harmonize(Body):
    take: str = Field(max_length=20)
    regenerate: str | None = Field(None, max_length=200)
    temperature: Temperature = 0.9
    random_seed: RandomSeed = None


class Learn(Body):
    model: str | None = Field(None, max_length=1000)
    style: str | None = Field(None, max_length=100)
    seed_take: str | None = Field(None, max_length=20)
    notes: Annotated[int, Field(ge=1, le=64)] = 16
    temperature: Temperature = 1.0
    top_p: TopP = 0.95
    random_seed: RandomSeed = None
    top: Annotated[int, Field(ge=1, le=32)] = 8


class Surprise(Body):
    take: str = Field(max_length=20)
    model: str | None = Field(None, max_length=1000)
    style: str | None = Field(None, max_length=100)


# ------------------------------------------------------------------------------------- checks
def meter(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d{1,2})\s*/\s*(\d{1,2})\s*", text)
    if not m or int(m[1]) < 1 or int(m[2]) not in (1, 2, 4, 8, 16, 32):
        raise HTTPException(422, f"meter '{text}' is not a time signature like 3/4 or 6/8")
    return int(m[1]), int(m[2])


def bar_range(first: int, last: int, n_bars: int, max_bars: int) -> None:
    """Bars ``first``-``last`` (1-based, inclusive) of a piece of ``n_bars``: inside it, and at most
    ``max_bars`` (and LIMITS.bars) of them at once."""
    cap = min(max_bars, LIMITS.bars)
    if first < 1 or last < first:
        raise HTTPException(422, f"bars {first}-{last}: give a range from bar 1 on, first <= last")
    if last > n_bars:
        raise HTTPException(422, f"bars {first}-{last} are outside the piece, which has {n_bars} bars")
    if last - first + 1 > cap:
        raise HTTPException(422, f"bars {first}-{last}: at most {cap} bars at once (limit bars)")


def length(bars: int | None, seconds: float | None, max_bars: int, max_seconds: float) -> None:
    """A generation's length: bars or seconds (not both), within the limits."""
    if bars is not None and seconds is not None:
        raise HTTPException(422, "give bars or seconds, not both")
    cap = min(max_bars, LIMITS.bars)
    if bars is not None and bars > cap:
        raise HTTPException(422, f"bars: at most {cap} (got {bars})")
    cap_s = min(max_seconds, LIMITS.seconds)
    if seconds is not None and seconds > cap_s:
        raise HTTPException(422, f"seconds: at most {cap_s:g} (got {seconds:g})")
