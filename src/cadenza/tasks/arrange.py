"""Arranging and infilling with a multi-track model that has the infill control.

``arrange``: keep a score's tracks note for note and add instruments: every bar starts with the
kept notes as a given block the model reads before writing the new parts (accompanying, not
continuing). ``infill``: rewrite bars x tracks: the bars after the gap come first (the model leads
into them), the bars before it follow, and in the gap the tracks that stay are given. Both build
the prompt and a per-bar plan of forced tokens for the one engine (``stream``); all given material
comes back from the input score itself, never through the tokenizer, so it is unchanged exactly.
"""

from __future__ import annotations

import numpy as np
import symusic

from cadenza.engine import StopConfig, stream
from cadenza.errors import CadenzaError
from cadenza.score.build import at_tpq
from cadenza.tokenizers.remi import T_BAR, T_DRUM, T_DUR, T_PITCH, T_PROG, T_VEL

TPQ = 480


def _require(cm, *controls: str) -> None:
    have = set(cm.tokenizer.spec.controls)
    missing = [c for c in controls if c not in have]
    if missing:
        raise CadenzaError(f"model {cm.name} cannot do this: it was trained without the "
                           f"{', '.join(missing)} control{'s' * (len(missing) > 1)} "
                           "(train one with recipes/arrange_model.sh)")


def _programs(score: symusic.Score, tracks=None) -> list[int]:
    return sorted({-1 if t.is_drum else int(t.program) for k, t in enumerate(score.tracks)
                   if len(t.notes) and (tracks is None or k in tracks)})


def _meter(score: symusic.Score) -> tuple[int, int]:
    ts = score.time_signatures[0] if len(score.time_signatures) else None
    return (int(ts.numerator), int(ts.denominator)) if ts is not None else (4, 4)


def _key(cm, score, key):
    """The key for the header: the one asked for, else the score's own (estimated)."""
    if key is not None and not cm.tokenizer.key_on:
        raise CadenzaError(f"model {cm.name} has no key control")
    if not cm.tokenizer.key_on:
        return None
    if key is not None:
        from cadenza.score.keys import key_pitch_class

        return key_pitch_class(key)
    from cadenza.score.keys import estimate_key

    return estimate_key(score)


def _sample(cm, prompt, n_bars, constraints, temperature, top_p, seed, progress):
    from cadenza.engine.sampling import SamplingConfig

    sampling = SamplingConfig(temperature=temperature, top_p=top_p, seed=seed).validate()
    new: list[int] = []
    for k, (_, t) in enumerate(stream(cm.model, cm.tokenizer, prompt, 1, sampling, StopConfig(bars=n_bars),
                                      constraints)):
        if t != cm.tokenizer.eos_id:
            new.append(int(t))
        if progress:
            progress(k + 1)
    return new


def _new_notes(cm, structure: list[int], new: list[int]) -> symusic.Score:
    """Decode what the model wrote, timed by the prompt's bars (their notes left out)."""
    tok = cm.tokenizer
    notes = {T_PROG, T_PITCH, T_DRUM, T_VEL, T_DUR}
    body = [t for t in tok.free_part(structure) if tok.type_of[t] not in notes] + tok.free_part(new)
    return tok.decode(body)


def merge_region(base: symusic.Score, new: symusic.Score, lo: int = 0, hi: int | None = None,
                 clear: set[int] | None = None, separate: bool = False) -> symusic.Score:
    """``base`` (its tracks in ``clear`` emptied of notes starting in [lo, hi)) plus the notes of ``new``
    starting in [lo, hi), cut to end by ``hi``: on the track of the same instrument, or on tracks of
    their own (``separate``, or where there is none)."""
    from cadenza.score import instrument_name

    out = base.copy()
    for k in clear or ():
        tr = out.tracks[k]
        keep = [n for n in tr.notes if not (n.time >= lo and (hi is None or n.time < hi))]
        tr.notes.clear()
        tr.notes.extend(keep)
    n_base = len(out.tracks)
    for tr in new.tracks:
        target = None if separate else next((t for t in out.tracks if t.program == tr.program
                                             and t.is_drum == tr.is_drum), None)
        if target is None:
            out.tracks.append(symusic.Track(instrument_name(tr.program, tr.is_drum), tr.program, tr.is_drum))
            target = out.tracks[-1]
        for n in tr.notes:
            if n.time >= lo and (hi is None or n.time < hi):
                dur = n.duration if hi is None else max(1, min(n.duration, hi - n.time))
                target.notes.append(symusic.Note(n.time, dur, n.pitch, n.velocity))
        target.notes.sort()
    out.tracks = list(out.tracks[:n_base]) + [t for t in out.tracks[n_base:] if len(t.notes)]
    return out


def arrange(cm, score: symusic.Score, add: list, *, style: str | None = None, key: str | None = None,
            temperature: float = 1.0, top_p: float = 0.95, seed: int | None = None, progress=None,
            force: bool = True) -> symusic.Score:
    """``score`` with new parts for the instruments in ``add`` (GM names, numbers or (program, is_drum));
    every note of ``score`` is kept exactly. ``force=False``: at most ``LIMITS.bars`` bars (the CLI's)."""
    from cadenza.score import parse_instrument

    _require(cm, "instruments", "infill")
    tok = cm.tokenizer
    src = at_tpq(score)
    if src.note_num() == 0:
        raise CadenzaError("nothing to arrange: the score has no notes")
    if not add:
        raise CadenzaError("give the instruments to add, e.g. --add bass,drums,piano")
    added = []
    for a in add:
        p, drum = a if isinstance(a, tuple) else parse_instrument(a)
        added.append(-1 if drum else int(p))
    added = sorted(set(added))
    style = style or cm.config.get("default_style")
    n_bars = len(tok.split_bars(tok._body(src)))
    _check_bars(n_bars, "the score has", force)
    given = tok.given_blocks(src, n_bars)
    constraints = {"programs": added, "time_signature": _meter(src), "given": given}
    if tok.chords_on:
        from cadenza.score.bars import bar_starts
        from cadenza.score.harmony import recognize_chords

        starts = bar_starts(src, int(src.end()) + 64 * TPQ)[:n_bars]
        constraints["chords"] = dict(enumerate(recognize_chords(src, starts), start=1))
    head = tok.header(style, _key(cm, src, key), sorted(set(_programs(src)) | set(added)))
    prompt = head + [int(tok.ids_of_type[T_BAR][0])]
    new = _sample(cm, prompt, n_bars, constraints, temperature, top_p, seed, progress)
    return merge_region(src, _new_notes(cm, prompt, new), 0, int(_bar_edges(src, n_bars)[-1]), separate=True)


def _check_bars(bars: int, what: str, force: bool) -> None:
    """Bars to write at most LIMITS.bars unless ``force`` (a 1,000-bar score took minutes to arrange)."""
    from cadenza.limits import LIMITS

    if bars > LIMITS.bars and not force:
        raise CadenzaError(f"{what} {bars:,} bars; cadenza writes at most {LIMITS.bars} at once (--force lifts this)")


def _bar_edges(score: symusic.Score, n: int) -> np.ndarray:
    from cadenza.score.bars import bar_starts

    longest = max([4 * TPQ * ts.numerator // ts.denominator for ts in score.time_signatures] + [16 * TPQ])
    return bar_starts(score, int(score.end()) + (n + 2) * longest)[: n + 1]


def infill(cm, score: symusic.Score, first: int, last: int, *, tracks: list[int] | None = None,
           style: str | None = None, temperature: float = 1.0, top_p: float = 0.95, seed: int | None = None,
           n_future: int = 4, progress=None, force: bool = True) -> symusic.Score:
    """``score`` with bars ``first``-``last`` (1-based, inclusive) rewritten for ``tracks`` (track
    indices from 0; None: every track). Everything else is kept exactly; the new bars are written
    knowing the bars after them. ``force=False``: at most ``LIMITS.bars`` bars rewritten (the CLI's)."""
    _require(cm, "infill")
    tok = cm.tokenizer
    src = at_tpq(score)
    n_bars = len(tok.split_bars(tok._body(src)))
    if not 1 <= first <= last:
        raise CadenzaError(f"bars {first}-{last}: give a range from bar 1 on, first <= last")
    if first > n_bars:
        raise CadenzaError(f"bars {first}-{last} are outside the piece, which has {n_bars} bars")
    last = min(last, n_bars)
    _check_bars(last - first + 1, f"bars {first}-{last} are", force)
    if tracks is not None:
        bad = [k for k in tracks if not 0 <= k < len(src.tracks)]
        if bad:
            raise CadenzaError(f"there is no track {bad[0] + 1}: the piece has {len(src.tracks)} tracks")
    chosen = set(range(len(src.tracks))) if tracks is None else set(tracks)
    edges = _bar_edges(src, max(n_bars, last) + 1)
    a, b = int(edges[first - 1]), int(edges[last])
    style = style or cm.config.get("default_style")
    chords = "auto"
    plan_chords = None
    if tok.chords_on:  # the gap keeps its harmony (recognized from the original bars)
        from cadenza.score.harmony import recognize_chords

        chords = recognize_chords(src, edges[:n_bars])
        plan_chords = {k: chords[k - 1] for k in range(first, last + 1)}
    ids = tok.encode(src, style, chords=chords)
    prompt = tok.future_first(ids, first - 1, last, n_future)
    if first == 1:
        prompt = prompt + [int(tok.ids_of_type[T_BAR][0])]
    kept = src.copy()
    kept.tracks = [t for k, t in enumerate(src.tracks) if k not in chosen]
    constraints = {"programs": _programs(src, chosen) or None, "time_signature": _meter(src)}
    if plan_chords:
        constraints["chords"] = plan_chords
    if kept.note_num() and tok.infill_on:
        blocks = tok.given_blocks(kept, last)
        constraints["given"] = {k: blocks[k] for k in range(first, last + 1)}
    new = _sample(cm, prompt, last - first + 1, constraints, temperature, top_p, seed, progress)
    structure = prompt[prompt.index(tok.now_id) + 1:] if tok.now_id in prompt else prompt
    return merge_region(src, _new_notes(cm, prompt[:tok.header_len(prompt)] + structure, new), a, b, clear=chosen)
