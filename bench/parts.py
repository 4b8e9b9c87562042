"""Parts: does every instrument play its role through a long piece? Generated vs. real, family by family.

    python bench/parts.py [--model NAME|DIR] [--pieces 20] [--seconds 240] [--real 100] [--styles pop,folk]
                          [--threads 2] [--compile off|on] [--save DIR] [--data ../shared/data] [--quick]

Prints one ``name: value`` line per figure on stdout (progress on stderr). Protocol (issue 17):

- Generated: ``--pieces`` pieces of ``--seconds`` each from nothing (no prompt), seeds 0..N-1, cycling
  through CYCLE below (the README's instrument sets and controls; the 6-instrument set is
  bench/arrange.py's long piece; the last entry lets the model choose its instruments), keeping the
  entries of ``--styles``. Default sampling; ``--compile on`` decodes with torch.compile.
- Real: the validation pieces (the training split) of each generated style's training sources (the
  model's config.json ``training.data``), in file order, up to ``--real`` per style, presented as
  training presents them: POP909 songs put on a band by ``cadenza.train.corpora.pop909_band`` (lead
  and bridge instruments, rule-made drums for some songs, a bass part for others) with the very
  random generator training seeds from the piece id (SHA-1, so it is the same in every run), then
  ``drop_unisons`` as for every training piece. Each real piece is measured over its first N bars,
  N the median bar count of that style's generated pieces (whole if shorter), so that lengths and
  silences compare like for like.
- Measures (``cadenza.eval.parts``, families from ``cadenza.score.roles``): notes_per_onset,
  pitch_in_range, notes_per_beat, bars_playing_share, longest_silence_bars per track, averaged over
  the tracks of each family. For each family of the generated pieces: ``<measure>_<family>_<style>_generated``
  and ``..._real``; overall, ``<measure>_<family>_generated`` (the mean over that family's generated
  parts of every style) and ``<measure>_<family>_real`` (the per-style real figures weighted by
  how many generated parts of that family each style has, so both sides mix styles alike).
- ``duplicates_generated`` / ``duplicates_real``: notes repeating another note of their track at the
  same onset and pitch, in total (``notes_generated`` / ``notes_real`` give the scale).
- ``length_delivered_ratio_{mean,min,max}``: the piece's end in seconds / ``--seconds``;
  ``wall_s_per_piece`` (mean; ``_max`` too).
- Targets (1 pass, 0 fail): ``within_25pct_<measure>_<family>`` (overall generated within 25% of
  overall real; nan where no real part of that family exists); ``se_<measure>_<family>_{generated,real}``
  (standard errors of the two means) and ``within_noise_<measure>_<family>`` (within 25% or within two
  standard errors of the difference: with 4 guitar parts in 20 pieces, or the drums' longest silence
  near 0 bars, chance alone moves a figure more than 25%), ``bass_notes_per_onset_ok`` (the
  bass family's generated notes per onset <= 1.3), ``pitch_in_range_ok`` (``pitch_in_range_generated``,
  the share of all pitched generated notes inside their instrument's range, is 1.0),
  ``length_delivered_ok`` (every piece ends within one bar, its last bar's length, of the asked length).

``--save DIR`` writes each generated piece as ``NN-style.mid`` and its piano roll ``NN-style.png``
(the function behind ``cadenza render x.mid --out roll.png``). Run from the repository root.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from foundation import emit, log, validation_pieces  # noqa: E402

# (style, instruments, controls): the README's examples. Ordered so that --quick's first four
# already cover bass, drums, strings, guitar, lead, a folk piece and the model's own choice.
SIX = ["piano", "acoustic bass", "drums", "string ensemble 1", "flute", "acoustic guitar (nylon)"]
CYCLE = [
    ("pop", ["piano", "acoustic bass", "drums", "strings"], {"tempo": 100, "key": "D minor", "time_signature": (3, 4)}),
    ("pop", SIX, {}),
    ("folk", ["flute", "piano"], {}),
    ("pop", None, {}),  # the model's own choice of instruments
    ("pop", ["flute", "piano"], {}),
    ("pop", ["piano", "violin"], {"tempo": 96}),
]
TOLERANCE = 0.25  # the target: each generated figure within 25% of the real one
BASS_NOTES_PER_ONSET = 1.3  # a bass plays a line: at most this many notes per onset on average


# ------------------------------------------------------------------------------------ helpers
def _tick(score):
    return score if str(score.ttype).endswith("Tick") else score.to("tick")


def bar_count(score) -> tuple[int, float]:
    """(bars up to the last note-off, as eval.parts counts them; the last bar's length in seconds)."""
    from cadenza.score.bars import bar_starts
    from cadenza.score.build import ticks_to_seconds

    s = _tick(score)
    end = max(int(s.end()), 1)
    starts = bar_starts(s, end + 64 * s.tpq)  # past the end, so the last bar closes
    n = max(int(np.searchsorted(starts, end - 1, side="right")), 1)
    a, b = ticks_to_seconds(s, starts[n - 1:n + 1])
    return n, float(b - a)


def save_piece(score, out: Path, stem: str, title: str) -> None:
    import cadenza
    from cadenza.render.pictures import piano_roll_png

    out.mkdir(parents=True, exist_ok=True)
    cadenza.write_score(score, out / f"{stem}.mid")
    piano_roll_png(score, out / f"{stem}.png", title=title)


# ---------------------------------------------------------------------------------- generated
def generate_pieces(model, a) -> list[dict]:
    """The generated pieces: style, part rows, bars, music seconds, last bar's seconds, wall seconds."""
    from cadenza.eval.parts import part_stats

    entries = [e for e in CYCLE if e[0] in a.styles]
    out = []
    for k in range(a.pieces):
        style, insts, controls = entries[k % len(entries)]
        t0 = time.perf_counter()
        score = model.generate(bars=None, seconds=a.seconds, style=style, instruments=insts, seed=k,
                               compile=a.compile == "on", **controls)
        wall = time.perf_counter() - t0
        bars, bar_s = bar_count(score)
        rows = part_stats(score)
        music = float(score.to("second").end())
        label = f"{style} {','.join(insts) if insts else '(own choice)'} {controls or ''}".strip()
        out.append({"style": style, "rows": rows, "bars": bars, "bar_s": bar_s, "music_s": music, "wall_s": wall})
        log(f"generated {k + 1}/{a.pieces} [{label}] seed {k}: {bars} bars, {music:.1f} s of music in {wall:.1f} s; "
            + ", ".join(f"{r['family']}/{r['program']} {r['notes']}" for r in rows))
        if a.save:
            save_piece(score, Path(a.save), f"{k:02d}-{style}", f"{k:02d} seed {k}: {label}")
    return out


# --------------------------------------------------------------------------------------- real
def style_sources(model, data: str) -> dict[str, list[str]]:
    """The training sources of each of the model's styles (its config), folders looked up in ``data``."""
    out: dict[str, list[str]] = {}
    for item in model.config.get("training", {}).get("data", []):
        spec, _, style = item.rpartition("=")
        if spec and not spec.startswith("music21:"):
            spec = str(Path(data) / Path(spec).name)
        out.setdefault(style, []).append(spec)
    return out


def real_rows(model, sources: list[str], style: str, n_real: int, n_bars: int) -> list[list[dict]]:
    """Part rows of up to ``n_real`` validation pieces of a style, each over its first ``n_bars`` bars
    (presented as training presents them: ``corpora.as_trained``)."""
    from cadenza.eval.parts import part_stats
    from cadenza.train.corpora import as_trained

    out = []
    for spec in sources:
        for pid, piece in validation_pieces(spec, style):
            if len(out) >= n_real:
                return out
            if piece.note_num() == 0:
                continue
            out.append(part_stats(as_trained(model.tokenizer, spec, pid, piece), to_bar=n_bars))
    return out


# ------------------------------------------------------------------------------------ figures
def pooled(pieces: list[list[dict]]) -> dict[str, dict[str, float]]:
    """family_stats over every part of every piece: the mean over that family's parts."""
    from cadenza.eval.parts import family_stats

    return family_stats([r for rows in pieces for r in rows])


def side_by_side(gen: dict, real: dict, families: list[str], suffix: str) -> None:
    from cadenza.eval.parts import MEASURES

    for fam in families:
        for m in MEASURES:
            emit(f"{m}_{fam}{suffix}_generated", gen.get(fam, {}).get(m, float("nan")))
            emit(f"{m}_{fam}{suffix}_real", real.get(fam, {}).get(m, float("nan")))


def weighted_real(gen_by: dict, real_by: dict, fam: str, m: str) -> float:
    """The real figure of a family over styles, each style weighing as many parts as it has generated."""
    pairs = [(g[fam]["parts"], real_by[s][fam][m]) for s, g in gen_by.items()
             if fam in g and fam in real_by[s] and np.isfinite(real_by[s][fam][m])]
    w = sum(p for p, _ in pairs)
    return sum(p * x for p, x in pairs) / w if w else float("nan")


def values(pieces: list[list[dict]], fam: str, m: str) -> np.ndarray:
    """The figure ``m`` of every part of family ``fam`` (finite ones)."""
    v = np.array([r[m] for rows in pieces for r in rows if r["family"] == fam], dtype=np.float64)
    return v[np.isfinite(v)]


def std_error(v: np.ndarray) -> float:
    return float(np.std(v, ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")


def weighted_real_se(gen_by: dict, real_by_style: dict, fam: str, m: str) -> float:
    """The standard error of ``weighted_real``: each style's mean weighs as many parts as it has generated."""
    pairs = [(g[fam]["parts"], std_error(values(real_by_style[s], fam, m))) for s, g in gen_by.items()
             if fam in g and len(values(real_by_style[s], fam, m))]
    w = sum(p for p, _ in pairs)
    return float(np.sqrt(sum((p * e) ** 2 for p, e in pairs)) / w) if w else float("nan")


def within_noise(g: float, r: float, se_g: float, se_r: float) -> float:
    """1 where generated and real differ by at most 25% or two standard errors of their difference (a
    family with 4 generated parts, or a figure near 0 like the drums' longest silence, moves more than
    25% from one set of seeds to the next); nan where a side has no standard error (one part)."""
    if not (np.isfinite(g) and np.isfinite(r) and np.isfinite(se_g)):  # nan: fewer than 2 generated parts
        return float("nan")
    noise = 2.0 * np.sqrt(np.nan_to_num(se_g) ** 2 + np.nan_to_num(se_r) ** 2)
    return int(abs(g - r) <= max(TOLERANCE * abs(r), noise))


def within(g: float, r: float) -> float:
    if not (np.isfinite(g) and np.isfinite(r)):
        return float("nan")
    return int(abs(g - r) <= TOLERANCE * abs(r))


def in_range_share(pieces: list[list[dict]]) -> float:
    """Share of all pitched notes inside their instrument's range (notes weigh, not parts)."""
    rows = [r for rows in pieces for r in rows if r["family"] != "drums" and r["notes"]]
    n = sum(r["notes"] for r in rows)
    return sum(r["pitch_in_range"] * r["notes"] for r in rows) / n if n else float("nan")


def report(gen: list[dict], real_by_style: dict[str, list[list[dict]]], a) -> None:
    from cadenza.eval.parts import MEASURES
    from cadenza.score.roles import FAMILIES

    gen_pieces = [g["rows"] for g in gen]
    real_pieces = [rows for v in real_by_style.values() for rows in v]
    gen_all = pooled(gen_pieces)
    families = [f for f in FAMILIES if f in gen_all]
    gen_by = {s: pooled([g["rows"] for g in gen if g["style"] == s]) for s in real_by_style}
    real_by = {s: pooled(v) for s, v in real_by_style.items()}
    real_all = {f: {m: weighted_real(gen_by, real_by, f, m) for m in MEASURES} for f in families}
    emit("pieces_generated", len(gen))
    emit("pieces_real", len(real_pieces))
    side_by_side(gen_all, real_all, families, "")
    for s in real_by_style:
        side_by_side(gen_by[s], real_by[s], [f for f in FAMILIES if f in gen_by[s]], f"_{s}")
    for side, pieces in (("generated", gen_pieces), ("real", real_pieces)):
        emit(f"duplicates_{side}", sum(r["duplicates"] for rows in pieces for r in rows))
        emit(f"notes_{side}", sum(r["notes"] for rows in pieces for r in rows))
    ratios = [g["music_s"] / a.seconds for g in gen]
    emit("length_delivered_ratio_mean", float(np.mean(ratios)))
    emit("length_delivered_ratio_min", float(np.min(ratios)))
    emit("length_delivered_ratio_max", float(np.max(ratios)))
    emit("bars_generated_median", float(np.median([g["bars"] for g in gen])))
    emit("wall_s_per_piece", float(np.mean([g["wall_s"] for g in gen])))
    emit("wall_s_per_piece_max", float(np.max([g["wall_s"] for g in gen])))
    emit("pitch_in_range_generated", in_range_share(gen_pieces))
    emit("pitch_in_range_real", in_range_share(real_pieces))
    for f in families:
        for m in MEASURES:
            emit(f"within_25pct_{m}_{f}", within(gen_all[f][m], real_all[f][m]))
    for f in families:  # how far each side's mean may move by chance: what 25% means with few parts
        for m in MEASURES:
            se_g, se_r = std_error(values(gen_pieces, f, m)), weighted_real_se(gen_by, real_by_style, f, m)
            emit(f"se_{m}_{f}_generated", se_g)
            emit(f"se_{m}_{f}_real", se_r)
            emit(f"within_noise_{m}_{f}", within_noise(gen_all[f][m], real_all[f][m], se_g, se_r))
    bass = gen_all.get("bass", {}).get("notes_per_onset", float("nan"))
    emit("bass_notes_per_onset_ok", int(bass <= BASS_NOTES_PER_ONSET) if np.isfinite(bass) else float("nan"))
    emit("pitch_in_range_ok", int(in_range_share(gen_pieces) == 1.0))
    emit("length_delivered_ok", int(all(abs(g["music_s"] - a.seconds) <= g["bar_s"] for g in gen)))


# --------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="model name or folder (default: the bundled default model)")
    ap.add_argument("--pieces", type=int, default=20, help="generated pieces (cycling through the README's sets)")
    ap.add_argument("--seconds", type=float, default=240.0, help="length asked of each generated piece")
    ap.add_argument("--real", type=int, default=100, help="real validation pieces per style, at most")
    ap.add_argument("--styles", default="pop,folk", help="styles of the cycle to generate and compare")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"), help="folder of the training corpora")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (the reference machine has 2 cores)")
    ap.add_argument("--compile", choices=("on", "off"), default="off", help="decode with torch.compile")
    ap.add_argument("--save", default=None, help="folder for each generated piece's .mid and piano roll .png")
    ap.add_argument("--quick", action="store_true", help="4 pieces of 60 s, 10 real pieces per style")
    a = ap.parse_args(argv)
    if a.quick:
        a.pieces, a.seconds, a.real = 4, 60.0, 10
    a.styles = [s.strip() for s in a.styles.split(",") if s.strip()]

    import torch

    import cadenza

    torch.set_num_threads(a.threads)
    model = cadenza.load_model(a.model)
    sources = style_sources(model, a.data)
    a.styles = [s for s in a.styles if s in model.styles and s in sources and any(e[0] == s for e in CYCLE)]
    if not a.styles:
        raise SystemExit("none of --styles is both in the cycle and known to the model with training data")
    log(f"{model!r}, {a.threads} threads, styles {a.styles}, compile {a.compile}")
    emit("model", model.name)
    emit("seconds_asked", a.seconds)
    t0 = time.perf_counter()
    gen = generate_pieces(model, a)
    real_by_style = {}
    for s in [s for s in a.styles if any(g["style"] == s for g in gen)]:  # real music of the styles generated
        n_bars = int(np.median([g["bars"] for g in gen if g["style"] == s]))
        real_by_style[s] = real_rows(model, sources[s], s, a.real, n_bars)
        log(f"real {s}: {len(real_by_style[s])} pieces, first {n_bars} bars of each")
    report(gen, real_by_style, a)
    emit("wall_s_total", time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
