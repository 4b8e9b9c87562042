"""Continuing real pieces: the model's 8 bars after an 8-bar prompt vs. the piece's own next 8 bars.

    python bench/continuation.py [--model NAME|DIR] [--pieces 20] [--styles pop,folk]
                                 [--data DIR=STYLE ...] [--threads 2] [--seed 0] [--save DIR]

Protocol (issue 17). Pieces: the validation pieces (``cadenza.train.corpora.is_valid``, the split
training used) of every source in the model's ``config.json`` ``training.data``, through
``iter_pieces``; POP909's are read raw (``read_score``), not with the 4/4 ``iter_pieces`` fixes, since
users give the raw files, which often state 1/4 or 2/4. ``--data DIR=STYLE`` (repeatable) replaces
those sources with every MIDI file of a folder, read raw. Up to ``--pieces`` per style, in file
order, skipping pieces shorter than 16 bars and pieces whose prompt or real continuation is silent.

Bars are those of the meter cadenza continues in (``score.meter.prompt_meter``), counted from the
first bar with a note. The prompt is 8 bars, as the file gives them (its own time signatures, moved
to tick 0); the real continuation is the next 8 bars. ``model.generate(prompt, bars=8, style=...,
seed=--seed + n)`` (default sampling); the generated continuation is the notes of the result starting
in the same span of beats after the prompt's end, whatever meter the result has.

Figures (one ``name: value`` line each; ``_<style>`` per style, then all pieces weighing the same):
``key_agreement`` (same Krumhansl-Schmuckler key as the prompt), ``pc_cosine`` (pitch-class
histograms), ``track_continuity`` (the prompt's tracks sounding in its last 2 bars that play on),
each ``_generated`` and ``_real``; ``density_ratio`` (generated / real notes per beat; median, and
``_mean``); ``tracks_merged`` (pieces whose 2+ sounding tracks all continued in one track, a count);
``bits_per_note``: -log2 p(real continuation | prompt) per note of it, the 16 bars encoded as one
sequence (header key and instruments "auto"), header + latest bars kept when longer than the
context, scored among the tokens the grammar allows, mean over pieces; ``pieces``. Measures:
``cadenza.eval.continuation``.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from foundation import emit, log, nanmean  # noqa: E402

PROMPT_BARS, CONT_BARS, TAIL_BARS = 8, 8, 2
PAIRED = ("key_agreement", "pc_cosine", "track_continuity")  # each taken on generated and on real


# ----------------------------------------------------------------------------------------- pieces
def style_sources(model, data_flags: list[str]) -> dict[str, list[tuple[str, bool]]]:
    """{style: [(source spec, read raw)]}: ``--data`` folders (raw), else the model's training sources."""
    out: dict[str, list[tuple[str, bool]]] = {}
    if data_flags:
        for item in data_flags:
            spec, _, style = item.rpartition("=")
            if not spec:
                raise SystemExit(f"--data wants DIR=STYLE (got {item!r})")
            out.setdefault(style, []).append((spec, True))
        return out
    for item in model.config.get("training", {}).get("data", []):  # the model folder's config.json
        spec, _, style = item.rpartition("=")
        if spec and not spec.startswith("music21:") and not Path(spec).exists() and (ROOT / spec).exists():
            spec = str(ROOT / spec)  # paths in the config are relative to the repository root
        if spec:
            out.setdefault(style, []).append((spec, False))
    return out


def pieces(spec: str, style: str, raw: bool):
    """(piece id, score) in a fixed order; see the module docstring for which and how read."""
    from cadenza.errors import CadenzaError
    from cadenza.score import read_score
    from cadenza.train.corpora import SCORE_SUFFIXES, Source, is_valid, iter_pieces

    root = Path(spec)
    pop909 = not spec.startswith("music21:") and root.name.lower() == "pop909"
    if not raw and not pop909:
        yield from iter_pieces(Source(spec, style), only="valid")
        return
    suffixes = {".mid", ".midi"} if raw else SCORE_SUFFIXES
    for f in sorted(p for p in root.rglob("*") if p.suffix.lower() in suffixes):
        pid = f"{root.name}/{f.relative_to(root).as_posix()}"  # the id iter_pieces gives it
        if pop909 and not raw and not is_valid(pid):
            continue
        try:
            yield pid, read_score(f)
        except CadenzaError as e:
            log(f"  skip {pid}: {e}")


def frame(piece, known=None):
    """The piece cut for the protocol, or None when too short or silent: a dict with the raw
    ``prompt`` (as the file states its meter), the ``metered`` prompt, the ``real`` continuation and
    ``both`` (prompt + real, metered), all from tick 0, and ``meter``, ``bar`` (ticks), ``note``.
    ``known``: the model's meters; one it does not know is taken as cadenza takes it (3/2 as 6/4)."""
    from cadenza.eval.continuation import cut
    from cadenza.score.meter import nearest_known, prompt_meter, with_meter

    tick = piece if str(piece.ttype).endswith("Tick") else piece.to("tick")
    meter, note = prompt_meter(tick)
    if known is not None and tuple(meter) not in known and nearest_known(meter, known):
        meter = nearest_known(meter, known)
    metered = with_meter(tick, meter)
    bar = max(1, round(meter[0] * 4 * int(tick.tpq) / meter[1]))  # one meter from 0: bars are evenly spaced
    onsets = [int(t.notes[0].time) for t in tick.tracks if len(t.notes)]
    if not onsets:
        return None
    s0 = (min(onsets) // bar) * bar  # the first bar with a note
    pe, re_ = s0 + PROMPT_BARS * bar, s0 + (PROMPT_BARS + CONT_BARS) * bar
    if tick.end() <= re_ - bar:  # does not reach bar 16
        return None
    out = dict(prompt=cut(tick, s0, pe), metered=cut(metered, s0, pe), real=cut(metered, pe, re_),
               both=cut(metered, s0, re_), meter=meter, bar=bar, note=note)
    pitched = any(len(t.notes) and not t.is_drum for t in out["prompt"].tracks)
    return out if pitched and out["real"].note_num() else None


# ------------------------------------------------------------------------------------ generating
def continuation_of(gen, f):
    """(the generated continuation, notes new before the prompt's end) in ``gen``'s own ticks."""
    from cadenza.eval.continuation import cut

    gen = gen if str(gen.ttype).endswith("Tick") else gen.to("tick")
    scale = int(gen.tpq) / int(f["prompt"].tpq)  # generate may resample (the model's 480 tpq)
    pe = round(PROMPT_BARS * f["bar"] * scale)
    span = round(CONT_BARS * f["bar"] * scale)
    early = gen.note_num() - f["prompt"].note_num() - sum(
        int(np.sum(t.notes.numpy()["time"] >= pe)) for t in gen.tracks if len(t.notes))
    return cut(gen, pe, pe + span), early


def measure(f, gen_cont) -> dict[str, float]:
    """Every per-piece figure of one generated continuation and the real one."""
    from cadenza.eval import continuation as c

    p, real, bar = f["metered"], f["real"], f["bar"]
    tail, pe = (PROMPT_BARS - TAIL_BARS) * bar, PROMPT_BARS * bar
    beats = CONT_BARS * bar / int(p.tpq)
    out = {"density_ratio": c.density_ratio(gen_cont, real, beats)}
    for kind, cont in (("generated", gen_cont), ("real", real)):
        out[f"key_agreement_{kind}"] = c.key_agreement(p, cont)
        out[f"pc_cosine_{kind}"] = c.pc_cosine(p, cont)
        out[f"track_continuity_{kind}"] = c.track_continuity(p, cont, tail, pe)
        out[f"tracks_merged_{kind}"] = float(c.tracks_merged(p, cont, tail, pe))
    return out


def bits_per_note(model, f, style: str) -> float:
    """-log2 p(real continuation | prompt) per note of the continuation (see the module docstring)."""
    from cadenza.eval.likelihood import grammar_masks, sequence_nll
    from cadenza.tokenizers.remi import T_BAR, T_DRUM, T_PITCH

    tok = model.tokenizer
    ids = tok.encode(f["both"], style, key="auto", instruments="auto")
    h = tok.header_len(ids)
    bars = [j for j in range(h, len(ids)) if tok.type_of[ids[j]] == T_BAR]
    if len(bars) <= PROMPT_BARS:
        return math.nan
    b9, ctx = bars[PROMPT_BARS], model.model.cfg.max_seq_len
    if len(ids) > ctx:  # keep the header and the latest bars that fit (at least from bar 9 on)
        start = next((j for j in bars if len(ids) - j + h <= ctx), b9)
        start = min(start, b9)
        ids, b9 = ids[:h] + ids[start:], h + b9 - start
    per_token: list[float] = []
    starts = tok.window_starts(np.asarray(ids))
    sequence_nll(model.model, ids, head=ids[:h], starts=starts, masks=grammar_masks(tok, ids), per_token=per_token)
    notes = sum(tok.type_of[t] in (T_PITCH, T_DRUM) for t in ids[b9:])
    return sum(per_token[b9 - 1:]) / math.log(2) / notes if notes else math.nan


def continue_piece(model, f, style: str | None, seed: int, pid: str, args) -> dict[str, float]:
    """Generate one continuation and take every figure of it (and of the real one)."""
    t0 = time.perf_counter()
    gen = model.generate(f["prompt"], bars=CONT_BARS, style=style, seed=seed)
    cont, early = continuation_of(gen, f)
    moved = [k for k, t in enumerate(f["prompt"].tracks) if k >= len(gen.tracks)
             or (gen.tracks[k].program, gen.tracks[k].is_drum) != (t.program, t.is_drum)]
    if moved:  # tracks are matched by index: say so when the result reordered them
        log(f"  {pid}: the result's tracks {moved} are not the prompt's")
    row = measure(f, cont)
    row["bits_per_note"] = bits_per_note(model, f, style)
    stated = [f"{t.numerator}/{t.denominator}" for t in f["prompt"].time_signatures]
    got = [f"{t.numerator}/{t.denominator}" for t in gen.time_signatures]
    log(f"  {pid}: {time.perf_counter() - t0:.1f}s, meter {f['meter'][0]}/{f['meter'][1]} (stated "
        f"{','.join(stated) or '-'}, result {','.join(got)}), notes gen {cont.note_num()} real {f['real'].note_num()}"
        + (f", {early} new notes before the prompt's end" if early else "")
        + f", tracks {len(f['prompt'].tracks)}->{len(gen.tracks)}, continuity "
        f"{row['track_continuity_generated']:.2f}/{row['track_continuity_real']:.2f}, "
        f"bits/note {row['bits_per_note']:.2f}")
    if args.save:
        name = f"{style}_{seed - args.seed + 1:02d}_" + re.sub(r"[^A-Za-z0-9._-]+", "_", re.sub(r"\.midi?$", "", pid))
        gen.dump_midi(str(Path(args.save) / f"{name}.mid"))
        f["both"].dump_midi(str(Path(args.save) / f"{name}_real.mid"))
    return row


def run_style(model, style: str, sources, args) -> list[dict[str, float]]:
    """Per-piece figures of up to ``--pieces`` pieces of one style."""
    from cadenza.errors import CadenzaError

    rows: list[dict[str, float]] = []
    read = short = refused = 0
    gen_style = style if style in model.styles else None  # a --data style the model lacks: its default
    for spec, raw in sources:
        if len(rows) >= args.pieces:
            break
        for pid, piece in pieces(spec, style, raw):
            if len(rows) >= args.pieces:
                break
            read += 1
            f = frame(piece, getattr(model.tokenizer, "tsig_id", None))
            if f is None:
                short += 1
                continue
            try:
                rows.append(continue_piece(model, f, gen_style, args.seed + len(rows), pid, args))
            except CadenzaError as e:  # e.g. a meter the model does not know
                log(f"  skip {pid}: {e}")
                refused += 1
    # why a style has fewer pieces than asked (no validation pieces, too short, a meter refused)
    log(f"  {style}: {len(rows)} pieces of {read} read ({short} shorter than 16 bars or silent, "
        f"{refused} refused by generate)")
    return rows


def report(prefix: str, rows: list[dict[str, float]]) -> None:
    """The figure lines of one group of pieces (``prefix``: "" overall, else "_<style>")."""
    for m in PAIRED:
        for kind in ("generated", "real"):
            emit(f"{m}{prefix}_{kind}", nanmean([r[f"{m}_{kind}"] for r in rows]))
    ratios = [r["density_ratio"] for r in rows if not math.isnan(r["density_ratio"])]
    emit(f"density_ratio{prefix}", float(np.median(ratios)) if ratios else math.nan)
    emit(f"density_ratio{prefix}_mean", nanmean(ratios))
    for kind in ("generated", "real"):
        emit(f"tracks_merged{prefix}_{kind}", int(sum(r[f"tracks_merged_{kind}"] for r in rows)))
    emit(f"bits_per_note{prefix}", nanmean([r["bits_per_note"] for r in rows]))
    emit(f"pieces{prefix}", len(rows))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="model name or folder (default: the bundled default model)")
    ap.add_argument("--pieces", type=int, default=20, help="pieces per style")
    ap.add_argument("--data", action="append", default=[], metavar="DIR=STYLE",
                    help="a folder of MIDI files (read raw) instead of the model's sources; repeatable")
    ap.add_argument("--styles", default=None, help="comma-separated subset of the styles")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (the reference machine has 2 cores)")
    ap.add_argument("--seed", type=int, default=0, help="the n-th piece of a style is continued with seed + n")
    ap.add_argument("--save", default=None, metavar="DIR", help="write each result (prompt + continuation) and "
                    "the real 16 bars as MIDI here")
    args = ap.parse_args(argv)

    import torch

    import cadenza

    torch.set_num_threads(args.threads)
    if args.save:
        Path(args.save).mkdir(parents=True, exist_ok=True)
    model = cadenza.load_model(args.model)
    log(f"{model!r}, {args.threads} threads")
    sources = style_sources(model, args.data)
    if args.styles:
        wanted = args.styles.split(",")
        sources = {s: v for s, v in sources.items() if s in wanted}
    t0 = time.perf_counter()
    per_style = {}
    for style, srcs in sources.items():
        log(f"style {style}: {', '.join(s for s, _ in srcs)}")
        per_style[style] = run_style(model, style, srcs, args)
    emit("model", model.name)
    for style, rows in per_style.items():
        report(f"_{style}", rows)
    report("", [r for rows in per_style.values() for r in rows])
    emit("wall_s", time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
