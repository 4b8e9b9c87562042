"""Training data: folders of scores and music21 corpus names -> token shards.

A source is a folder (every .mid/.midi/.abc/.musicxml/.mxl/.xml inside it,
recursively; multi-tune ABC files give one piece per tune) or
``music21:<composer or corpus>``. A source's style is given as
``SOURCE=style`` or inferred from a small table of well-known corpora, else
from the folder's name. Pieces are tokenized once and cached as flat uint16
arrays (nanoGPT's shards) with piece offsets and bar offsets, so training
samples windows without touching a score again.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import symusic
from tqdm import tqdm

from cadenza.errors import CadenzaError

SCORE_SUFFIXES = {".mid", ".midi", ".abc", ".musicxml", ".mxl", ".xml"}

# POP909's MIDI files carry unreliable meters (1/4, 2/4, several at tick 0) although the
# songs are in 4/4 (its beat annotations say so); a wrong meter makes "bars" meaningless.
FIXED_METERS = {"pop909": (4, 4)}

# style of well-known corpora, by folder or corpus name (lower case)
KNOWN_STYLES = {
    "pop909": "pop", "nottingham": "folk", "abc_cleaned": "folk", "asap": "classical",
    "jsb-chorales": "chorale", "bach": "chorale", "palestrina": "chorale",
    "ryansmammoth": "folk", "oneills1850": "folk", "essenfolksong": "folk",
    "beethoven": "classical", "mozart": "classical", "haydn": "classical", "chopin": "classical",
}


@dataclass
class Source:
    spec: str
    style: str

    @classmethod
    def parse(cls, text: str) -> "Source":
        spec, _, style = text.partition("=")
        if not style:
            name = spec.split(":", 1)[1] if spec.startswith("music21:") else Path(spec.rstrip("/")).name
            name = "jsb-chorales" if spec.startswith("jsb:") else name
            style = KNOWN_STYLES.get(name.lower(), name.lower())
        if spec.startswith(("jsb:", "bl:")) and not Path(spec.split(":", 1)[1]).is_file():
            raise CadenzaError(f"data source {spec.split(':', 1)[1]} does not exist")
        if not spec.startswith(("music21:", "jsb:", "bl:")) and not Path(spec).exists():
            raise CadenzaError(f"data source {spec} does not exist")
        return cls(spec, style)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CadenzaError(f"cannot read {path}: {e}") from None
    if not isinstance(data, dict):
        raise CadenzaError(f"{path}: expected {{split: [piece, ...]}}")
    return data


def _music21_paths(name: str) -> list:
    import music21

    paths = music21.corpus.getComposer(name)
    if not paths:
        paths = [p for p in music21.corpus.getCorePaths() if name.lower() in str(p).lower()]
    if not paths:
        raise CadenzaError(f"music21 corpus has nothing named '{name}' (try bach, palestrina, beethoven, ryansMammoth)")
    return sorted(paths)


def iter_pieces(source: Source, asap_scores_only: bool = True, only: str | None = None,
                valid_fraction: float = 0.05) -> Iterator[tuple[str, symusic.Score]]:
    """(piece id, score) for every readable piece of a source; unreadable files are skipped.

    ``only="valid"`` (or ``"train"``) yields one split, skipping other files before parsing them.
    """
    from cadenza.score import from_music21, read_abc_tunes, read_score

    def wanted(pid: str) -> bool:
        return only is None or (is_valid(pid, valid_fraction) == (only == "valid"))

    if source.spec.startswith("jsb:"):  # a JSON of 16th-note SATB grids per split (the JSB chorales)
        from cadenza.tokenizers.grid import GridTokenizer

        path = Path(source.spec[4:])
        grid_tok = GridTokenizer()
        for split, chorales in _read_json(path).items():
            for n, grid in enumerate(chorales):
                pid = f"{path.stem}/{split}/{n}"
                if wanted(pid):
                    yield pid, grid_tok.grid_to_score(np.asarray(grid))
        return
    if source.spec.startswith("bl:"):  # a JSON of piano-roll frames per split (the polyphonic benchmark)
        from cadenza.tokenizers.frames import FrameTokenizer

        path = Path(source.spec[3:])
        frame_tok = FrameTokenizer()
        for split, pieces in _read_json(path).items():
            for n, frames in enumerate(pieces):
                pid = f"{path.stem}/{split}/{n}"
                if wanted(pid):
                    yield pid, frame_tok.frames_to_score(frames)
        return
    if source.spec.startswith("music21:"):
        import music21

        for p in _music21_paths(source.spec.split(":", 1)[1]):
            if not wanted(f"{source.spec}/{Path(p).name}"):
                continue
            try:
                yield f"{source.spec}/{Path(p).name}", from_music21(music21.corpus.parse(p, forceSource=True))
            except Exception:  # noqa: BLE001 - a corpus file music21 cannot parse is skipped
                continue
        return
    root = Path(source.spec)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.suffix.lower() in SCORE_SUFFIXES)
    # ASAP holds both performances and their quantized scores; the scores are what we learn from
    if asap_scores_only and any(p.name == "midi_score.mid" for p in files):
        files = [p for p in files if p.name == "midi_score.mid"]
    meter = FIXED_METERS.get(root.name.lower())
    for f in files:
        # ids relative to the source folder: the split must not depend on how the path was typed
        rel = f"{root.name}/{f.relative_to(root).as_posix()}" if f != root else f.name
        try:
            if f.suffix.lower() == ".abc":
                for n, (title, score) in enumerate(read_abc_tunes(f)):
                    if wanted(f"{rel}#{n}"):
                        yield f"{rel}#{n}", score
            elif wanted(rel):
                score = read_score(f)
                if meter:
                    score.time_signatures.clear()
                    score.time_signatures.append(symusic.TimeSignature(0, *meter))
                yield rel, score
        except CadenzaError:
            continue


def annotated_chords(source: Source, pid: str, score: symusic.Score):
    """The chord of each bar from a corpus's own annotations (POP909's chord_midi.txt: the chord
    sounding longest in the bar), or "auto" (recognized from the notes) where there are none."""
    root = Path(source.spec)
    if root.name.lower() != "pop909":
        return "auto"
    from cadenza.score.bars import bar_starts
    from cadenza.score.build import ticks_to_seconds
    from cadenza.score.harmony import parse_chord

    song = root / Path(pid).relative_to(root.name).parent / "chord_midi.txt"
    if not song.is_file():
        return "auto"
    spans = []
    for line in song.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3:
            try:
                spans.append((float(parts[0]), float(parts[1]), parse_chord(parts[2])))
            except CadenzaError:
                spans.append((float(parts[0]), float(parts[1]), None))
    tick = score if str(score.ttype).endswith("Tick") else score.to("tick")
    starts = bar_starts(tick, int(tick.end()) + 1)
    edges = ticks_to_seconds(tick, np.append(starts, starts[-1] + (starts[-1] - starts[-2] if len(starts) > 1
                                                                   else 4 * tick.tpq)))
    out = []
    for a, b in zip(edges[:-1], edges[1:]):
        weight: dict = {}
        for x, y, ch in spans:
            o = min(b, y) - max(a, x)
            if o > 0:
                weight[ch] = weight.get(ch, 0.0) + o
        out.append(max(weight, key=weight.get) if weight else None)
    return out


def encode_variants(tokenizer, source: Source, pid: str, score: symusic.Score) -> list[tuple[str, list[int]]]:
    """(id, token ids) of a piece for training: the piece itself and, for a tokenizer with the infill
    control and a piece of several tracks, the piece again with some tracks given (the melody, or
    a random set: what "accompany this melody" and "add a track" look like), chosen by the piece id."""
    if not getattr(tokenizer, "chords_on", False) and not getattr(tokenizer, "infill_on", False):
        return [(pid, tokenizer.encode(score, source.style, eos=True))]
    chords = annotated_chords(source, pid, score) if tokenizer.chords_on else "auto"
    rng = np.random.default_rng(int(hashlib.sha1(pid.encode()).hexdigest()[:8], 16))
    if getattr(tokenizer, "insts_on", False) and Path(source.spec).name.lower() == "pop909":
        score = pop909_band(score, rng)
    score = drop_unisons(score, tokenizer.spec.positions_per_beat)
    out = [(pid, tokenizer.encode(score, source.style, eos=True, chords=chords))]
    playing = [k for k, t in enumerate(score.tracks) if len(t.notes)]
    if tokenizer.infill_on and len(playing) >= 2:
        pitched = [k for k in playing if not score.tracks[k].is_drum]
        if pitched and rng.random() < 0.5:  # the melody: the highest line
            given = [max(pitched, key=lambda k: float(np.mean(score.tracks[k].notes.numpy()["pitch"])))]
        else:
            given = sorted(rng.choice(playing, size=int(rng.integers(1, len(playing))), replace=False).tolist())
        out.append((f"{pid}#given", tokenizer.encode(score, source.style, eos=True, chords=chords, given=given)))
    return out


def _first_of_each(group: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """A mask of one element per value of ``group``: the one with the smallest ``rank``."""
    order = np.lexsort((rank, group))
    first = np.ones(len(order), dtype=bool)
    first[1:] = group[order][1:] != group[order][:-1]
    mask = np.zeros(len(order), dtype=bool)
    mask[order[first]] = True
    return mask


def drop_unisons(score: symusic.Score, positions_per_beat: int) -> symusic.Score:
    """The score without same-instrument unisons: a note whose instrument (program, or drums) already
    has that pitch starting at the same grid position (in this track or an earlier one on the same
    program) is dropped, the longest of them kept. One MIDI channel cannot sound them twice, and a
    model trained on them learns to repeat a note at one onset (chorale voices on one program share a
    note 3.8% of the time, classical piano 2.3%, Palestrina 1.6%, the quartets 1.3%)."""
    out = score.copy()
    grid = max(1, int(score.tpq) // positions_per_beat)
    seen: dict[tuple, np.ndarray] = {}
    for t in out.tracks:
        a = t.notes.numpy()
        if not len(a["time"]):
            continue
        key = (bool(t.is_drum), -1 if t.is_drum else int(t.program))
        slot = (np.round(a["time"] / grid).astype(np.int64) << 7) | a["pitch"].astype(np.int64)
        keep = _first_of_each(slot, -a["duration"].astype(np.int64))  # the longest of each slot
        before = seen.get(key)
        if before is not None:
            keep &= ~np.isin(slot, before)
        seen[key] = slot[keep] if before is None else np.concatenate([before, slot[keep]])
        if keep.all():
            continue
        idx = np.flatnonzero(keep)  # in the track's own order
        t.notes = symusic.Note.from_numpy(a["time"][idx], a["duration"][idx], a["pitch"][idx], a["velocity"][idx],
                                          "tick")
    return out


# POP909's three tracks are all piano (program 0): a model with the instruments control learns more
# from them as a band. Each song gets a lead instrument for the sung melody and one for the bridge
# (chosen by the song's id), the piano keeps the accompaniment, and 60% of songs get rule-made drums
# (cadenza.train.drums: no corpus we may use has drum tracks).
POP909_LEAD = (0, 73, 65, 56, 40, 71, 52, 80, 68, 22)  # piano, flute, alto sax, trumpet, violin, clarinet, choir,
POP909_BRIDGE = (0, 48, 24, 4, 11, 26, 49, 61)        # square lead, oboe, harmonica; strings, guitars, e-piano...
POP909_DRUMS = 0.6
POP909_BASS = 0.7  # songs whose piano's bass line becomes a bass part (with_bass)
POP909_BASS_PROGRAMS = (32, 33, 34, 35, 38)  # acoustic, finger, pick, fretless, synth bass
# GM programs that play low parts: the basses, cello, contrabass, trombone, tuba, bassoon
BASS_PROGRAMS = frozenset(range(32, 40)) | {42, 43, 57, 58, 70}


def _role_pool(pitches: np.ndarray, per_onset: float) -> list[int]:
    """GM programs a part may be moved onto in a re-instrumented window: one whose range holds (nearly)
    all its pitches and whose player sounds as many notes at once as the part does. The first
    models moved any low part onto a bass and any other onto any program, so they learned 11-note
    chords on basses and flutes; a chordal part now goes only to instruments that play chords, a
    line to line or chord instruments, a low line to the bass instruments."""
    from cadenza.score.roles import max_at_once, range_of

    if not len(pitches):
        return []
    low = float(pitches.mean()) < 52
    out = []
    for q in range(112):
        lo, hi = range_of(q)
        if np.mean((pitches >= lo) & (pitches <= hi)) < 0.95:
            continue
        if per_onset > 1.2 and max_at_once(q) < 3:
            continue
        if low and per_onset <= 1.2 and q not in BASS_PROGRAMS:
            continue
        if not low and q in BASS_PROGRAMS:
            continue
        out.append(q)
    return out


def pop909_band(score: symusic.Score, rng: np.random.Generator) -> symusic.Score:
    """POP909's MELODY / BRIDGE / PIANO tracks on instruments of a band, drums added to some songs."""
    from cadenza.train.drums import with_drums

    out = score.copy()
    lead, bridge = int(rng.choice(POP909_LEAD)), int(rng.choice(POP909_BRIDGE))
    for t in out.tracks:
        name = t.name.upper()
        if name == "MELODY":
            t.program = lead
        elif name == "BRIDGE":
            t.program = bridge
    if rng.random() < POP909_DRUMS:
        out = with_drums(out, rng)
    if rng.random() < POP909_BASS:
        out = with_bass(out, int(rng.choice(POP909_BASS_PROGRAMS)))
    return out


def as_trained(tokenizer, spec: str, pid: str, score: symusic.Score) -> symusic.Score:
    """A piece as training shows it to the model, before tokenizing (as ``encode_variants``): a POP909
    song on the band its id seeds, same-instrument unisons dropped. For measuring real parts by role
    (``recipes/part_rates.py``, ``bench/parts.py``)."""
    import hashlib

    if getattr(tokenizer, "insts_on", False) and Path(spec).name.lower() == "pop909":
        rng = np.random.default_rng(int(hashlib.sha1(pid.encode()).hexdigest()[:8], 16))
        score = pop909_band(score, rng)
    return drop_unisons(score, tokenizer.spec.positions_per_beat)


def with_bass(score: symusic.Score, program: int, below: int = 55) -> symusic.Score:
    """The PIANO track's bass line as a bass instrument: at each onset its lowest note, where that is
    under ``below`` (G3), moves to a new track on ``program``. No corpus here has a bass part of its
    own, and a model that never saw one leaves a bass asked for silent (it did: 1 note in 4 minutes)."""
    out = score.copy()
    piano = next((t for t in out.tracks if t.name.upper() == "PIANO" and len(t.notes)), None)
    if piano is None:
        return out
    a = piano.notes.numpy()
    low = _first_of_each(a["time"], a["pitch"]) & (a["pitch"] < below)  # the lowest note of each onset
    if not low.any():
        return out
    bass = symusic.Track("BASS", program, False)
    for keep, track in ((low, bass), (~low, piano)):
        idx = np.flatnonzero(keep)
        track.notes = symusic.Note.from_numpy(a["time"][idx], a["duration"][idx], a["pitch"][idx],
                                              a["velocity"][idx], "tick")
    out.tracks.append(bass)
    return out


def is_valid(piece_id: str, fraction: float = 0.05) -> bool:
    """Deterministic train/valid split by a hash of the piece id.

    A source's own split is kept: a piece under a folder (or JSON key) named ``valid``,
    ``validation`` or ``test`` is held out, one under ``train`` is trained on.
    """
    parts = set(piece_id.lower().split("/")[:-1])
    if parts & {"valid", "validation", "test"}:
        return True
    if "train" in parts:
        return False
    h = int(hashlib.sha1(piece_id.encode()).hexdigest()[:8], 16)
    return (h % 10000) < fraction * 10000


class Shard:
    """All tokens of one style and split: ``tokens`` (uint16), piece ``starts``, ``bars`` offsets."""

    def __init__(self, tokens: np.ndarray, starts: np.ndarray, bars: np.ndarray, ids: list[str]):
        self.tokens, self.starts, self.bars, self.ids = tokens, starts, bars, ids

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, tokens=self.tokens, starts=self.starts, bars=self.bars)
        os.replace(tmp, path)
        path.with_suffix(".json").write_text(json.dumps(self.ids))

    @classmethod
    def load(cls, path: Path) -> "Shard":
        z = np.load(path)
        return cls(z["tokens"], z["starts"], z["bars"], json.loads(path.with_suffix(".json").read_text()))

    @property
    def n_pieces(self) -> int:
        return len(self.starts) - 1


# The version of what encode_variants makes of a piece: part of the shard cache's key, so a change to
# it (2: same-instrument unisons dropped; 3: POP909 bass parts; 4: music21 corpora read by cadenza's own walk,
# no grace notes stretched) tokenizes again instead of reusing stale shards
DATA_PIPELINE = 4


def build_shards(sources: list[Source], tokenizer, out_dir: Path, valid_fraction: float = 0.05,
                 max_pieces: int | None = None, progress: bool = True) -> dict[tuple[str, str], Shard]:
    """Tokenize every source into shards keyed by (style, split); cached in ``out_dir``. ``progress``: a
    bar per source on stderr (off for ``train -q``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = out_dir / "manifest.json"
    key = json.dumps({"sources": [s.__dict__ for s in sources], "tok": tokenizer.to_config(),
                      "valid": valid_fraction, "max": max_pieces, "pipeline": DATA_PIPELINE}, sort_keys=True)
    if manifest.exists() and json.loads(manifest.read_text()).get("key") == key:
        return {(s, sp): Shard.load(out_dir / f"{s}-{sp}.npz")
                for s, sp in json.loads(manifest.read_text())["shards"]}
    collected: dict[tuple[str, str], list[tuple[str, np.ndarray]]] = {}
    for src in sources:
        count = 0
        for pid, variants in tqdm(_tokenized(src, tokenizer), desc=f"tokenizing {src.spec}", unit="piece",
                                  leave=False, disable=not progress):
            if not variants or len(variants[0][1]) < 16:
                continue
            split = "valid" if is_valid(pid, valid_fraction) else "train"
            for vid, ids in variants:
                collected.setdefault((src.style, split), []).append((vid, np.asarray(ids, dtype=np.uint16)))
            count += 1
            if max_pieces and count >= max_pieces:
                break
        if count == 0:
            raise CadenzaError(f"data source {src.spec} has no readable pieces")
    shards = {}
    for (style, split), pieces in collected.items():
        tokens = np.concatenate([p for _, p in pieces])
        starts = np.cumsum([0] + [len(p) for _, p in pieces])
        bars = tokenizer.window_starts(tokens)
        shards[(style, split)] = sh = Shard(tokens, starts, bars, [pid for pid, _ in pieces])
        sh.save(out_dir / f"{style}-{split}.npz")
    manifest.write_text(json.dumps({"key": key, "shards": sorted(shards)}))
    return shards


def _tokenized(src: Source, tokenizer):
    """(piece id, encode_variants(...) or None) for every piece of a source. music21's parser takes
    about a second per Palestrina mass movement, so music21 corpora are parsed in worker processes
    (one per core, at most 8); the rest is fast enough in this one."""
    workers = min(os.cpu_count() or 1, 8)
    if src.spec.startswith("music21:") and workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        paths = _music21_paths(src.spec.split(":", 1)[1])
        ex = ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(tokenizer.to_config(),))
        try:
            yield from ex.map(_music21_piece, [(src.spec, src.style, str(p)) for p in paths], chunksize=2)
        finally:  # a caller that stops early (max_pieces) does not wait for the rest
            ex.shutdown(wait=True, cancel_futures=True)
        return
    for pid, score in iter_pieces(src):
        try:
            yield pid, encode_variants(tokenizer, src, pid, score)
        except Exception:  # noqa: BLE001 - miditok rejects a few odd files; skip them, do not stop
            yield pid, None


_worker_tokenizer = None


def _init_worker(tok_config: dict) -> None:
    global _worker_tokenizer
    from cadenza.tokenizers import tokenizer_from_config

    _worker_tokenizer = tokenizer_from_config(tok_config)


def _music21_piece(job: tuple[str, str, str]):
    import music21

    from cadenza.score import from_music21

    spec, style, path = job
    pid = f"{spec}/{Path(path).name}"
    try:
        score = from_music21(music21.corpus.parse(path, forceSource=True))  # never music21's pickle cache
        return pid, encode_variants(_worker_tokenizer, Source(spec, style), pid, score)
    except Exception:  # noqa: BLE001 - a corpus file music21 cannot parse is skipped
        return pid, None


class WindowSampler:
    """Random training windows: the header, then tokens from a window start (a bar, a time step), transposed."""

    def __init__(self, shards: dict[str, Shard], tokenizer, ctx: int, seed: int = 0, transpose: int = 5,
                 pack: bool = False):
        self.shards, self.tok, self.ctx = shards, tokenizer, ctx
        # pack: fill each row with windows one after another instead of padding after the first.
        # Short pieces (a chorale, a folk tune) leave half a row as padding otherwise: packing about
        # doubles the tokens learned from per step at the same cost. Each window starts with its
        # header, so the model learns that a header begins a new piece (as in GPT-style packing).
        self.pack = pack
        # infill: some windows put the bars after a gap first (Future ... Now), then lead up to them
        self.fim = 0.2 if getattr(tokenizer, "infill_on", False) else 0.0
        self.styles = sorted(shards)
        self.rng = np.random.default_rng(seed)
        self.transpose = transpose
        tok = tokenizer
        # lookup tables for transposing Pitch tokens (drum pitches are PitchDrum tokens and never move)
        self.is_pitch = np.zeros(tok.vocab_size, dtype=bool)
        self.pitch_val = np.zeros(tok.vocab_size, dtype=np.int16)
        self.pitch_to_id = np.zeros(128, dtype=np.int64)
        for p, i in tok.pitch_ids.items():
            self.is_pitch[i] = True
            self.pitch_val[i] = p
            self.pitch_to_id[p] = i
        self.pitch_lo, self.pitch_hi = min(tok.pitch_ids), max(tok.pitch_ids)
        # instruments: some windows move their pitched instruments onto other GM programs (a low
        # part onto a bass instrument, others onto any melodic one), header and notes alike, so
        # asking for any instrument works, not only the few the corpora play
        self.insts_on = bool(getattr(tok, "insts_on", False))  # headers list the instruments (trimmed per window)
        self.reinstrument = 0.3 if self.insts_on else 0.0
        if self.insts_on:
            from cadenza.tokenizers.remi import T_INST, T_PROG

            self.prog_val = np.full(tok.vocab_size, -2, dtype=np.int16)
            for i in tok.ids_of_type[T_PROG]:
                self.prog_val[int(i)] = tok.value_of[int(i)]
            self.inst_val = np.full(tok.vocab_size, -2, dtype=np.int16)
            for i in tok.ids_of_type[T_INST]:
                self.inst_val[int(i)] = tok.value_of[int(i)]
            from cadenza.tokenizers.remi import T_BAR, T_POS

            self.is_position = np.zeros(tok.vocab_size, dtype=bool)  # Position or Bar: a new onset
            self.is_position[tok.ids_of_type[T_POS]] = True
            self.is_position[tok.ids_of_type[T_BAR]] = True

    def window(self, style: str) -> np.ndarray:
        sh = self.shards[style]
        piece = int(self.rng.integers(sh.n_pieces))
        a, b = int(sh.starts[piece]), int(sh.starts[piece + 1])
        # start at a random bar of the piece (or its start, which keeps the BOS/Style header)
        bars = sh.bars[(sh.bars >= a) & (sh.bars < b)]
        if self.fim and len(bars) >= 3 and self.rng.random() < self.fim:
            w = self._future_first(sh, a, b, bars)
            if w is not None:
                w = self._only_playing(w) if self.insts_on else w
                w = self._transpose(w) if self.transpose else w
                return self._reinstrument(w) if self.reinstrument else w
        if len(bars) and self.rng.random() > 0.1:
            s = int(self.rng.choice(bars))
            if hasattr(self.tok, "header_len"):  # the piece's own header (style, key, instruments)
                head = sh.tokens[a:a + self.tok.header_len(sh.tokens[a:a + 160])].astype(np.int64)
            else:
                head = np.array(self.tok.header(style), dtype=np.int64)
            body = sh.tokens[s:min(b, s + self.ctx + 1 - len(head))].astype(np.int64)
            w = np.concatenate([head, body])
        else:
            w = sh.tokens[a:min(b, a + self.ctx + 1)].astype(np.int64)
        if self.insts_on:
            w = self._only_playing(w)
        if self.transpose:
            w = self._transpose(w)
        return self._reinstrument(w) if self.reinstrument else w

    def _only_playing(self, w: np.ndarray) -> np.ndarray:
        """The window with a header that lists only the instruments playing in it. A piece's header
        lists all of its instruments; a window from a later bar (or cut at the context's end) may not
        hear some of them, and a model trained on such windows learns that an instrument asked for
        may stay silent. A user's list of instruments means: these play."""
        h = self.tok.header_len(w)
        inst = self.inst_val[w[:h]]
        playing = set(self.prog_val[w[h:]].tolist())
        drop = [i for i in np.flatnonzero(inst >= -1) if int(inst[i]) not in playing]
        if not drop or len(drop) == int((inst >= -1).sum()):  # keep a header that would list nothing
            return w
        return np.delete(w, drop)

    def _reinstrument(self, w: np.ndarray) -> np.ndarray:
        if self.rng.random() >= self.reinstrument:
            return w
        tok = self.tok
        progs = self.prog_val[w]
        at = np.flatnonzero(progs >= 0)
        if not len(at):
            return w
        nxt = np.minimum(at + 1, len(w) - 1)
        pitch = np.where(self.is_pitch[w[nxt]], self.pitch_val[w[nxt]], -1)
        used = sorted(set(progs[at].tolist()) | {int(v) for v in self.inst_val[w] if v >= 0})
        lut = np.arange(tok.vocab_size, dtype=np.int64)
        taken = set(used)
        for p in used:
            on = (progs[at] == p) & (pitch >= 0)
            pool = [q for q in _role_pool(pitch[on], self._chords(w, at[on])) if q not in taken]
            if not pool:
                continue
            q = int(pool[int(self.rng.integers(len(pool)))])
            taken.add(q)
            if p in tok.program_id and q in tok.program_id:
                lut[tok.program_id[p]] = tok.program_id[q]
            if p in tok.inst_id and q in tok.inst_id:
                lut[tok.inst_id[p]] = tok.inst_id[q]
        w = lut[w]
        # the header lists its instruments in ascending program order (drums first)
        h = tok.header_len(w)
        ins = np.flatnonzero(self.inst_val[w[:h]] >= -1)
        if len(ins):
            w[ins] = w[ins][np.argsort(self.inst_val[w[ins]], kind="stable")]
        return w

    def _chords(self, w: np.ndarray, prog_at: np.ndarray) -> float:
        """Notes per onset of one instrument in a window: its Program tokens at each Position, counted
        (``prog_at``: indices of its Program tokens)."""
        if not len(prog_at):
            return 1.0
        pos_of = np.maximum.accumulate(np.where(self.is_position[w], np.arange(len(w)), 0))
        onsets = len(np.unique(pos_of[prog_at]))
        return len(prog_at) / max(onsets, 1)

    def _future_first(self, sh, a: int, b: int, bars: np.ndarray) -> np.ndarray | None:
        """header, Future, 1-4 bars from a gap's end, Now, then the bars leading up to that gap."""
        tok = self.tok
        head = sh.tokens[a:a + tok.header_len(sh.tokens[a:a + 160])].astype(np.int64)
        j1 = int(self.rng.integers(1, len(bars)))
        n = int(self.rng.integers(1, 5))
        fut_end = int(bars[j1 + n]) if j1 + n < len(bars) else b
        fut = sh.tokens[int(bars[j1]):fut_end].astype(np.int64)
        fut = fut[fut != tok.eos_id]
        budget = self.ctx + 1 - len(head) - len(fut) - 2
        if budget < 64:
            return None
        fits = [j for j in range(j1) if int(bars[j1]) - int(bars[j]) <= budget]
        if not fits:
            return None
        j0 = int(self.rng.choice(fits))
        body = sh.tokens[int(bars[j0]):int(bars[j1])].astype(np.int64)
        return np.concatenate([head, [tok.future_id], fut, [tok.now_id], body])

    def _transpose(self, w: np.ndarray) -> np.ndarray:
        sel = self.is_pitch[w]
        if not sel.any():
            return w
        pv = self.pitch_val[w[sel]]
        lo = max(-self.transpose, self.pitch_lo - int(pv.min()))
        hi = min(self.transpose + 1, self.pitch_hi - int(pv.max()))
        if lo > hi:
            return w
        k = int(self.rng.integers(lo, hi + 1))
        w = w.copy()
        w[sel] = self.pitch_to_id[pv + k]
        if getattr(self.tok, "key_on", False) or getattr(self.tok, "chords_on", False):
            w = self.tok.rotate_controls(w, k)  # the key and the chords move with the notes
        return w

    def batch(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) int64 arrays of shape (B, ctx); padding targets are -100."""
        x = np.full((batch_size, self.ctx), self.tok.pad_id, dtype=np.int64)
        y = np.full((batch_size, self.ctx), -100, dtype=np.int64)
        for r in range(batch_size):
            n = 0  # tokens of row r filled so far
            while n < self.ctx:
                style = self.styles[int(self.rng.integers(len(self.styles)))]  # styles equally likely
                w = self.window(style)[: self.ctx - n + 1]
                k = len(w) - 1
                x[r, n:n + k] = w[:-1]
                y[r, n:n + k] = w[1:]
                n += k  # the window's last token is only a target; the next window's header follows
                if not self.pack or k <= 0:
                    break
        return x, y
