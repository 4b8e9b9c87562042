"""Chorale and polyphonic benchmarks (guide/benchmarks.md 1a, 1b), one ``name: value`` line per figure.

    python bench/chorales.py [--model chorale] [--jsb FILE] [--bl DIR] [--only jsb,bl,vl,speed]

``jsb_nll_<split>`` (1a): mean negative log-likelihood per token (nats) over every cell of every
chorale of the split, Music Transformer's serialization (S A T B per 16th step, one token per
cell, a rest token; no hold token). Each chorale is scored from its first cell after an unscored
BOS; a chorale longer than the model's context is scored with windows of stride <= half the
context, each later window being BOS + cells from a time step's soprano cell (as in training).
No transposition at evaluation. Default: the valid split of the shared JSON; ``--jsb FILE``
scores every split found in a JSON file of the same format (a test split held elsewhere).

``bl_<corpus>_nll_<split>`` (1b): mean over frames of -log p(frame | earlier frames), nats, each
frame scored as its pitches (lowest first) then an end-of-frame token, with the model named
``bl-<corpus>``. Default: the valid splits in ../shared/data/polyphonic-bl2012; ``--bl DIR``
scores every split of ``DIR/<corpus>*.json``.

Both likelihoods score each token among those the tokenizer's grammar allows there (rising pitches
inside a frame; no BOS/EOS inside a piece of given length): that is the distribution the sampler
uses, and it is normalized, so frame probabilities stay exact.

``vl_<count>_ours`` / ``vl_<count>_bach``: voice-leading counts per 100 beats (parallel fifths,
parallel octaves, voice crossings, notes out of SATB range, upper-voice spacing over an octave)
of our harmonizations of the valid chorales' soprano lines (the CLI's defaults: 8 particles,
temperature 0.9, parallel fifths/octaves ruled out, A/T/B in textbook ranges), and of Bach's own.
``harmonize_16_bars_s``: wall seconds to harmonize a 16-bar soprano line (model already loaded).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_JSB = "../shared/data/jsb-chorales/jsb16th_train_valid.json"
DEFAULT_BL = "../shared/data/polyphonic-bl2012"
CORPORA = ("jsb_quarter", "nottingham", "musedata", "pianomidi")
REFERENCE = {"music_transformer_relative": 0.357, "music_transformer_best": 0.335, "coconet": 0.436}
RNN_NADE = {"jsb_quarter": 5.56, "nottingham": 2.31, "musedata": 5.60, "pianomidi": 7.05}


def emit(name: str, value) -> None:
    print(f"{name}: {value:.4f}" if isinstance(value, float) else f"{name}: {value}", flush=True)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load(name):
    from cadenza.model import load_model_folder
    from cadenza.tasks.compose import find_model
    from cadenza.tokenizers import tokenizer_from_config

    model, cfg = load_model_folder(find_model(name))
    return model, tokenizer_from_config(cfg["tokenizer"]), cfg


def bench_jsb(a) -> None:
    from cadenza.eval.likelihood import corpus_nll

    model, tok, cfg = load(a.model)
    if getattr(tok, "scheme", "") != "grid":
        sys.exit(f"chorales: {a.model} is a {cfg.get('family')} model; this benchmark needs a chorale-grid model")
    data = json.loads(Path(a.jsb or DEFAULT_JSB).read_text())
    emit("jsb_model", cfg["name"])
    for split in (list(data) if a.jsb else ["valid"]):
        seqs = [tok.encode_grid(ch) for ch in data[split]]
        t0 = time.time()
        emit(f"jsb_nll_{split}", corpus_nll(model, seqs, stride=a.stride, tokenizer=tok, grammar=True))
        emit(f"jsb_tokens_{split}", sum(len(s) - 1 for s in seqs))
        log(f"scored {len(seqs)} chorales of {split} with {cfg['name']} in {time.time() - t0:.1f} s")
    for k, v in REFERENCE.items():
        emit(f"jsb_nll_valid_{k}", v)


def bench_bl(a) -> None:
    from cadenza.eval.likelihood import corpus_nll_sum

    root = Path(a.bl or DEFAULT_BL)
    beaten = 0
    for corpus in CORPORA:
        files = sorted(root.glob(f"{corpus}*.json"))
        if not files:
            log(f"no {corpus}*.json in {root}: skipped")
            continue
        try:
            model, tok, cfg = load(f"{a.bl_prefix}{corpus}")
        except Exception as e:  # noqa: BLE001 - a missing model is reported, the others still run
            log(f"no model for {corpus} ({e}): skipped")
            continue
        emit(f"bl_{corpus}_model", cfg["name"])
        for f in files:
            data = json.loads(f.read_text())
            for split in (list(data) if a.bl else ["valid"]):
                seqs = [tok.encode_frames(p) for p in data[split]]
                frames = sum(len(p) for p in data[split])
                t0 = time.time()
                total, _ = corpus_nll_sum(model, seqs, stride=a.stride, tokenizer=tok, grammar=True)
                nll = total / frames
                emit(f"bl_{corpus}_nll_{split}", nll)
                log(f"scored {len(seqs)} pieces ({frames} frames) of {f.name}:{split} in {time.time() - t0:.1f} s")
                if split == "valid" and nll < RNN_NADE[corpus]:
                    beaten += 1
        emit(f"bl_{corpus}_rnn_nade", RNN_NADE[corpus])
    emit("bl_corpora_beating_rnn_nade", beaten)


def bench_vl_and_speed(a, do_vl: bool, do_speed: bool) -> None:
    import torch

    from cadenza.eval.voice_leading import COUNTS, voice_leading_per_100_beats
    from cadenza.tasks.harmonize import Harmonizer
    from cadenza.tokenizers.grid import GridTokenizer

    harm = Harmonizer.load(a.model)
    emit("harmonize_model", harm.config["name"])
    tok = GridTokenizer()
    chorales = [np.asarray(c) for c in json.loads(Path(DEFAULT_JSB).read_text())["valid"]]
    if do_speed:
        longest = max(chorales, key=len)
        soprano = tok.grid_to_score(longest[:256, :1])  # 16 bars of 4/4
        harm.harmonize(soprano, seed=0, particles=a.particles)  # warm-up
        times = []
        for k in range(3):
            t0 = time.perf_counter()
            harm.harmonize(soprano, seed=k, particles=a.particles, temperature=a.temperature)
            times.append(time.perf_counter() - t0)
        emit("harmonize_16_bars_s", float(np.median(times)))
        emit("harmonize_particles", a.particles)
    if do_vl:
        pick = chorales[: a.vl_count] if a.vl_count else chorales
        ours = []
        t0 = time.time()
        for k, ch in enumerate(pick):
            res = harm.harmonize(tok.grid_to_score(ch[:, :1]), seed=k, particles=a.particles,
                                 temperature=a.temperature)
            g = res.grids[0]
            ours.append(g[: len(ch)])
            if (k + 1) % 10 == 0:
                log(f"harmonized {k + 1}/{len(pick)} soprano lines ({time.time() - t0:.0f} s)")
        mine = voice_leading_per_100_beats(ours)
        bach = voice_leading_per_100_beats(pick)
        emit("vl_chorales", len(pick))
        emit("vl_temperature", a.temperature)
        for c in COUNTS:
            emit(f"vl_{c}_ours", mine[c])
            emit(f"vl_{c}_bach", bach[c])
        within = sum(mine[c] <= 2 * bach[c] + 1e-9 for c in COUNTS)
        emit("vl_counts_within_2x_bach", f"{within}/{len(COUNTS)}")
        # how the harmonizations sound to the likelihood model: NLL of ours vs Bach's (lower = more Bach-like)
        from cadenza.eval.likelihood import corpus_nll

        m, t, _ = load(a.model)
        emit("vl_nll_ours", corpus_nll(m, [t.encode_grid(g) for g in ours], tokenizer=t, grammar=True))
        emit("vl_nll_bach", corpus_nll(m, [t.encode_grid(g) for g in pick], tokenizer=t, grammar=True))
    del torch


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="chorale", help="a chorale-grid model folder or name (default: chorale)")
    ap.add_argument("--jsb", help="JSON {split: [chorale, ...]}: score every split in it")
    ap.add_argument("--bl", help="folder of <corpus>*.json piano-roll files: score every split in them")
    ap.add_argument("--bl-prefix", default="bl-", help="models are found as PREFIX<corpus> (default bl-)")
    ap.add_argument("--stride", type=int, help="window stride for long pieces (default: half the context)")
    ap.add_argument("--only", default="jsb,bl,vl,speed", help="comma-separated parts to run")
    ap.add_argument("--particles", type=int, default=8, help="harmonizer particles (default 8, the CLI's)")
    ap.add_argument("--temperature", type=float, default=0.9, help="harmonizer temperature (default 0.9, the CLI's)")
    ap.add_argument("--vl-count", type=int, default=0, help="harmonize only the first N valid chorales (0 = all 76)")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)

    import torch

    torch.set_num_threads(a.threads)
    parts = set(a.only.split(","))
    if "jsb" in parts:
        bench_jsb(a)
    if "bl" in parts:
        bench_bl(a)
    if parts & {"vl", "speed"}:
        bench_vl_and_speed(a, "vl" in parts, "speed" in parts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
