"""Measure each style's loop rate on a model's training pieces and store it as ``repeat_rate``.

    python recipes/repeat_rates.py src/cadenza/models/small [--bars 64] [--pieces 40]

The engine's bar repetition control (cadenza/engine/repeat.py) steers generated music to repeat
bars about as often as this (the loop rate of guide/benchmarks.md, section 3, on the first
``--bars`` bars of up to ``--pieces`` training pieces per style, from the sources named in the
model's config.json). Validation pieces are not used, so the benchmark's real set stays unseen.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from cadenza.eval.metrics import loop_rate
from cadenza.score.bars import bar_starts
from cadenza.train.corpora import Source, iter_pieces


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", help="model folder whose config.json gets repeat_rate")
    ap.add_argument("--bars", type=int, default=64)
    ap.add_argument("--pieces", type=int, default=40)
    a = ap.parse_args()
    path = Path(a.model) / "config.json"
    cfg = json.loads(path.read_text())
    by_style: dict[str, list[float]] = {}  # a style may have several sources (the quartets: three composers)
    for spec in cfg["training"]["data"]:
        src, _, style = spec.rpartition("=")
        if not src:
            continue
        vals = by_style.setdefault(style, [])
        for _, score in iter_pieces(Source(src, style), only="train"):
            if len(vals) >= a.pieces:
                break
            starts = bar_starts(score, int(score.end()) + 1)
            if len(starts) < 8:
                continue
            end = int(starts[a.bars]) if len(starts) > a.bars else int(score.end()) + 1
            vals.append(loop_rate(score.clip(int(starts[0]), end)))
        print(f"{style}: {np.nanmean(vals):.4f} ({len(vals)} pieces so far)", file=sys.stderr)
    rates = {style: round(float(np.nanmean(vals)), 4) for style, vals in by_style.items() if vals}
    cfg["repeat_rate"] = rates
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(cfg, f, indent=2)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
