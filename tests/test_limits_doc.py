"""The README's Limits table says what cadenza.limits enforces (issue 18: one table, kept in step)."""

from __future__ import annotations

import re
from pathlib import Path

from cadenza.limits import FORCE, table

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_readme_lists_every_limit_with_its_value_and_force():
    text = README.read_text(encoding="utf-8").split("### Limits", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| `([a-z_]+)`(?: / `([a-z_]+)`)? \| ([\d.]+)(?: / ([\d.]+))? \| (.*) \|$", text, re.M)
    documented = {}
    for a, b, va, vb, what in rows:
        documented[a] = (float(va), "*force*" in what)
        if b:
            documented[b] = (float(vb), "*force*" in what)
    limits = table()
    assert set(documented) == set(limits)
    for name, value in limits.items():
        assert documented[name] == (float(value), name in FORCE), name


def test_the_studio_starts_from_the_same_limits():
    """The README: 'the same numbers on the command line and in the studio' (the studio had its own 128 bars,
    300 s, 20,000 notes and 20 minutes)."""
    from cadenza.limits import LIMITS
    from cadenza.server.settings import Settings

    s = Settings()
    assert (s.upload_notes, s.upload_seconds, s.max_bars, s.max_seconds, s.body_bytes, s.upload_bytes,
            s.job_seconds) == (LIMITS.notes, LIMITS.score_seconds, LIMITS.bars, LIMITS.seconds, LIMITS.body_bytes,
                               LIMITS.upload_bytes, LIMITS.job_seconds)


def test_the_token_and_limits_come_from_the_environment(monkeypatch):
    """docs/studio-api.md: `$CADENZA_TOKEN` sets the token; every setting reads CADENZA_<FIELD>."""
    from cadenza.server.settings import Settings

    monkeypatch.setenv("CADENZA_TOKEN", "from-env")
    monkeypatch.setenv("CADENZA_MAX_BARS", "64")
    monkeypatch.setenv("CADENZA_NO_TOKEN", "yes")
    s = Settings.from_env()
    assert (s.token, s.max_bars, s.no_token) == ("from-env", 64, True)


def test_one_range_for_temperature_tempo_and_seed_everywhere(tmp_path):
    """Issue 19: temperature was limited to (0, inf) on the CLI, (0, 3] in the API and 0.1-2 on the page;
    the API's seeds stopped at 2^31 - 1 and its tempos at 20-300 where the CLI took 2^32 - 1 and 10-1000.
    Now the CLI (SamplingConfig), the API schema, /api/options and the page's controls take LIMITS'."""
    import re

    import pytest

    from cadenza.engine.sampling import SamplingConfig
    from cadenza.errors import CadenzaError
    from cadenza.limits import LIMITS
    from cadenza.server.app import create_app
    from cadenza.server.settings import Settings

    for t in (LIMITS.temperature_min, LIMITS.temperature_max):
        SamplingConfig(temperature=t).validate()
    for t in (LIMITS.temperature_min / 2, LIMITS.temperature_max * 1.01):
        with pytest.raises(CadenzaError, match="temperature must be from 0.01 to 3"):
            SamplingConfig(temperature=t).validate()
    app = create_app(Settings(no_token=True, results_dir=tmp_path))
    props = app.openapi()["components"]["schemas"]["Generate"]["properties"]
    assert (props["temperature"]["minimum"], props["temperature"]["maximum"]) == (LIMITS.temperature_min,
                                                                                   LIMITS.temperature_max)
    seed = next(s for s in props["random_seed"]["anyOf"] if s.get("type") == "integer")
    tempo = next(s for s in props["tempo"]["anyOf"] if s.get("type") == "number")
    assert (seed["maximum"], tempo["minimum"], tempo["maximum"]) == (LIMITS.seed_max, LIMITS.tempo_min,
                                                                      LIMITS.tempo_max)
    page = (Path(__file__).resolve().parent.parent / "src/cadenza/server/static/index.html").read_text()
    for control in ("temperature", "harm-temperature"):
        lo, hi = re.search(rf'id="{control}" type="range" min="([\d.]+)" max="([\d.]+)"', page).groups()
        assert (float(lo), float(hi)) == (LIMITS.temperature_min, LIMITS.temperature_max)
