"""Foundation benchmark: decoding speed, real-time factor and objective measures vs. real music.

    python bench/foundation.py [--model NAME|DIR] [--data ../shared/data] [--prompts 20]
                               [--threads 2] [--quick]

Prints one ``name: value`` line per figure on stdout and nothing else (progress goes to stderr):

- ``tokens_per_s``: new tokens per wall second at batch 1 after prefill (engine ``stream`` from
  a short header prompt, timed from the first yielded token to the last; no context slide).
- ``realtime_factor``: seconds of music per wall second for ``model.generate(bars=16)``
  (``realtime_factor_wall_s``: the wall time of that call, ``realtime_factor_music_s``: the music).
- ``scale_consistency_*``, ``pitch_class_entropy_*``, ``loop_rate_*``: for each style the model
  knows, validation pieces (the training split, ``cadenza.train.corpora.is_valid``) are cut into
  a 4-bar prompt and the next bars; the model continues the prompt for as many bars; the measure
  is taken on the generated continuation and on the real one (see guide/benchmarks.md, section 3).

Run from the repository root so data paths spell the same piece ids training used.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

# the data each style was trained on (recipes/default_model.sh); specs are relative to --data
STYLE_DATA = {"folk": "nottingham", "chorale": "music21:bach", "pop": "pop909", "classical": "asap"}
PROMPT_BARS = 4


def log(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


def emit(name: str, value) -> None:
    if isinstance(value, float):
        value = "nan" if math.isnan(value) else f"{value:.4f}"
    print(f"{name}: {value}", flush=True)


def nanmean(xs) -> float:
    xs = [x for x in xs if not math.isnan(x)]
    return float(np.mean(xs)) if xs else math.nan


# ----------------------------------------------------------------------------------------- speed
def header_prompt(model, style: str | None) -> list[int]:
    """BOS, style, then the first Bar/TimeSig/Position/Tempo, as compose.py does for an empty prompt.

    A model with controls also gets a key (C major) and an instrument (piano) in its header and a
    C major chord for bar 1, so the prompt is one its grammar accepts."""
    from cadenza.score.harmony import chord_label
    from cadenza.tokenizers.remi import T_BAR

    tok = model.tokenizer
    head = tok.header(style, (0, "major") if tok.key_on else None, [0] if tok.insts_on else None)
    chord = [tok.chord_id[chord_label((0, "maj"))]] if tok.chords_on else []
    return head + [int(tok.ids_of_type[T_BAR][0]), tok.tsig_id[(4, 4)], *chord,
                   int(tok.ids_of_type[6][0]), tok.nearest_tempo_id(120.0)]


def tokens_per_second(model, style: str | None, n_tokens: int, seed: int = 0) -> tuple[float, int]:
    """New tokens per wall second at batch 1, after prefill; returns (rate, tokens timed)."""
    from cadenza.engine import SamplingConfig, StopConfig, stream

    prompt = header_prompt(model, style)
    # stay inside the context window so no re-prefill (context slide) is timed
    n = max(2, min(n_tokens, model.model.cfg.max_seq_len - len(prompt) - 2))
    # a huge bar budget keeps EOS masked, so exactly n tokens are sampled
    stop = StopConfig(bars=10**9, max_tokens=n)
    sampling = SamplingConfig(seed=seed)
    constraints = {"time_signature": (4, 4)}
    for _ in stream(model.model, model.tokenizer, prompt, sampling=sampling,
                    stop=StopConfig(bars=10**9, max_tokens=8), constraints=constraints):
        pass  # warm-up
    times = []
    for _ in stream(model.model, model.tokenizer, prompt, sampling=sampling, stop=stop, constraints=constraints):
        times.append(time.perf_counter())
    if len(times) < 2:
        return math.nan, len(times)
    # tokens after the first (which includes the prefill) over the time they took
    return (len(times) - 1) / (times[-1] - times[0]), len(times) - 1


def realtime_factor(model, bars: int, seed: int = 0) -> tuple[float, float, float]:
    """(music seconds / wall seconds, wall seconds, music seconds) for ``model.generate(bars=...)``."""
    from cadenza.score import score_seconds

    model.generate(max_tokens=8, seed=seed)  # warm-up
    t0 = time.perf_counter()
    score = model.generate(bars=bars, seed=seed)
    wall = time.perf_counter() - t0
    music = score_seconds(score)
    return music / wall, wall, music


# ------------------------------------------------------------------------------------ real data
def validation_pieces(spec: str, style: str):
    """(piece id, score) of the validation pieces of a source: the very split training used."""
    from cadenza.train.corpora import Source, iter_pieces

    yield from iter_pieces(Source(spec, style), only="valid")


def cut(score, start: int, end: int):
    """Notes starting in [start, end), moved so ``start`` is tick 0 (bars stay aligned)."""
    return score.clip(start, end).shift_time(-start)


def _bars(score, n: int) -> np.ndarray:
    from cadenza.score.bars import bar_starts

    # bar_starts stops at `until`; ask far enough for n bars of the longest meter we meet (16/4 = 16 quarters)
    starts = bar_starts(score, n * 16 * int(score.tpq) + 1)
    return starts[:n]


def compare(model, style: str, spec: str, n_prompts: int, bars: int, seed: int) -> dict[str, list[float]]:
    """Generated vs. real continuations of validation pieces of one style."""
    from cadenza.errors import CadenzaError
    from cadenza.eval import loop_rate, pitch_class_entropy, scale_consistency

    measures = {"scale_consistency": scale_consistency, "pitch_class_entropy": pitch_class_entropy,
                "loop_rate": loop_rate}
    out: dict[str, list[float]] = {f"{m}_{kind}": [] for m in measures for kind in ("generated", "real")}
    used = skipped = 0
    for pid, piece in validation_pieces(spec, style):
        if used >= n_prompts:
            break
        piece = piece if str(piece.ttype).endswith("Tick") else piece.to("tick")
        b = _bars(piece, PROMPT_BARS + bars + 1)
        prompt_end, real_end = int(b[PROMPT_BARS]), int(b[PROMPT_BARS + bars])
        pitched = [t for t in piece.tracks if not t.is_drum and len(t.notes)]
        # the piece must have music in the prompt and reach the last continuation bar
        if not pitched or piece.end() <= int(b[PROMPT_BARS + bars - 1]):
            skipped += 1
            continue
        prompt = piece.clip(0, prompt_end)
        real = cut(piece, prompt_end, real_end)
        if prompt.note_num() == 0 or real.note_num() == 0:
            skipped += 1
            continue
        t0 = time.perf_counter()
        try:
            gen = model.generate(prompt, bars=bars, style=style, seed=seed + used)
        except CadenzaError as e:  # e.g. a meter the model does not know
            log(f"  skip {pid}: {e}")
            skipped += 1
            continue
        # the generated score may be resampled (480 tpq): find the prompt end in its own ticks
        gen_end = int(_bars(gen, PROMPT_BARS + 1)[PROMPT_BARS])
        new = cut(gen, gen_end, max(gen.end(), gen_end) + 1)
        for m, f in measures.items():
            out[f"{m}_generated"].append(f(new))
            out[f"{m}_real"].append(f(real))
        used += 1
        log(f"  {style} {used}/{n_prompts} {pid}: {new.note_num()} new notes, {time.perf_counter() - t0:.1f}s, "
            f"scale consistency gen {out['scale_consistency_generated'][-1]:.3f} "
            f"real {out['scale_consistency_real'][-1]:.3f}")
    if used < n_prompts:
        log(f"  {style}: only {used} usable validation pieces (skipped {skipped})")
    return out


# ------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="model name or folder (default: the bundled default model)")
    ap.add_argument("--data", default="../shared/data", help="folder holding nottingham, pop909, asap")
    ap.add_argument("--prompts", type=int, default=20, help="validation pieces per style")
    ap.add_argument("--bars", type=int, default=8, help="bars to continue each prompt")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (the reference machine has 2 cores)")
    ap.add_argument("--tokens", type=int, default=512, help="new tokens timed for tokens_per_s")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="2 prompts per style and 4 bars (smoke test)")
    args = ap.parse_args(argv)
    if args.quick:
        args.prompts, args.bars = 2, 4

    import torch

    import cadenza

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)

    log(f"loading model {args.model or 'default'}")
    model = cadenza.load_model(args.model)
    log(f"{model!r}, {args.threads} threads")
    style = model.config.get("default_style") or (model.styles[0] if model.styles else None)

    tps, n = tokens_per_second(model, style, args.tokens, args.seed)
    emit("tokens_per_s", tps)
    emit("tokens_per_s_tokens", n)
    log(f"tokens/s {tps:.1f} over {n} tokens")

    rtf_bars = 4 if args.quick else 16
    rtf, wall, music = realtime_factor(model, rtf_bars, args.seed)
    emit("realtime_factor", rtf)
    emit("realtime_factor_wall_s", wall)
    emit("realtime_factor_music_s", music)
    log(f"real-time factor {rtf:.2f} ({music:.1f} s of music in {wall:.1f} s, {rtf_bars} bars)")

    per_style: dict[str, dict[str, list[float]]] = {}
    for st, rel in STYLE_DATA.items():
        if st not in model.styles:
            log(f"style {st}: not known to this model, skipped")
            continue
        spec = rel if rel.startswith("music21:") else os.path.join(args.data, rel)
        if not rel.startswith("music21:") and not Path(spec).exists():
            log(f"style {st}: no data at {spec}, skipped")
            continue
        log(f"style {st}: {spec}")
        per_style[st] = compare(model, st, spec, args.prompts, args.bars, args.seed)

    total = sum(len(v["scale_consistency_real"]) for v in per_style.values())
    for m in ("scale_consistency", "pitch_class_entropy", "loop_rate"):
        g = nanmean([x for v in per_style.values() for x in v[f"{m}_generated"]])
        r = nanmean([x for v in per_style.values() for x in v[f"{m}_real"]])
        emit(f"{m}_generated", g)
        emit(f"{m}_real", r)
        emit(f"{m}_diff", abs(g - r))
    for st, v in per_style.items():
        emit(f"scale_consistency_generated_{st}", nanmean(v["scale_consistency_generated"]))
        emit(f"scale_consistency_real_{st}", nanmean(v["scale_consistency_real"]))
    emit("prompts", total)
    emit("continuation_bars", args.bars)
    return 0


if __name__ == "__main__":
    sys.exit(main())
