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
