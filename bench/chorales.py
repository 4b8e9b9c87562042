"""Chorale benchmarks (guide/benchmarks.md section 1a), one ``name: value`` line per figure.

    python bench/chorales.py --model runs/chorale [--jsb FILE] [--stride N]

``jsb_nll_<split>``: mean negative log-likelihood per token (nats) over every cell of every
chorale of the split, Music Transformer's serialization (S A T B per 16th step, one token per
cell, a rest token; no hold token). Each chorale is scored from its first cell after an unscored
BOS; a chorale longer than the model's context is scored with windows of stride <= half the
context, each later window being BOS + cells from a time step's soprano cell (as in training). No transposition at evaluation. ``--jsb FILE`` scores every split found in a JSON file
of the same format (so a test split held elsewhere is scored by the same code).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

DEFAULT_JSB = "../shared/data/jsb-chorales/jsb16th_train_valid.json"
REFERENCE = {"music_transformer_relative": 0.357, "music_transformer_best": 0.335, "coconet": 0.436}


def emit(name: str, value) -> None:
    print(f"{name}: {value:.4f}" if isinstance(value, float) else f"{name}: {value}", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="chorale", help="a grid-family model folder or name")
    ap.add_argument("--jsb", help="JSON {split: [chorale, ...]}: score every split in it "
                    "(default: the valid split of ../shared/data/jsb-chorales/jsb16th_train_valid.json)")
    ap.add_argument("--stride", type=int, help="window stride for long chorales (default: half the context)")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)

    import torch

    from cadenza.eval.likelihood import corpus_nll
    from cadenza.model import load_model_folder
    from cadenza.tasks.compose import find_model
    from cadenza.tokenizers import tokenizer_from_config

    torch.set_num_threads(a.threads)
    model, cfg = load_model_folder(find_model(a.model))
    tok = tokenizer_from_config(cfg["tokenizer"])
    if getattr(tok, "scheme", "") != "grid":
        sys.exit(f"chorales: {a.model} is a {cfg.get('family')} model; this benchmark needs a chorale-grid model")
    data = json.loads(Path(a.jsb or DEFAULT_JSB).read_text())
    splits = list(data) if a.jsb else ["valid"]
    for split in splits:
        seqs = [tok.encode_grid(ch) for ch in data[split]]
        t0 = time.time()
        nll = corpus_nll(model, seqs, stride=a.stride, tokenizer=tok)
        emit(f"jsb_nll_{split}", nll)
        emit(f"jsb_tokens_{split}", sum(len(s) - 1 for s in seqs))
        print(f"scored {len(seqs)} chorales of {split} in {time.time() - t0:.1f} s", file=sys.stderr)
    for k, v in REFERENCE.items():
        emit(f"jsb_nll_valid_{k}", v)
    return 0


if __name__ == "__main__":
    sys.exit(main())
