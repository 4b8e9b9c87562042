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
