"""Continue a prompt (or start from nothing) with a model: the main task.

The prompt's own notes are kept exactly as given (not re-quantized through the
tokenizer); only the new notes come from decoding. The engine is told which
programs and which meter are allowed, so only the requested instruments sound.
"""

from __future__ import annotations

import math
import os
from numbers import Integral, Real
from pathlib import Path
from typing import Callable, Iterator

import symusic

from cadenza.engine import SamplingConfig, StopConfig, generate, stream
from cadenza.engine.notes import NoteEvent
from cadenza.errors import CadenzaError, ModelError
from cadenza.limits import LIMITS
from cadenza.model import ModelConfig, load_model_folder, read_config
from cadenza.model.folder import check_weights
from cadenza.score.build import at_tpq
from cadenza.tokenizers import tokenizer_from_config
from cadenza.tokenizers.remi import HOLD_TEMPO, T_BAR, T_DRUM, T_DUR, T_PITCH, T_PROG, T_VEL

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "models"
DEFAULT_MODEL = "arrange"


def local_models_dir() -> Path:
    return Path(os.environ.get("CADENZA_MODELS", Path.home() / ".cadenza" / "models"))


def find_model(name: str | os.PathLike | None = None) -> Path:
    """A model folder by path, bundled name, or name under $CADENZA_MODELS (~/.cadenza/models)."""
    name = DEFAULT_MODEL if name in (None, "", "default") else name  # "default": whichever is the default
    p = Path(name)
    if (p / "config.json").is_file():
        return p
    if (p / "model" / "config.json").is_file():  # a training run folder
        return p / "model"
    for base in (BUNDLED_DIR, local_models_dir()):
        if (base / str(name) / "config.json").is_file():
            return base / str(name)
    known = ", ".join(m["name"] for m in list_models()) or "none"
    raise ModelError(f"no model named '{name}' (known: {known}; or give a model folder path)")


def model_with_controls(needs) -> str | None:
    """The name of a bundled or local model with every control in ``needs`` (a task's defaults:
    ``cadenza arrange`` needs instruments and infill), or None when the default model has them
    or none has: the default model is then used and says what it lacks."""
    needs = set(needs)

    def has(path) -> bool:
        try:
            return needs <= set(read_config(path).get("tokenizer", {}).get("controls") or [])
        except ModelError:
            return False

    if not needs or has(find_model(None)):
        return None
    for m in list_models():
        if has(Path(m["path"])):
            return m["name"]
    return None


def checked_folder(path: str | os.PathLike):
    """(config, tokenizer) of a model folder, checked before any weight is loaded: the config's sizes, the
    weight file's tensor shapes (from its header) and the tokenizer's vocabulary; else one ModelError."""
    path = Path(path)
    cfg = read_config(path)
    check_weights(path, ModelConfig.from_dict(cfg["model"]))
    where = path / "config.json"
    if not isinstance(cfg.get("tokenizer"), dict):
        raise ModelError(f"{where}: the tokenizer section is missing or not an object")
    try:
        tok = tokenizer_from_config(cfg["tokenizer"])
    except ModelError as e:
        raise ModelError(f"{where}: {e}") from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise ModelError(f"{where}: the tokenizer section cannot be read ({type(e).__name__}: {e})") from None
    if tok.vocab_size != cfg["model"]["vocab_size"]:
        raise ModelError(f"{where}: model.vocab_size is {cfg['model']['vocab_size']} but the tokenizer has "
                         f"{tok.vocab_size} tokens")
    return cfg, tok


def list_models(problems: list[str] | None = None) -> list[dict]:
    """Bundled and local models with their styles; a folder that fails ``checked_folder`` is left out
    (and its one-line reason appended to ``problems`` when given)."""
    out = []
    for kind, base in (("bundled", BUNDLED_DIR), ("local", local_models_dir())):
        if not base.is_dir():
            continue
        for d in sorted(base.iterdir()):
            if (d / "config.json").is_file():
                try:
                    cfg, _ = checked_folder(d)
                except ModelError as e:
                    if problems is not None:
                        problems.append(str(e))
                    continue
                out.append({"name": d.name, "kind": kind, "path": str(d), "styles": cfg.get("styles", []),
                            "family": cfg.get("family", "?"),
                            "valid_loss": cfg.get("training", {}).get("valid_loss", {})})
    return out


def load_model(name: str | os.PathLike | None = None, device: str = "cpu") -> "CadenzaModel":
    """Load a model by name or folder (default: the bundled default model)."""
    path = find_model(name)
    _, tok = checked_folder(path)
    model, cfg = load_model_folder(path, device=device)
    if getattr(tok, "scheme", "remi") != "remi":
        hint = {"grid": " (use `cadenza harmonize`)", "audio": " (use `cadenza audio continue` or `cadenza audio generate`)"
                }.get(tok.scheme, "")
        raise ModelError(f"model {cfg.get('name', path.name)} is a {cfg.get('family', tok.scheme)} model; "
                         f"`generate` needs a multi-track (remi-lm) model{hint}")
    return CadenzaModel(model, tok, cfg, path)


def check_length(bars=None, seconds=None, max_tokens=None, force: bool = True) -> None:
    """A piece's length as asked: whole bars and tokens, finite seconds, all more than 0; and, unless
    ``force``, at most ``LIMITS.bars`` bars, ``LIMITS.seconds`` seconds and ``LIMITS.max_tokens`` tokens
    (the CLI's limits: a request for a billion bars would run until killed)."""
    for name, v, whole, limit in (("bars", bars, True, LIMITS.bars), ("seconds", seconds, False, LIMITS.seconds),
                                  ("max tokens", max_tokens, True, LIMITS.max_tokens)):
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, Integral if whole else Real) or not math.isfinite(v):
            raise CadenzaError(f"{name} must be a {'whole' if whole else 'finite'} number (got {v})")
        if v <= 0:
            raise CadenzaError(f"{name} must be greater than 0 (got {v})")
        if limit is not None and not force and v > limit:
            raise CadenzaError(f"{name} must be at most {limit:g} (got {v}; --force lifts this limit)")


def check_request(bars=None, seconds=None, max_tokens=None, force: bool = False, **sampling) -> SamplingConfig:
    """A generation request's length (``check_length``) and sampling settings (``SamplingConfig.validate``),
    checked before any model is loaded; ``sampling``: SamplingConfig fields (temperature, top_k, seed...)."""
    check_length(bars, seconds, max_tokens, force)
    variations = sampling.pop("variations", 1)
    if isinstance(variations, bool) or not isinstance(variations, Integral) or not 1 <= variations <= LIMITS.variations:
        raise CadenzaError(f"variations must be a whole number from 1 to {LIMITS.variations} (got {variations})")
    return SamplingConfig(**sampling).validate()


# a key inferred from the prompt pulls less than one asked for: at the full 1.5, continuations of real
# pieces put 99.3% of their note time in the key's scale where the pieces' own next bars have 96.0%
# (bench/foundation.py diff 0.032; pitch-class entropy diff 0.178); at 0.5, 97.0% (diff 0.010; 0.101),
# pc_cosine 0.886 (0.882) and key_agreement 0.591 vs real 0.648 (bench/continuation.py, 88 pieces)
INFERRED_KEY_BIAS = 0.5


class CadenzaModel:
    """A loaded model with its tokenizer: ``generate`` returns ``symusic.Score``."""

    def __init__(self, model, tokenizer, config: dict, path: Path | None = None):
        self.model, self.tokenizer, self.config, self.path = model, tokenizer, config, path
        self.name = config.get("name", path.name if path else "model")
        self.styles: list[str] = list(config.get("styles", tokenizer.styles))

    def __repr__(self) -> str:
        return f"CadenzaModel({self.name!r}, styles={self.styles})"

    # -- prompt handling -------------------------------------------------
    def _prompt_ids(self, prompt: symusic.Score | None, style: str | None, tempo: float | None,
                    meter: tuple[int, int], key=None, insts=None) -> tuple[list[int], list[int], list[int]]:
        """(all prompt ids, the ids the model sees, tokens to force at the start of bar 1): a long
        prompt is cut to its recent bars. ``key`` and ``insts`` go into the header of a model with
        those controls (from nothing and not given, the model writes them itself)."""
        tok = self.tokenizer
        if prompt is None or prompt.note_num() == 0:
            # an empty piece: the first bar and meter are given; the tempo too when asked for,
            # else the model picks one that suits the style
            head = tok.header(style, key, insts)
            start = [int(tok.ids_of_type[T_BAR][0]), tok.tsig_id[meter]]
            lead = [int(tok.ids_of_type[6][0])] + ([tok.nearest_tempo_id(tempo)] if tempo else [])
            # a control model writes what the header lacks (key, instruments) itself, and the bar's
            # chord before its first position: the tempo asked for is then forced after those
            unfinished = (tok.key_on and key is None) or (tok.insts_on and insts is None)
            if tok.chords_on or unfinished:
                ids = head if unfinished else head + start
                return ids, ids, lead if tempo else []
            ids = head + start + lead
            return ids, ids, []
        ids = tok.encode(prompt, style, key=key if key is not None else "auto",
                         instruments=insts if insts is not None else "auto")
        head = ids[:tok.header_len(ids)]
        seen = ids
        limit = self.model.cfg.max_seq_len - 64
        if len(ids) > limit:  # keep the header and the most recent bars of a long prompt
            body = ids[len(head):][-(limit - len(head)):]
            first_bar = next((j for j, t in enumerate(body) if tok.type_of[t] == T_BAR), 0)
            seen = head + body[first_bar:]
        return ids, seen, []

    def _prepare(self, prompt, bars, seconds, max_tokens, style, instruments, tempo, time_signature,
                 temperature, top_k, top_p, repetition_penalty, seed, variations, repeat="auto", key=None,
                 chords=None, on_info=None) -> dict:
        """Check the request and turn it into the engine's arguments (shared by generate and stream_notes)."""
        from cadenza.score import parse_instrument, read_score

        tok = self.tokenizer
        if isinstance(prompt, (str, os.PathLike)):
            prompt = read_score(prompt)
        check_length(bars, seconds, max_tokens)
        if variations < 1:
            raise CadenzaError(f"variations must be at least 1 (got {variations})")
        if tempo is not None and not 10 <= tempo <= 400:
            raise CadenzaError(f"tempo must be between 10 and 400 beats per minute (got {tempo})")
        if style is not None and style not in self.styles:
            raise CadenzaError(f"unknown style '{style}': this model knows {', '.join(self.styles)}")
        if key is not None and not tok.key_on:
            raise CadenzaError(f"model {self.name} has no key control (models from recipes/arrange_model.sh have)")
        from cadenza.score.keys import key_pitch_class

        key_t = key_pitch_class(key) if key is not None else None
        if prompt is not None:
            prompt = prompt.to("tick")  # a copy in ticks: the caller's score is never changed
            pitched = [t for t in prompt.tracks if not t.is_drum and len(t.notes)]
            if prompt.note_num() > 0 and not pitched and instruments is None:
                raise CadenzaError("the prompt has only drums: nothing pitched to continue "
                                   "(give --instruments to choose what to write)")
            if tempo is not None:
                prompt.tempos.clear()
                prompt.tempos.append(symusic.Tempo(0, qpm=float(tempo)))
        continuing = prompt is not None and prompt.note_num() > 0
        if continuing:  # the prompt steers: its key, meter, tempo and nearest style, unless given
            from cadenza.tasks.prompt import infer

            prompt, info = infer(self.model, tok, prompt, self.styles, key=key_t, meter=time_signature,
                                 tempo=tempo, style=style, part_rates=self.config.get("part_rates"))
            style, key_t, time_signature = info.style, info.key, info.meter
            if on_info is not None:
                on_info(info)
        elif style is None:
            style = self.config.get("default_style") or (self.styles[0] if self.styles else None)
        meter = tuple(time_signature) if time_signature else None
        if meter is None and prompt is not None and len(prompt.time_signatures):
            ts = prompt.time_signatures[-1]
            meter = (ts.numerator, ts.denominator)
        meter = meter or (4, 4)
        if meter not in tok.tsig_id:
            raise CadenzaError(f"unsupported meter {meter[0]}/{meter[1]}: this model knows "
                               + ", ".join(f"{a}/{b}" for a, b in sorted(tok.tsig_id)))
        programs = asked = None
        if instruments is not None:
            progs = []
            for inst in instruments:
                p, drum = inst if isinstance(inst, tuple) else parse_instrument(inst)
                progs.append(-1 if drum else int(p))
            programs = sorted(set(progs))
            asked = list(dict.fromkeys(progs))  # in the order asked for: the chord track takes the first
        elif prompt is not None and prompt.note_num() > 0:
            programs = sorted({-1 if t.is_drum else t.program for t in prompt.tracks if len(t.notes)})
        full_ids, ids, lead = self._prompt_ids(prompt, style, tempo, meter, key_t,
                                               programs if tok.insts_on else None)
        # a tempo asked for or the prompt's is the piece's: the model writes no tempo of its own, so the
        # length asked for is the length delivered (a model's slower tempo made 240 s into 182)
        fixed = tempo
        if fixed is None and continuing:  # the prompt's last tempo (a file without one plays at 120)
            fixed = max(prompt.tempos, key=lambda t: t.time).qpm if len(prompt.tempos) else 120.0
        # a piece from nothing keeps the first tempo the model writes (it drifted 87, 40, 81, 101 bpm bar by bar)
        constraints = {"programs": programs, "time_signature": meter, "fixed_tempo": fixed or HOLD_TEMPO}
        if lead:
            constraints["forced"] = {1: lead}
        if chords is not None:
            if not tok.chords_on:
                raise CadenzaError(f"model {self.name} cannot follow chords (models from recipes/arrange_model.sh "
                                   "can); give them as a seed instead")
            from cadenza.score.harmony import parse_chord

            plan = [parse_chord(c) for c in chords]
            if bars is not None and bars > len(plan):  # a longer piece cycles the progression
                chords = [chords[k % len(chords)] for k in range(bars)]
                plan = [parse_chord(c) for c in chords]
            first = (sum(1 for t in ids if tok.type_of[t] == T_BAR) + 1) if continuing else 1
            constraints["chords"] = {first + k: c for k, c in enumerate(plan)}
            if bars is None and seconds is None and max_tokens is None:
                bars = len(plan)
        if bars is None and seconds is None and max_tokens is None:
            bars = 16
        if repeat == "auto":  # the style's own rate of restated bars, measured on the training pieces
            repeat = (self.config.get("repeat_rate") or {}).get(style)
        elif repeat in ("off", None):
            repeat = None
        elif not isinstance(repeat, (int, float)) or not 0 <= repeat <= 1:
            raise CadenzaError(f"repeat must be auto, off or a rate between 0 and 1 (got {repeat})")
        pace, plans, plan_bars = self._parts(prompt if continuing else None, style, programs, bars, seconds,
                                             fixed or 120.0, meter)
        plan_seconds = float(seconds) if plan_bars and bars is None and seconds is not None and not fixed else 0.0
        sampling = SamplingConfig(temperature=temperature, top_k=top_k, top_p=top_p,
                                  repetition_penalty=repetition_penalty, seed=seed,
                                  repeat_rate=None if repeat is None else float(repeat), key=key_t,
                                  key_bias=SamplingConfig.key_bias if key is not None else INFERRED_KEY_BIAS,
                                  follow_chords=chords is not None, pace=pace, plans=plans,
                                  plan_bars=plan_bars, plan_seconds=plan_seconds).validate()
        chord_track = None
        if chords is not None and _chord_program(asked or programs) is not None:  # also heard: own track
            chord_track = (list(chords), constraints["chords"] and min(constraints["chords"]), meter,
                           _chord_program(asked or programs))
        return dict(prompt=prompt, full_ids=full_ids, ids=ids, sampling=sampling, tempo=tempo, chord_track=chord_track,
                    stop=StopConfig(bars=bars, seconds=seconds, max_tokens=max_tokens), constraints=constraints)

    def _parts(self, prompt, style, programs, bars, seconds, qpm, meter) -> tuple[dict, dict, int]:
        """The part control's settings (engine/parts.py): ({GM program: notes per beat}, {GM program: plan
        statistics}, the piece's bars). A continuation keeps its prompt's pace for the instruments that
        play in its last bars and gets no plan; a piece from nothing plans each instrument's rests and
        entries from its family's runs in the style, and paces it at its family's rate while it plays."""
        from cadenza.engine.parts import prompt_pace, style_pace, style_plans

        every = programs if programs is not None else list(range(-1, 128))
        pace = style_pace(self.config, style, every)
        if prompt is not None:
            pace.update(prompt_pace(prompt, every))
            return pace, {}, 0
        if bars is None and seconds is not None:  # the tempo is the piece's when fixed, else about 120
            bars = math.ceil(seconds * qpm / 60.0 / (meter[0] * 4.0 / meter[1]))
        plans = style_plans(self.config, style, every) if bars else {}
        for p, spec in plans.items():
            pace[p] = float(spec.get("on_rate", pace[p]))
        return pace, plans, int(bars or 0)

    def generate(self, prompt: symusic.Score | str | os.PathLike | None = None, *, bars: int | None = None,
                 seconds: float | None = None, max_tokens: int | None = None, style: str | None = None,
                 instruments: list | None = None, tempo: float | None = None,
                 time_signature: tuple[int, int] | None = None, temperature: float = 1.0, top_k: int = 0,
                 top_p: float = 0.95, repetition_penalty: float = 1.0, seed: int | None = None,
                 variations: int = 1, progress: Callable[[int], None] | None = None, compile: bool = False,
                 repeat: float | str | None = "auto", key: str | None = None, chords: list[str] | None = None,
                 on_info=None):
        """Continue ``prompt`` (a Score, a file path, or None) and return a Score (a list if variations > 1).

        ``instruments`` is a list of GM programs, names, or (program, is_drum) pairs; only those sound
        in the new music. Stops after ``bars`` new bars, ``seconds`` of new music or ``max_tokens``
        tokens (16 bars when none is given). ``compile``: decode with torch.compile (faster per token,
        seconds to compile first; worth it for long pieces). ``repeat``: the share of bars that may
        restate one of the last 1, 2 or 4 bars ("auto": the style's own rate from the model's
        config; "off" or None: no control; or a number in [0, 1]), see engine/repeat.py.
        ``key`` ("D minor") and ``chords`` (one symbol per new bar, e.g. ["Am", "F", "C", "G"]; the
        default length is then the progression's) need a model with those controls.
        A prompt steers by default: its key, meter, tempo and nearest style are inferred for what is not
        given (``cadenza.tasks.prompt``); ``on_info(PromptInfo)`` is told what they are.
        """
        r = self._prepare(prompt, bars, seconds, max_tokens, style, instruments, tempo, time_signature,
                          temperature, top_k, top_p, repetition_penalty, seed, variations, repeat, key, chords,
                          on_info)
        result = generate(self.model, self.tokenizer, r["ids"], n=variations, sampling=r["sampling"],
                          stop=r["stop"], constraints=r["constraints"], progress=progress, compile=compile)
        # decode new tokens after the *whole* prompt, so they land after it even when it was cut
        full_ids = r["full_ids"]
        scores = [self._to_score(r["prompt"], full_ids + seq[result.prompt_len:], len(full_ids), r["tempo"],
                                 r["chord_track"])
                  for seq in result.ids]
        return scores[0] if variations == 1 else scores

    def stream_notes(self, prompt: symusic.Score | str | os.PathLike | None = None, *, bars: int | None = None,
                     seconds: float | None = None, max_tokens: int | None = None, style: str | None = None,
                     instruments: list | None = None, tempo: float | None = None,
                     time_signature: tuple[int, int] | None = None, temperature: float = 1.0, top_k: int = 0,
                     top_p: float = 0.95, repetition_penalty: float = 1.0, seed: int | None = None,
                     variations: int = 1, on_token: Callable[[int, int], None] | None = None,
                     scores_out: list | None = None, compile: bool = False,
                     repeat: float | str | None = "auto", observe=None, key: str | None = None,
                     chords: list[str] | None = None, on_info=None) -> Iterator[NoteEvent]:
        """Like ``generate``, but yields each new note (a NoteEvent) as soon as its tokens are complete.

        Times are on the piece's clock (seconds from the start of the prompt), so the notes of a
        continuation start where the prompt ends. With the same seed the notes are exactly those of
        ``generate``'s new music. ``on_token(take, token_id)`` sees every token (for progress).
        ``scores_out``: a list that receives, when the stream ends, the Score of each take (what
        ``generate`` would have returned), so a caller can show notes live and still save the piece.
        ``observe(logits, allowed)``: see ``cadenza.engine.generate.stream``.
        """
        from cadenza.engine.notes import NoteDecoder

        r = self._prepare(prompt, bars, seconds, max_tokens, style, instruments, tempo, time_signature,
                          temperature, top_k, top_p, repetition_penalty, seed, variations, repeat, key, chords,
                          on_info)
        decoders = []
        pr = r["prompt"]
        # a continuation keeps the prompt's own tempo map (see _to_score): time the new notes by it
        tempos = [(t.time / pr.tpq, t.qpm) for t in pr.tempos] if pr is not None and pr.note_num() > 0 \
            and len(pr.tempos) else None
        for k in range(variations):
            d = NoteDecoder(self.tokenizer, take=k, tempos=tempos)
            for t in r["full_ids"]:
                d.feed(int(t))
            decoders.append(d)
        eos = self.tokenizer.eos_id
        new: list[list[int]] = [[] for _ in range(variations)]
        for b, t in stream(self.model, self.tokenizer, r["ids"], variations, r["sampling"], r["stop"],
                           r["constraints"], compile=compile, observe=observe):
            if on_token:
                on_token(b, t)
            if t == eos:
                continue
            new[b].append(int(t))
            ev = decoders[b].feed(int(t))
            if ev is not None:
                yield ev
        if scores_out is not None:
            full = r["full_ids"]
            scores_out.extend(self._to_score(r["prompt"], full + seq, len(full), r["tempo"], r["chord_track"])
                              for seq in new)

    def _to_score(self, prompt: symusic.Score | None, seq: list[int], prompt_len: int,
                  tempo: float | None, chord_track=None) -> symusic.Score:
        """The prompt as given plus the decoded new notes, merged by instrument."""
        from cadenza.score import instrument_name

        tok = self.tokenizer
        # keep the prompt's structure tokens (bars, positions, tempo) but not its notes, so new
        # notes decode at the right times and nothing of the prompt is decoded twice
        note_types = {T_PROG, T_PITCH, T_DRUM, T_VEL, T_DUR}
        body = [t for j, t in enumerate(seq) if j >= prompt_len or tok.type_of[t] not in note_types]
        new = tok.decode(body)
        if prompt is None or prompt.note_num() == 0:
            out = new
            if tempo is not None or not len(out.tempos):
                out.tempos.clear()
                out.tempos.append(symusic.Tempo(0, qpm=float(tempo or 120.0)))
        else:  # each new note into the prompt track it continues (several may share a program)
            from cadenza.score.tracks import merge_new_notes

            out = merge_new_notes(at_tpq(prompt), new)
        for tr in out.tracks:
            if not tr.name:
                tr.name = instrument_name(tr.program, tr.is_drum)
        if chord_track is not None:
            _add_chord_track(out, *chord_track)
        return out


CHORD_FAMILIES = ("piano", "organ", "guitar", "strings", "pad", "chromatic")


def _chord_program(programs) -> int | None:
    """The instrument the chord track plays on: the first asked for that plays chords; piano when none
    was asked for; None (no chord track: only the instruments asked for sound) when none of them
    plays chords (a flute alone)."""
    from cadenza.score.roles import family_of, max_at_once

    if programs is None:
        return 0
    for p in programs:
        if p != -1 and family_of(p) in CHORD_FAMILIES and max_at_once(p) >= 3:
            return int(p)
    return None


def _add_chord_track(score: symusic.Score, chords: list[str], first_bar: int, meter, program: int) -> None:
    """A "Chords" track of block chords (root position around C3-C4, the root below), one per bar from
    bar ``first_bar`` (1-based) on, each held for its bar."""
    from cadenza.score.bars import bar_starts
    from cadenza.score.chords import parse_chords

    block = parse_chords(" | ".join(chords), tempo=120, program=program, time_signature=tuple(meter), octave=3)
    block = at_tpq(block)
    starts = bar_starts(score, int(score.end()) + 64 * int(score.tpq) * (first_bar + len(chords)))
    shift = int(starts[first_bar - 1]) if len(starts) >= first_bar else 0
    track = block.tracks[0].copy()
    track.shift_time(shift, inplace=True)
    track.name = "Chords"
    score.tracks.append(track)
