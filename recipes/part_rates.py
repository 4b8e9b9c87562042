"""Measure how busy each instrument family is in a model's training pieces, per style: ``part_rates``.

    python recipes/part_rates.py src/cadenza/models/arrange [--pieces 60]

The engine's part control (``cadenza/engine/parts.py``) keeps every instrument of a piece from nothing
about as busy as that family is in real music of the style: notes per quarter-note beat, from
``cadenza.eval.parts``, over up to ``--pieces`` training pieces per style, presented as the training
pipeline presents them (``cadenza.train.corpora.as_trained``: POP909's melody and bridge on band
instruments, its bass line as a bass part and rule-made drums for some songs, unisons dropped). Written into the model's
config.json as ``part_rates: {style: {family: notes_per_beat}}`` plus ``"*"``, the mean over styles
(for a family a style's pieces never have). Validation pieces are not used.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from cadenza.eval.parts import part_stats
from cadenza.files import atomic_output
from cadenza.tokenizers import tokenizer_from_config
from cadenza.train.corpora import Source, as_trained, iter_pieces


def style_rates(tokenizer, sources: list[str], style: str, pieces: int) -> dict[str, float]:
    """{family: mean notes per beat of that family's parts} over the first ``pieces`` pieces of a style."""
    by_family: dict[str, list[float]] = {}
    n = 0
    for src in sources:
        for pid, score in iter_pieces(Source(src, style), only="train"):
            if n >= pieces:
                break
            score = as_trained(tokenizer, src, pid, score)
            for s in part_stats(score):
                if s["notes"]:
                    by_family.setdefault(s["family"], []).append(float(s["notes_per_beat"]))
            n += 1
    print(f"{style}: {n} pieces, " + ", ".join(f"{f} {np.mean(v):.2f}" for f, v in sorted(by_family.items())),
          file=sys.stderr)
    return {f: round(float(np.mean(v)), 3) for f, v in by_family.items()}


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
    rates = {style: style_rates(tok, srcs, style, a.pieces) for style, srcs in by_style.items()}
    families = sorted({f for r in rates.values() for f in r})
    rates["*"] = {f: round(float(np.mean([r[f] for r in rates.values() if f in r])), 3) for f in families}
    cfg["part_rates"] = rates
    with atomic_output(path) as tmp:
        Path(tmp).write_text(json.dumps(cfg, indent=2))

if __name__ == "__main__":
    main()
