"""Measure how busy each instrument family is in a model's training pieces, per style: ``part_rates``.

    python recipes/part_rates.py src/cadenza/models/arrange [--pieces 60]

The engine's part control (``cadenza/engine/parts.py``) keeps every instrument of a piece from nothing
about as busy as that family is in real music of the style: notes per quarter-note beat, from
``cadenza.eval.parts``, over up to ``--pieces`` training pieces per style, presented as the training
pipeline presents them (``cadenza.train.corpora.as_trained``: POP909's melody and bridge on band
instruments, its bass line as a bass part and rule-made drums for some songs, unisons dropped). Written into the model's
config.json as ``part_rates: {style: {family: notes_per_beat}}`` plus ``"*"``, the mean over styles
(for a family a style's pieces never have), and ``part_plans: {style: {family: {share, on_rate, lead_in,
on_runs, off_runs}}}``: how long that family's parts play and rest at a stretch, from which the engine
draws each instrument's plan of playing and resting bars (``cadenza.engine.parts.part_plan``).
Validation pieces are not used.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

from cadenza.eval.parts import part_stats
from cadenza.files import atomic_output
from cadenza.tokenizers import tokenizer_from_config
from cadenza.train.corpora import Source, as_trained, iter_pieces


QUANTILES = 32  # run lengths are kept as this many quantiles: the distribution, in a few numbers
MIN_PARTS = 8  # a family with fewer parts in a style is left to the other styles' figures ("*")
PATTERN_BARS = 160  # a real part's pattern of playing bars is kept over its piece's first bars (4 minutes)


def _quantiles(values: list[int]) -> list[int]:
    """``QUANTILES`` evenly spaced quantiles of ``values`` (rounded bars; all of them if fewer)."""
    if len(values) <= QUANTILES:
        return sorted(int(v) for v in values)
    return [int(q) for q in np.quantile(values, (np.arange(QUANTILES) + 0.5) / QUANTILES, method="inverted_cdf")]


def pattern(playing: np.ndarray) -> list[int]:
    """A part's bars as run lengths over its piece's first ``PATTERN_BARS`` bars: resting (0 where it
    plays from bar 1), playing, resting, ..."""
    flags = np.asarray(playing[:PATTERN_BARS], dtype=bool)
    out = [0] if len(flags) and flags[0] else []
    k = 0
    while k < len(flags):
        j = k
        while j < len(flags) and flags[j] == flags[k]:
            j += 1
        out.append(j - k)
        k = j
    return out


def style_rates(tokenizer, sources: list[str], style: str, pieces: int) -> tuple[dict[str, float], dict[str, dict]]:
    """({family: mean notes per beat of that family's parts}, {family: its plan statistics}) over the
    first ``pieces`` pieces of a style. A plan's statistics: ``share`` (bars playing), ``on_rate``
    (notes per beat over the bars it plays), ``lead_in`` (bars before it enters), ``on_runs`` and
    ``off_runs`` (lengths of its runs of playing and resting bars after that), as quantiles; a run of
    playing that lasts to the piece's end is negative (it says "to the end", not how long); ``patterns``:
    each real part's own runs (``pattern``), which a plan replays whole."""
    from cadenza.eval.parts import runs

    by_family: dict[str, dict[str, list]] = {}
    n = 0
    for src in sources:
        for pid, score in iter_pieces(Source(src, style), only="train"):
            if n >= pieces:
                break
            score = as_trained(tokenizer, src, pid, score)
            for s in part_stats(score):
                if not s["notes"]:
                    continue
                f = by_family.setdefault(s["family"], {k: [] for k in ("rate", "share", "on_rate", "lead_in",
                                                                         "on_runs", "off_runs", "patterns")})
                f["rate"].append(float(s["notes_per_beat"]))
                f["share"].append(float(s["bars_playing_share"]))
                f["on_rate"].append(float(s["notes_per_beat"]) / max(float(s["bars_playing_share"]), 1e-9))
                f["patterns"].append(pattern(s["playing"]))
                on, off = runs(s["playing"])
                if s["playing"][-1]:  # it plays to the end: that run's length is the piece's, not the part's
                    on[-1] = -on[-1]
                if not s["playing"][-1] and off:  # a rest to the piece's end (an outro without it) is not
                    off.pop()  # a rest it comes back from: left out, like the length of a run to the end
                lead = off.pop(0) if len(s["playing"]) and not s["playing"][0] and off else 0
                f["lead_in"].append(lead)
                f["on_runs"] += on
                f["off_runs"] += off
            n += 1
    print(f"{style}: {n} pieces, " + ", ".join(f"{f} {np.mean(v['rate']):.2f}/beat in {np.mean(v['share']):.2f} "
                                               f"of bars" for f, v in sorted(by_family.items())), file=sys.stderr)
    by_family = {f: v for f, v in by_family.items() if len(v["rate"]) >= MIN_PARTS}
    rates = {f: round(float(np.mean(v["rate"])), 3) for f, v in by_family.items()}
    plans = {f: {"share": round(float(np.mean(v["share"])), 3), "on_rate": round(float(np.mean(v["on_rate"])), 3),
                 **{k: _quantiles(v[k]) for k in ("lead_in", "on_runs", "off_runs")}, "patterns": v["patterns"]}
             for f, v in by_family.items()}
    return rates, plans


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", help="model folder whose config.json gets part_rates")
    ap.add_argument("--pieces", type=int, default=60)
    a = ap.parse_args()
    path = Path(a.model) / "config.json"
    cfg = json.loads(path.read_text())
    by_style: dict[str, list[str]] = {}  # a style may have several sources (the quartets: three composers)
    for spec in cfg["training"]["data"]:
        src, _, style = spec.rpartition("=")
        if src:
            by_style.setdefault(style, []).append(src)
    tok = tokenizer_from_config(cfg["tokenizer"])
    measured = {style: style_rates(tok, srcs, style, a.pieces) for style, srcs in by_style.items()}
    rates = {style: r for style, (r, _) in measured.items()}
    plans = {style: p for style, (_, p) in measured.items()}
    families = sorted({f for r in rates.values() for f in r})
    rates["*"] = {f: round(float(np.mean([r[f] for r in rates.values() if f in r])), 3) for f in families}
    plans["*"] = {f: next(p[f] for p in plans.values() if f in p) for f in families}  # first style that has it
    cfg["part_rates"] = rates
    cfg["part_plans"] = plans
    with atomic_output(path) as tmp:
        # lists of numbers on one line each (indent=2 gives every run length a line of its own)
        def one_line(m):
            return re.sub(r"\s+", " ", m.group(0)).replace("[ ", "[").replace(" ]", "]")

        text = re.sub(r"\[[\d\s.,-]*\]", one_line, json.dumps(cfg, indent=2))
        Path(tmp).write_text(text)

if __name__ == "__main__":
    main()
