"""The ``cadenza`` command: one entry point, one subcommand per job.

Every user error becomes one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import threading
import time
import warnings
from pathlib import Path

from cadenza.errors import CadenzaError, shown
from cadenza.limits import LIMITS

# exit codes: a user's error (one line says what), a usage error (argparse's line), a bug (one line and a report
# file; 2 as for usage, since both mean "the command did not start its work")
EXIT_USAGE, EXIT_ERROR, EXIT_INTERNAL = 2, 1, 2
SEED_HELP = "random seed, 0 to 4294967295: the same seed gives the same {}"


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {v}")
    return v


def _tempo(text: str) -> float:
    v = _positive_float(text)
    if not LIMITS.tempo_min <= v <= LIMITS.tempo_max:
        raise argparse.ArgumentTypeError(f"must be from {LIMITS.tempo_min:g} to {LIMITS.tempo_max:g} quarter notes "
                                         f"per minute, got {text}")
    return v


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 1 to 65535, got '{text}'")
    return int(text)


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got '{text}'")
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return v


def _seed(text: str) -> int:
    from cadenza.engine.sampling import SEED_MAX

    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if not 0 <= v <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"must be from 0 to {SEED_MAX}, got {text}")
    return v


def _meter(text: str) -> tuple[int, int]:
    """'3/4' -> (3, 4): 1 to LIMITS.beats beats of a whole note to a 128th (as a score's meters are checked)."""
    try:
        a, b = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"meter must look like 3/4, got {shown(text, 20)}") from None
    if not (1 <= a <= LIMITS.beats and 1 <= b <= 128 and b & (b - 1) == 0):
        raise argparse.ArgumentTypeError(f"meter {a}/{b}: 1 to {LIMITS.beats} beats of a whole note (1), half (2), "
                                         "quarter (4), ... to a 128th")
    return a, b


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the usage itself is one --help away)."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="cadenza", description="Music with autoregressive transformers.")
    p.add_argument("--version", action="version", version=f"cadenza {__import__('cadenza').__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    g = sub.add_parser("generate", help="write new music, from nothing or continuing a seed",
                       description="Write new music with a model, from nothing or continuing a seed.")
    seed = g.add_argument_group("seed (at most one)")
    seed.add_argument("--prompt", metavar="FILE", help="a .mid/.abc/.musicxml file to continue, or a recording "
                      "(.wav/.flac/.ogg/.mp3) of a hummed, sung or played melody, transcribed first")
    seed.add_argument("--notes", metavar="TEXT", help='typed notes, e.g. "E4 D4 C4 D4 | E4 E4 E4/2"')
    seed.add_argument("--chords", metavar="TEXT", help='chord symbols, e.g. "| Am | F | C | G |": a model with the '
                      'chords control writes over them (one per bar); another plays them as a block-chord seed')
    seed.add_argument("--repeat", type=_positive_int, default=1, metavar="N",
                      help="play the --chords progression N times (default 1)")
    ctl = g.add_argument_group("controls")
    ctl.add_argument("--model", metavar="NAME|DIR", help="model name or folder (default: the bundled model)")
    ctl.add_argument("--style", help="style token, e.g. folk, chorale, pop, classical (see `cadenza models`)")
    ctl.add_argument("--instruments", metavar="LIST", help="comma-separated GM names or numbers, e.g. piano,violin")
    ctl.add_argument("--tempo", type=_tempo, metavar="BPM", help="tempo in quarter notes per minute")
    ctl.add_argument("--meter", type=_meter, metavar="N/D", help="time signature, e.g. 3/4")
    ctl.add_argument("--key", help='the key, e.g. "D minor" (models with the key control)')
    length = g.add_argument_group("length (default 16 bars)")
    length.add_argument("--bars", type=_positive_int, help=f"new bars to write (at most {LIMITS.bars} without --force)")
    length.add_argument("--seconds", type=_positive_float,
                        help=f"seconds of new music to write (at most {LIMITS.seconds:g} without --force)")
    length.add_argument("--max-tokens", type=_positive_int, help="new tokens to write")
    smp = g.add_argument_group("sampling")
    smp.add_argument("--temperature", type=_positive_float, default=1.0, help="> 0; lower is safer (default 1.0)")
    smp.add_argument("--top-k", type=int, default=0, help="keep the k likeliest tokens (default 0 = off)")
    smp.add_argument("--top-p", type=_positive_float, default=0.95, help="nucleus sampling mass (default 0.95)")
    smp.add_argument("--repetition-penalty", type=float, default=1.0,
                     help=">= 1; discourages recently used pitches (default 1.0: off; it lowers scale consistency)")
    smp.add_argument("--restate", default="auto", metavar="auto|off|RATE",
                     help="share of bars that may restate one of the last 1, 2 or 4 bars (auto: the style's own "
                          "rate, measured on its training pieces; off: no control)")
    smp.add_argument("--seed", type=_seed, help=SEED_HELP.format("piece"))
    smp.add_argument("--variations", type=_positive_int, default=1,
                     help=f"write N takes: NAME-1.mid ... NAME-N.mid (at most {LIMITS.variations})")
    g.add_argument("--out", action="append", metavar="FILE",
                   help="output file by suffix: .mid .musicxml .abc (score), .wav .flac .ogg .mp3 (audio), "
                        ".png (piano roll), .svg .pdf (sheet music); may be given more than once")
    _render_flags(g, play=True)
    g.add_argument("--stream", action="store_true", help="print each note as soon as it is generated")
    g.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                   help="torch.compile the decoder: 1.5-1.7x faster per token after ~10 s of compiling "
                        "(auto: on for pieces of 2 minutes or more)")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    t = sub.add_parser("train", help="train a model on your own music",
                       description="Train a model on folders of MIDI/ABC/MusicXML and music21 corpora.")
    t.add_argument("--data", action="append", required=True, metavar="SRC[=STYLE]",
                   help="a folder of scores, music21:<composer or corpus>, jsb:<grids.json> or "
                        "bl:<rolls.json>, "
                        "optionally =STYLE; repeatable")
    t.add_argument("--out", required=True, metavar="DIR", help="run folder (checkpoint, logs, final model/)")
    t.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    from cadenza.train.loop import TrainConfig  # dataclass defaults are the CLI defaults

    d = TrainConfig(out="")
    for flag, typ, dest, hlp in [
("--batch-size", int, "batch_size", "sequences per step"),
        ("--ctx", int, "ctx", "tokens per training window"), ("--lr", float, "lr", "peak learning rate"),
        ("--d-model", int, "d_model", "model width"), ("--layers", int, "n_layers", "transformer layers"),
        ("--heads", int, "n_heads", "attention heads"), ("--d-ff", int, "d_ff", "feed-forward width"),
        ("--eval-every", int, "eval_every", "steps between validations"),
        ("--save-every", int, "save_every", "steps between checkpoints"), ("--seed", int, "seed", "random seed"),
        ("--transpose", int, "transpose", "transposition augmentation range in semitones (0 = off)"),
        ("--valid-fraction", float, "valid_fraction", "share of pieces held out for validation"),
        ("--max-pieces", int, "max_pieces", "at most this many pieces per source"),
        ("--max-minutes", float, "max_minutes", "stop (resumably) after this many minutes"),
        ("--threads", int, "threads", "CPU threads"), ("--device", str, "device", "auto, cpu or cuda"),
        ("--tokenizer", str, "tokenizer", "remi (multi-track, styles), grid (four-voice chorales) "
         "or frames (piano-roll frames)"),
        ("--dropout", float, "dropout", "dropout rate"),
        ("--precision", str, "precision", "fp32 or bf16 (bf16: faster forward pass where the CPU/GPU has it)"),
        ("--name", str, "name", "model name"), ("--license", str, "license", "license of the data, for the card"),
    ]:
        t.add_argument(flag, type=typ, dest=dest, default=getattr(d, dest), help=f"{hlp} (default {getattr(d, dest)})")
    t.add_argument("--steps", type=_positive_int, help=f"optimizer steps in all (default {d.steps}; "
                   "with --resume, the run's own)")
    t.add_argument("--controls", type=lambda x: tuple(c.strip() for c in x.split(",") if c.strip()), default=(),
                   metavar="LIST", help="remi only: conditioning the model learns, any of key,instruments,chords,infill "
                   "(default none)")
    t.add_argument("--pack", action="store_true", help="fill each training row with several windows instead "
                   "of padding (about 2x the tokens per step on short pieces)")
    t.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    h = sub.add_parser("harmonize", help="harmonize a melody in four parts, or edit a chorale",
                       description="Harmonize a melody in four parts (soprano, alto, tenor, bass) with a chorale "
                                   "model, or regenerate regions of a four-part chorale.")
    src = h.add_argument_group("input (one of)")
    src.add_argument("input", nargs="?", metavar="FILE",
                     help="a melody (one part) or a four-part chorale: .mid/.abc/.musicxml")
    src.add_argument("--notes", metavar="TEXT", help='typed melody, e.g. "G4 G4 D5 D5 | E5 E5 D5/2"')
    h.add_argument("--key", help="key signature of the result, e.g. G, D minor, F#m")
    h.add_argument("--meter", type=_meter, metavar="N/D", help="meter of typed notes (default 4/4)")
    h.add_argument("--tempo", type=_tempo, metavar="BPM", help="tempo of typed notes (default 80)")
    h.add_argument("--keep", metavar="REGIONS", help="notes to keep as they are, e.g. 'bass:1-4' "
                   "(voices:bars, bar.beat allowed, several joined by ';')")
    h.add_argument("--regenerate", metavar="REGIONS", help="what to write anew, e.g. '5-8' (alto, tenor, bass "
                   "of bars 5-8) or 'tenor:3.3-4.2'; default: everything but the soprano")
    h.add_argument("--variations", type=_positive_int, default=1, help="write N takes: NAME-1 ... NAME-N")
    h.add_argument("--temperature", type=_positive_float, default=0.9, help="> 0; lower is safer (default 0.9)")
    h.add_argument("--particles", type=_positive_int, default=8,
                   help=f"candidate harmonizations weighed against the whole melody (default 8, at most "
                        f"{LIMITS.particles})")
    h.add_argument("--seed", type=_seed, help=SEED_HELP.format("chorale"))
    h.add_argument("--free-voice-leading", action="store_true",
                   help="let the model write parallel fifths and octaves (by default they are ruled out)")
    h.add_argument("--model", metavar="NAME|DIR", default="chorale", help="chorale model (default: chorale)")
    h.add_argument("--out", action="append", metavar="FILE",
                   help="output file (.musicxml, .mid; also .wav, .png, .svg, .pdf ...); repeatable")
    _render_flags(h, play=True)
    h.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    r = sub.add_parser("render", help="turn a score into audio, a piano roll or sheet music; audio into a "
                       "spectrogram", description="Render a score (.mid/.abc/.musicxml) to audio (.wav .flac "
                       ".ogg .mp3), a piano roll (.png), sheet music (.svg .pdf) or another score format; or a "
                       "recording (.wav .flac .ogg .mp3) to a mel spectrogram (.png).")
    r.add_argument("input", metavar="FILE", help="a score or a recording")
    r.add_argument("--out", action="append", required=True, metavar="FILE", help="output file by suffix; repeatable")
    r.add_argument("--spectrogram", action="store_true",
                   help="for a score, a .png output is the spectrogram of its audio (default: piano roll)")
    _render_flags(r, play=True)
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    ar = sub.add_parser("arrange", help="add instruments to a score, keeping every note of it",
                        description="Add parts for new instruments to a score (e.g. accompany a melody); the "
                                    "score's own notes are kept exactly. Needs a model with the instruments and "
                                    "infill controls (recipes/arrange_model.sh).")
    ar.add_argument("input", metavar="FILE", help="a score file (.mid .abc .musicxml)")
    ar.add_argument("--add", required=True, metavar="LIST", help="instruments to add, e.g. bass,drums,piano")
    inf = sub.add_parser("infill", help="rewrite some bars (of some tracks), keeping the rest",
                         description="Rewrite bars of a score, for all tracks or some, leading into the bars "
                                     "after them; everything else is kept exactly. Needs a model with the infill "
                                     "control (recipes/arrange_model.sh).")
    inf.add_argument("input", metavar="FILE", help="a score file (.mid .abc .musicxml)")
    inf.add_argument("--bars", required=True, metavar="A-B", help="bars to rewrite, from 1, e.g. 9-12")
    inf.add_argument("--tracks", metavar="LIST", help="tracks to rewrite: numbers from 1 or instrument names "
                                                      "(default: all)")
    for sp in (ar, inf):
        sp.add_argument("--model", metavar="NAME|DIR", help="model name or folder")
        sp.add_argument("--style", help="style token (see `cadenza models`)")
        sp.add_argument("--temperature", type=_positive_float, default=1.0, help="> 0 (default 1.0)")
        sp.add_argument("--top-p", type=_positive_float, default=0.95, help="nucleus sampling mass (default 0.95)")
        sp.add_argument("--seed", type=_seed, help=SEED_HELP.format("result"))
        _output_flags(sp)
    ar.add_argument("--key", help="the key to write in, e.g. 'D minor' (default: the score's own)")

    e = sub.add_parser("edit", help="transpose, change tempo or instruments, quantize a score",
                       description="Edit a score (.mid/.abc/.musicxml) and write the result: the edits are "
                                   "applied in the order instruments, transpose, quantize, tempo.")
    e.add_argument("input", metavar="FILE", help="a score file")
    e.add_argument("--transpose", type=int, metavar="SEMITONES", help="move every pitched note (drums stay), e.g. -2")
    e.add_argument("--tempo", type=_tempo, metavar="BPM",
                   help="the first tempo becomes BPM; later tempo changes keep their ratio to it")
    e.add_argument("--program", action="append", metavar="TRACK=INSTRUMENT",
                   help="play track TRACK (numbered from 1) on INSTRUMENT, e.g. 2=cello; repeatable")
    e.add_argument("--quantize", metavar="1/N", help="snap note starts and ends to a grid, e.g. 1/16 or 1/12 (triplets)")
    _output_flags(e)

    tr = sub.add_parser("transcribe", help="notes of a hummed, sung or played melody (a recording)",
                        description="Transcribe a monophonic recording (.wav/.flac/.ogg/.mp3) into notes with "
                                    "onsets, lengths and loudness (pYIN pitch tracking and onset detection).")
    tr.add_argument("input", metavar="AUDIO", help="a recording of one voice or instrument")
    tr.add_argument("--tempo", type=_tempo, metavar="BPM",
                    help="the tempo of the written score (default: 120, or estimated when quantizing)")
    tr.add_argument("--quantize", metavar="1/N", help="snap notes to a grid of that tempo, e.g. 1/16")
    tr.add_argument("--instrument", default="piano", help="the instrument of the written track (default: piano)")
    _output_flags(tr)

    au = sub.add_parser("audio", help="continue or generate audio with an audio model; train one on recordings",
                        description="The audio model: a codec turns sound into tokens, a transformer prior continues "
                                    "them. `continue` extends a recording, `generate` makes new audio in a style, "
                                    "`train` trains both parts on a folder of recordings (style = first subfolder).")
    asub = au.add_subparsers(dest="audio_command", metavar="{continue,generate,train}", required=True)
    for name, helptext in (("continue", "continue a recording (its own samples are kept as they are)"),
                           ("generate", "new audio in a style, from nothing")):
        ap_ = asub.add_parser(name, help=helptext, description=helptext[0].upper() + helptext[1:] + ".")
        if name == "continue":
            ap_.add_argument("input", metavar="AUDIO", help="the recording to continue (.wav/.flac/.ogg/.mp3)")
        ap_.add_argument("--seconds", type=_positive_float, default=10.0,
                         help="seconds of new audio (default 10; at most 600 without --force)")
        ap_.add_argument("--style", help="the model's style to use (default: " +
                         ("the one that fits the recording best)" if name == "continue" else "its first)"))
        ap_.add_argument("--temperature", type=_positive_float, default=1.0, help="sampling temperature (default 1.0)")
        ap_.add_argument("--top-p", type=_positive_float, default=1.0, help="nucleus sampling (default 1.0: off)")
        ap_.add_argument("--seed", type=_seed, help=SEED_HELP.format("audio"))
        ap_.add_argument("--model", metavar="NAME|DIR", help="audio model (default: the bundled 'audio')")
        ap_.add_argument("--out", action="append", required=True, metavar="FILE",
                         help="audio (.wav/.flac/.ogg/.mp3) or a spectrogram picture (.png); repeatable")
        ap_.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
        _force_flag(ap_)
    at = asub.add_parser("train", help="train a codec and a prior on a folder of recordings",
                         description="Train an audio model: the codec, then the prior over its codes. Resumable: "
                                     "run again with --resume after a stop.")
    at.add_argument("--data", required=True, metavar="DIR",
                    help="recordings; the first subfolder names the style (wavs/piano/..., wavs/strings/...)")
    at.add_argument("--out", required=True, metavar="DIR", help="run folder; the model is written to DIR/model")
    from cadenza.audio.train import AudioTrainConfig  # dataclass defaults are the CLI defaults

    d = AudioTrainConfig(out="")
    for flags, typ, dest, hlp in [
        (("--codec-steps",), _positive_int, "codec_steps", "codec training steps"),
        (("--prior-steps",), _positive_int, "prior_steps", "prior training steps"),
        (("--batch-size",), _positive_int, "batch_size", "sequences per step"),
        (("--ctx",), _positive_int, "ctx", "prior context in tokens"), (("--d-model",), _positive_int, "d_model",
                                                                         "prior width"),
        (("--layers", "--n-layers"), _positive_int, "n_layers", "prior layers (the same flag as train's)"),
        (("--threads",), _positive_int, "threads", "CPU threads"),
        (("--max-minutes",), _positive_float, "max_minutes", "stop (resumably) after this many minutes"),
        (("--name",), str, "name", "model name"), (("--license",), str, "license", "license of the training data")]:
        v = getattr(d, dest)
        at.add_argument(*flags, type=typ, dest=dest, default=v, help=hlp + ("" if v is None else f" (default {v})"))
    at.add_argument("--precision", choices=("fp32", "bf16"), default=d.precision,
                    help="bf16: the prior's forward pass in bfloat16 (faster on CPUs with AVX512-BF16)")
    at.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoints")
    at.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    pl = sub.add_parser("play", help="play a score or a recording on the audio device",
                        description="Play a score (rendered with the SoundFont) or a recording on this machine's "
                                    "audio output.")
    pl.add_argument("input", metavar="FILE", help="a score or a recording")
    _render_flags(pl, play=False)

    from cadenza.cli.live import add_live_parser

    add_live_parser(sub)

    sub.add_parser("models", help="list bundled and local models with their styles",
                   description="List bundled and local models with their styles.")
    sv = sub.add_parser("serve", help="the studio: compose in a web page (works with no network)",
                        description="Run the studio, a web page that composes with you, on this machine. "
                                    "Open the printed address in a browser. Settings may also come from "
                                    "CADENZA_<SETTING> environment variables (e.g. CADENZA_PORT).")
    sv.add_argument("--host", help="address to listen on (default 127.0.0.1: this machine only)")
    sv.add_argument("--port", type=_port, help="port (default 8000)")
    sv.add_argument("--model", metavar="NAME|DIR", help="the default model (default: the bundled one)")
    sv.add_argument("--workers", type=_positive_int, help="generation threads (default 2; each holds its own model)")
    sv.add_argument("--max-queue", type=_positive_int, help="jobs that may wait; more get 'busy' (default 64)")
    sv.add_argument("--results", metavar="DIR", help="where rendered files go (default: a temporary folder)")
    sv.add_argument("--no-token", action="store_true", default=None,
                    help="ask no token: any program or user on this machine may then use the studio (by "
                         "default each run makes a new one, carried in the printed address)")
    sv.add_argument("--allow-host", metavar="NAME", action="append",
                    help="another host name the studio answers to (beyond localhost, 127.0.0.1, [::1] and "
                         "--host; e.g. this machine's name on the network); may be repeated")
    q = sub.add_parser("quantize", help="store a model's weights as int8 (about half the size)",
                       description="Write a copy of a model folder whose weight file stores each matrix as int8 "
                                   "with one scale per row (about half of float16's size). Weights are "
                                   "dequantized on load, so speed is unchanged; validation loss stays within "
                                   "about 1%%.")
    q.add_argument("model", help="a model folder, or a bundled or local model's name")
    q.add_argument("--out", required=True, help="the new model folder")
    q.add_argument("--weights", default="int8", choices=["int8", "float16", "bfloat16", "float32"],
                   help="how to store the weights (default: int8)")
    return p


def _sample_rate(text: str) -> int:
    v = _positive_int(text)
    if not 8000 <= v <= 192000:
        raise argparse.ArgumentTypeError(f"must be between 8000 and 192000 Hz, got {v}")
    return v


def _output_flags(p: argparse.ArgumentParser) -> None:
    """--out (repeatable, by suffix), the sound flags and -q: the outputs of a command that writes one score."""
    p.add_argument("--out", action="append", required=True, metavar="FILE",
                   help="output file by suffix (score, audio, piano roll or sheet music); repeatable")
    _render_flags(p, play=False)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def _render_flags(p: argparse.ArgumentParser, play: bool) -> None:
    grp = p.add_argument_group("sound")
    grp.add_argument("--soundfont", metavar="FILE.sf2", help="General MIDI SoundFont (default: $CADENZA_SOUNDFONT, "
                     "$SOUNDFONT, or the system's, e.g. /usr/share/sounds/sf2/default-GM.sf2)")
    grp.add_argument("--sample-rate", type=_sample_rate, default=44100, metavar="HZ", help="default 44100")
    grp.add_argument("--renderer", choices=("auto", "fluidsynth", "builtin"), default="auto",
                     help="auto: FluidSynth with the SoundFont, else the built-in synthesizer (default)")
    if play:
        grp.add_argument("--play", action="store_true", help="also play the result on the audio device, if any")
    _force_flag(p)


def _force_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--force", action="store_true", help="lift the limits on input size and length asked for "
                   "(see the README's Limits table), for a machine that can take more")
    p.add_argument("--threads", type=_positive_int, help="CPU threads for the model (default: a quarter of "
                   "the cores, 1 to 4; or $CADENZA_THREADS)")


def _decoding_threads(a) -> None:
    """Every command but training runs the model one token at a time: few threads (engine/threads.py)."""
    if a.command in ("train", "models", "quantize", "live") or getattr(a, "audio_command", None) == "train":
        return
    from cadenza.engine.threads import set_decode_threads

    set_decode_threads(getattr(a, "threads", None))


_TERMINATING: list[int] = []  # the signal being acted on, once SIGTERM has come


def _terminate(signum, frame) -> None:
    """SIGTERM: leave like Ctrl-C, so files being written are cleaned up (exit 143).

    A signal handler's exception is raised wherever the main thread is; inside a weakref callback or a
    ``__del__`` (torch.compile runs many) Python swallows it and the work goes on: `generate --bars 500`
    then finished and exited 0. So, once SIGTERM has come, it is raised again every 0.2 s (SIGALRM) until
    the process has left, and the swallowed one is not printed (``_unraisable``)."""
    _TERMINATING.append(signum)
    warnings.simplefilter("ignore")  # leaving: what a library warns of while it unwinds is noise (torch.compile's)
    if hasattr(signal, "setitimer"):
        signal.signal(signal.SIGALRM, _terminate_again)
        signal.setitimer(signal.ITIMER_REAL, 0.2, 0.2)
    raise SystemExit(128 + signum)


def _terminate_again(signum, frame) -> None:
    raise SystemExit(128 + _TERMINATING[0])


def _unraisable(hook):
    def unraisable(info) -> None:
        if not (_TERMINATING and isinstance(info.exc_value, SystemExit)):
            hook(info)
    return unraisable


def _render_options(a):
    from cadenza.render.outputs import RenderOptions

    return RenderOptions(soundfont=a.soundfont, sample_rate=a.sample_rate, renderer=a.renderer,
                         spectrogram=getattr(a, "spectrogram", False))


def _check_outputs(paths: list[str]) -> list[Path]:
    from cadenza.render.outputs import check_outputs

    return check_outputs(paths)


def _describe(path: Path, score=None, audio=None) -> str:
    from cadenza.render.audio import AUDIO_SUFFIXES
    from cadenza.score import SUFFIXES, count_notes, score_seconds

    suffix = path.suffix.lower()
    if suffix in SUFFIXES and score is not None:
        n = len(score.tracks)
        return f"{count_notes(score)} notes, {score_seconds(score):.1f} s, {n} track{'s' if n != 1 else ''}"
    if suffix in AUDIO_SUFFIXES and audio is not None:
        return f"{audio.seconds:.1f} s of audio, {audio.sample_rate} Hz stereo, {audio.renderer}"
    return {".png": "picture", ".svg": "sheet music", ".pdf": "sheet music"}.get(suffix, "")


def _write_all(score, outs: list[Path], a, name: str, label: str = "", quiet: bool = False) -> None:
    """Every output of one score, then playback when asked (skipped with a note where there is no device)."""
    from cadenza.render.outputs import needs_audio, write_outputs

    opts = _render_options(a)
    want_play = getattr(a, "play", False)
    bar = None
    if (needs_audio(outs, opts) or want_play) and not quiet and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(desc="rendering audio", total=100, unit="%", leave=False)

    def progress(f):
        bar.n = int(100 * f)
        bar.refresh()

    res = write_outputs(score, outs, opts, name=name, play=want_play, progress=progress if bar else None)
    if bar:
        bar.close()
    for p in res.written:
        what = _describe(p, score, res.audio)
        print(f"wrote {p}{label}" + (f" ({what})" if what else ""))
    if want_play:
        _play(res.audio.samples, res.audio.sample_rate, name, required=False)


def _play(samples, sample_rate: int, name: str, required: bool) -> None:
    from cadenza.render.playback import NoAudioDevice, play

    try:
        play(samples, sample_rate, label=str(name))
    except NoAudioDevice as e:
        if required:
            raise CadenzaError(f"{e}; nothing played (write a file instead: cadenza render {name} --out "
                               f"{Path(str(name)).stem}.wav)") from None
        print(f"note: {e}; playback skipped", file=sys.stderr)


def _take_path(p: Path, k: int, n: int) -> Path:
    return p if n == 1 else p.with_name(f"{p.stem}-{k}{p.suffix}")


def _repeat(text: str):
    if text in ("auto", "off"):
        return text
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not 0 <= v <= 1:
        raise CadenzaError(f"--restate must be auto, off or a rate between 0 and 1 (got '{text}')")
    return v


def _note_line(ev, takes: int = 1) -> str:
    """One generated note as a line: when, what, how loud, how long, on what."""
    from cadenza.score import instrument_name, pitch_name

    name = pitch_name(ev.pitch)
    take = f"take {ev.take + 1}  " if takes > 1 else ""
    return (f"{take}bar {ev.bar:>3}  {ev.start:8.3f} s  {name:<4} vel {ev.velocity:>3}  {ev.duration:6.3f} s  "
            f"{instrument_name(ev.program, ev.is_drum)}")


def _check_generate(a) -> None:
    """The flags of `generate` that need no model, checked before one loads (one line each)."""
    from cadenza.tasks.compose import check_request

    if a.repeat > 1 and not a.chords:
        raise CadenzaError("--repeat repeats a --chords progression; give --chords")
    if a.repeat > LIMITS.bars and not a.force:
        raise CadenzaError(f"--repeat must be at most {LIMITS.bars} (got {a.repeat}; --force lifts this limit)")
    check_request(bars=a.bars, seconds=a.seconds, max_tokens=a.max_tokens, force=a.force, temperature=a.temperature,
                  top_k=a.top_k, top_p=a.top_p, repetition_penalty=a.repetition_penalty, seed=a.seed,
                  variations=a.variations)
    _repeat(a.restate)
    if a.key:
        from cadenza.score.keys import parse_key

        parse_key(a.key)


def _piece_seconds(a, bars: int | None) -> float:
    """About how long the piece asked for lasts (for --compile auto): its --seconds, or its bars at the
    tempo and meter asked for (120 bpm and 4/4 when not: the model's own are not known yet)."""
    if a.seconds:
        return float(a.seconds)
    if not bars:
        return 0.0
    num, den = a.meter or (4, 4)
    return bars * num * 4 / den * 60 / (a.tempo or 120.0)


def cmd_generate(a) -> int:
    from cadenza.score import parse_chords, parse_instruments, parse_notes, read_score

    seeds = [x for x in (a.prompt, a.notes, a.chords) if x is not None]
    if len(seeds) > 1:
        raise CadenzaError("give at most one of --prompt, --notes, --chords")
    outs = _check_outputs(a.out or [time.strftime("cadenza-%Y%m%d-%H%M%S.mid")])
    instruments = parse_instruments(a.instruments) if a.instruments else None
    first_prog = instruments[0][0] if instruments and not instruments[0][1] else 0
    tempo = a.tempo or 120.0
    meter = a.meter or (4, 4)
    _check_generate(a)
    from cadenza.tasks import load_model

    heard = a.prompt and Path(a.prompt).suffix.lower() in (".wav", ".flac", ".ogg", ".mp3")
    # a score prompt is read (and a bad file fails) before the model loads
    prompt, chords = (read_score(a.prompt, force=a.force) if a.prompt and not heard else None), None
    needs = (("key",) if a.key else ()) + (("chords",) if a.chords else ())  # writing in a key, over chords
    model = load_model(a.model or (_model_for(needs, a.quiet) if needs else None))
    if heard:
        from cadenza.audio.transcribe import transcribe

        # a hummed, sung or played melody: its notes (on a 16th-note grid, the model's own) are the seed
        prompt = transcribe(a.prompt, force=a.force, tempo=a.tempo, quantize="1/16", program=first_prog or 0)
        if not a.quiet:
            from cadenza.score import count_notes, score_seconds

            print(f"transcribed {count_notes(prompt)} notes ({score_seconds(prompt):.1f} s) from {a.prompt}")
    elif a.notes:
        prompt = parse_notes(a.notes, tempo=tempo, program=first_prog, time_signature=meter)
    elif a.chords and getattr(model.tokenizer, "chords_on", False):
        from cadenza.score.harmony import bar_chords

        chords = bar_chords(a.chords, "--chords") * a.repeat  # conditioning: the model writes over them
    elif a.chords:
        # the progression as written, a.repeat times: bar lines kept where it has them (without, each chord is
        # a bar; joining those with '|' made 'C G Am F' x 2 two bars of quarter-note chords)
        text = (" | " if "|" in a.chords else " ").join([a.chords.strip().strip("|").strip()] * a.repeat)
        prompt = parse_chords(text, tempo=tempo, program=first_prog, time_signature=meter)
    kw = dict(bars=a.bars, seconds=a.seconds, max_tokens=a.max_tokens, style=a.style, instruments=instruments,
              tempo=a.tempo, time_signature=a.meter, temperature=a.temperature, top_k=a.top_k, top_p=a.top_p,
              repetition_penalty=a.repetition_penalty, seed=a.seed, variations=a.variations,
              repeat=_repeat(a.restate), key=a.key, chords=chords)
    # progress in the unit the length was asked in: seconds of music, bars, or tokens
    if a.seconds:
        total, unit = a.seconds, "s"
    elif a.max_tokens and not a.bars:
        total, unit = a.max_tokens, "tok"
    else:
        total, unit = a.bars or (len(chords) if chords else 16), "bar"
    bar = None
    if not a.quiet and sys.stderr.isatty() and not a.stream:
        from tqdm import tqdm

        fmt = "{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:g} s of music [{elapsed}<{remaining}]" \
            if unit == "s" else None
        bar = tqdm(desc="generating", total=total, unit=unit, leave=False, bar_format=fmt)
    start = {"s": None, "bar": None}

    def on_token(take, token):
        if bar is not None and unit == "tok" and take == 0:
            bar.update(1)

    long_piece = _piece_seconds(a, total if unit == "bar" else None) >= 120
    compile_ = a.compile == "on" or (a.compile == "auto" and long_piece)
    res = []

    def on_info(info):  # what the prompt says (key, meter, tempo, nearest style), used unless overridden
        if info.note:
            print(f"note: {info.note}", file=sys.stderr)
        if not a.quiet:
            print(info.line(), file=sys.stderr)

    for ev in model.stream_notes(prompt, scores_out=res, on_token=on_token, compile=compile_, on_info=on_info, **kw):
        if a.stream:
            print(_note_line(ev, a.variations), flush=True)
        if bar is not None and ev.take == 0 and unit != "tok":
            if start["s"] is None:
                start["s"], start["bar"] = ev.start, ev.bar - 1
            done = ev.end - start["s"] if unit == "s" else ev.bar - 1 - start["bar"]
            if done > bar.n:
                bar.n = min(total, done)
                bar.refresh()
    if bar:
        bar.close()
    scores = res if isinstance(res, list) else [res]
    for k, score in enumerate(scores, 1):
        _write_all(score, [_take_path(p, k, len(scores)) for p in outs], a, name=f"take {k}", quiet=a.quiet)
    return 0


def cmd_harmonize(a) -> int:
    from cadenza.score import parse_notes, read_score
    from cadenza.tasks.harmonize import Harmonizer

    if (a.input is None) == (a.notes is None):
        raise CadenzaError("give a melody file or --notes (one of them)")
    # each variation runs its particles as one batch: 1e9 asked for 264 GB (found by bench/robustness.py)
    if a.variations > LIMITS.variations:
        raise CadenzaError(f"--variations must be at most {LIMITS.variations} (got {a.variations})")
    if a.particles > LIMITS.particles:
        raise CadenzaError(f"--particles must be at most {LIMITS.particles} (got {a.particles})")
    outs = _check_outputs(a.out or [time.strftime("chorale-%Y%m%d-%H%M%S.musicxml")])
    if a.key:
        from cadenza.score.keys import parse_key

        parse_key(a.key)  # a bad key fails before any work
    if a.notes is not None:
        score, name = parse_notes(a.notes, tempo=a.tempo or 80, time_signature=a.meter or (4, 4)), "the notes"
    else:
        score, name = read_score(a.input, force=a.force), a.input
    harm = Harmonizer.load(a.model)
    bar = None
    if not a.quiet and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(desc="harmonizing", unit="cell", leave=False)

    def progress(done, total):
        bar.total = total
        bar.n = done
        bar.refresh()

    res = harm.harmonize(score, name=name, keep=a.keep, regenerate=a.regenerate, key=a.key,
                         variations=a.variations, temperature=a.temperature, particles=a.particles,
                         rules=not a.free_voice_leading,
                         seed=a.seed, progress=progress if bar else None)
    if bar:
        bar.close()
    for msg in res.notes:
        print(f"note: {msg}", file=sys.stderr)
    for k, sc in enumerate(res.scores, 1):
        _write_all(sc, [_take_path(p, k, len(res.scores)) for p in outs], a, name=f"take {k}",
                   label=" (4 parts)", quiet=a.quiet)
    return 0


def _read_input(path: str, force: bool = False):
    """(score, None) for a score file, (None, (samples, sample_rate)) for a recording."""
    from cadenza.render.audio import AUDIO_SUFFIXES, read_audio
    from cadenza.score import read_score

    if Path(path).suffix.lower() in AUDIO_SUFFIXES:
        return None, read_audio(path, force=force)
    return read_score(path, force=force), None


def cmd_render(a) -> int:
    from cadenza.render.outputs import write_audio_outputs

    if not Path(a.input).exists():
        raise CadenzaError(f"{a.input} not found")
    outs = _check_outputs(a.out)
    score, rec = _read_input(a.input, a.force)
    if score is not None:
        _write_all(score, outs, a, name=a.input, quiet=a.quiet)
        return 0
    samples, sr = rec
    for p in write_audio_outputs(samples, sr, outs):
        print(f"wrote {p}" + (" (mel spectrogram)" if p.suffix.lower() == ".png" else ""))
    if a.play:
        _play(samples, sr, a.input, required=False)
    return 0


def _track_numbers(text: str, score) -> list[int]:
    """'1,3' or 'piano,bass' -> track indices from 0."""
    from cadenza.score import instrument_name, parse_instrument

    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if part.isdigit():
            k = int(part) - 1
            if not 0 <= k < len(score.tracks):
                raise CadenzaError(f"there is no track {part}: the piece has {len(score.tracks)} tracks")
            out.append(k)
            continue
        prog, drum = parse_instrument(part)
        found = [k for k, t in enumerate(score.tracks) if t.is_drum == drum and (drum or t.program == prog)]
        if not found:
            have = ", ".join(instrument_name(t.program, t.is_drum) for t in score.tracks)
            raise CadenzaError(f"no track plays {part} (the tracks: {have})")
        out.extend(found)
    return sorted(set(out))


def _model_for(needs, quiet: bool = False) -> str | None:
    """With no --model: a model that has the controls a command needs, where the default lacks them."""
    from cadenza.tasks.compose import model_with_controls

    name = model_with_controls(needs)
    if name and not quiet:
        print(f"cadenza: using model '{name}' (the default model has no {'/'.join(needs)} control)", file=sys.stderr)
    return name


def cmd_arrange(a) -> int:
    from cadenza.score import parse_instruments, read_score
    from cadenza.tasks import load_model
    from cadenza.tasks.arrange import arrange

    add = parse_instruments(a.add)
    outs = _check_outputs(a.out)
    score = read_score(a.input, force=a.force)
    cm = load_model(a.model or _model_for(("instruments", "infill"), a.quiet))
    result = arrange(cm, score, add, style=a.style, key=a.key, temperature=a.temperature, top_p=a.top_p,
                     seed=a.seed, force=a.force)
    _write_all(result, outs, a, name=a.input, quiet=a.quiet)
    return 0


def cmd_infill(a) -> int:
    import re

    from cadenza.score import read_score
    from cadenza.tasks import load_model
    from cadenza.tasks.arrange import infill

    m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+))?\s*", a.bars)
    if not m:
        raise CadenzaError(f"cannot read --bars '{a.bars}': use A-B, e.g. 9-12")
    first, last = int(m[1]), int(m[2] or m[1])
    outs = _check_outputs(a.out)
    score = read_score(a.input, force=a.force)
    tracks = _track_numbers(a.tracks, score) if a.tracks else None
    cm = load_model(a.model or _model_for(("infill",), a.quiet))
    result = infill(cm, score, first, last, tracks=tracks, style=a.style, temperature=a.temperature,
                    top_p=a.top_p, seed=a.seed, force=a.force)
    _write_all(result, outs, a, name=a.input, quiet=a.quiet)
    return 0


def cmd_edit(a) -> int:
    from cadenza.score import quantize, read_score, set_program, set_tempo, transpose
    from cadenza.score.edit import parse_grid, parse_program_change

    changes = [parse_program_change(t) for t in a.program or []]  # check every flag before reading
    grid = parse_grid(a.quantize) if a.quantize else None
    if not (changes or a.transpose or grid or a.tempo):
        raise CadenzaError("nothing to do: give --transpose, --tempo, --program or --quantize")
    outs = _check_outputs(a.out)
    score = read_score(a.input, force=a.force)
    for track, inst in changes:
        score = set_program(score, track, inst)
    if a.transpose:
        score = transpose(score, a.transpose)
    if grid is not None:
        score = quantize(score, grid)
    if a.tempo:
        score = set_tempo(score, a.tempo)
    _write_all(score, outs, a, name=a.input, quiet=a.quiet)
    return 0


def cmd_transcribe(a) -> int:
    from cadenza.audio.transcribe import transcribe
    from cadenza.score import parse_instrument

    program, drum = parse_instrument(a.instrument)  # flags are checked before the slow part (the grid too)
    if drum:
        raise CadenzaError("--instrument: a melody cannot be transcribed onto drums")
    outs = _check_outputs(a.out)
    score = transcribe(a.input, force=a.force, tempo=a.tempo, quantize=a.quantize, program=program)
    _write_all(score, outs, a, name=a.input, quiet=a.quiet)
    return 0


def cmd_audio(a) -> int:
    if a.audio_command == "train":
        from cadenza.audio.train import AudioTrainConfig, TimeLimitReached, train_audio

        out = Path(a.out)
        if not a.resume and any((out / f).exists() for f in ("codec_checkpoint.pt", "prior_checkpoint.pt")):
            raise CadenzaError(f"{out} already has a checkpoint: add --resume to continue it, or pick another --out")
        if a.resume and not (out / "codec_checkpoint.pt").exists():
            raise CadenzaError(f"nothing to resume: {out / 'codec_checkpoint.pt'} does not exist")
        cfg = AudioTrainConfig(out=a.out, data=a.data, codec_steps=a.codec_steps, prior_steps=a.prior_steps,
                               batch_size=a.batch_size, ctx=a.ctx, d_model=a.d_model, n_layers=a.n_layers,
                               threads=a.threads, max_minutes=a.max_minutes, precision=a.precision, name=a.name,
                               license=a.license)
        try:
            path = train_audio(cfg, progress=not a.quiet)
        except TimeLimitReached as e:  # a clean, resumable stop, as `train --max-minutes` makes: exit 0
            print(f"cadenza: {e}", file=sys.stderr)
            return 0
        print(f"model written to {path}")
        return 0
    from tqdm import tqdm

    from cadenza.render.audio import AUDIO_SUFFIXES, read_audio, write_audio
    from cadenza.render.pictures import spectrogram_png
    from cadenza.tasks.audio import check_request, load_audio_model

    outs = _check_outputs(a.out)
    bad = [o for o in outs if o.suffix.lower() not in AUDIO_SUFFIXES + (".png",)]
    if bad:
        raise CadenzaError(f"cannot write {bad[0]}: `cadenza audio` writes audio (.wav, .flac, .ogg, .mp3) "
                           "or a spectrogram (.png)")
    prompt = read_audio(a.input, force=a.force) if a.audio_command == "continue" else None
    check_request(a.model, a.seconds, prompt, a.force)  # the slow parts come after every check
    model = load_audio_model(a.model)
    bar = None if a.quiet else tqdm(desc="audio", unit="frame", dynamic_ncols=True)

    def progress(k, total):
        if bar is not None:
            bar.total = total
            bar.update(k - bar.n)  # tqdm redraws at most every 0.1 s

    opts = dict(style=a.style, temperature=a.temperature, top_p=min(a.top_p, 1.0), seed=a.seed, progress=progress,
                force=a.force)
    try:  # the bar is closed before an error's line is printed, which it would otherwise overwrite
        res = model.continue_audio(*prompt, a.seconds, **opts) if prompt else model.generate_audio(a.seconds, **opts)
    finally:
        if bar is not None:
            bar.close()
    marks = [(res.prompt_samples / res.sample_rate, "continuation")] if res.prompt_samples else None
    for o in outs:
        if o.suffix.lower() == ".png":
            spectrogram_png(res.samples, res.sample_rate, o, marks=marks,
                            title=f"{o.stem}: prompt and continuation ({res.style})" if marks else f"{o.stem} ({res.style})")
            what = "spectrogram"
        else:
            write_audio(o, res.samples, res.sample_rate)
            what = f"{res.seconds:.1f} s of audio ({res.seconds - res.prompt_samples / res.sample_rate:.1f} s new)"
        if not a.quiet:
            print(f"wrote {o}: {what}, style {res.style}")
    if not a.quiet:
        new = res.seconds - res.prompt_samples / res.sample_rate
        print(f"{new:.1f} s of audio in {res.wall_s:.1f} s ({new / max(res.wall_s, 1e-9):.2f}x real time)")
    return 0


def cmd_play(a) -> int:
    from cadenza.render import render_audio

    if not Path(a.input).exists():
        raise CadenzaError(f"{a.input} not found")
    score, rec = _read_input(a.input, a.force)
    if score is not None:
        audio = render_audio(score, soundfont=a.soundfont, sample_rate=a.sample_rate, renderer=a.renderer,
                             name=a.input)
        samples, sr = audio.samples, audio.sample_rate
    else:
        samples, sr = rec
    _play(samples, sr, a.input, required=True)
    return 0


def _cmd_live(a) -> int:
    from cadenza.cli.live import cmd_live

    return cmd_live(a)


def cmd_train(a) -> int:
    from dataclasses import fields

    from cadenza.train import TrainConfig, train

    cfg = TrainConfig(out=a.out, **{f.name: getattr(a, f.name) for f in fields(TrainConfig)
                                    if f.name not in ("out", "steps") and hasattr(a, f.name)})
    path = train(cfg, resume=a.resume, progress=not a.quiet, steps=a.steps)
    print(f"model written to {path}")
    return 0


def cmd_models(a) -> int:
    from cadenza.tasks import list_models
    from cadenza.tasks.compose import find_model

    problems: list[str] = []
    models = list_models(problems)
    for line in problems:  # a broken folder is reported and skipped; the others are still listed
        print(f"cadenza: skipped a model: {line}", file=sys.stderr)
    default = find_model(None).resolve()
    if not models:
        print("no models found")
        return 0
    for m in models:
        loss = ", ".join(f"{k} {v:.3f}" for k, v in m["valid_loss"].items())
        kind = m["kind"] + (", default" if Path(m["path"]).resolve() == default else "")
        print(f"{m['name']:<16} {kind:<17} {m['family']:<13} styles: {', '.join(m['styles']) or '-'}"
              + (f"  (valid loss {loss})" if loss else "") + f"\n{'':<16} {m['path']}")
    return 0


def cmd_serve(a) -> int:
    import socket

    from cadenza.server.settings import Settings

    settings = Settings.from_env(host=a.host, port=a.port, model=a.model, workers=a.workers,
                                 max_queue=a.max_queue, results_dir=Path(a.results) if a.results else None,
                                 no_token=a.no_token, allow_hosts=",".join(a.allow_host or []) or None)
    try:  # say clearly when the port is taken, before loading anything
        family = socket.getaddrinfo(settings.host, settings.port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((settings.host, settings.port))
    except OSError as e:
        raise CadenzaError(f"cannot listen on {settings.host}:{settings.port}: {e.strerror or e} "
                           "(choose another with --port)") from None
    from cadenza.server.serve import serve

    return serve(settings)


def cmd_quantize(a) -> int:
    from cadenza.model import quantize_model_folder
    from cadenza.tasks import find_model

    src = find_model(a.model)
    out = Path(a.out)
    if out.resolve() == src.resolve():
        raise CadenzaError(f"{out}: give a new folder, not the model's own")
    quantize_model_folder(src, out, weights=a.weights)
    size = sum(f.stat().st_size for f in out.iterdir()) / 1e6
    print(f"wrote {out} ({a.weights} weights, {size:.1f} MB)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        a = parser.parse_args(argv)
    except SystemExit as e:  # argparse already printed one usage line
        return int(e.code or 0)
    if a.command is None:
        parser.print_help()
        return EXIT_USAGE
    main_thread = threading.current_thread() is threading.main_thread()
    before = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    hook, sys.unraisablehook = sys.unraisablehook, _unraisable(sys.unraisablehook)
    try:
        return _run(a, argv)
    finally:
        if main_thread:
            if _TERMINATING and hasattr(signal, "setitimer"):
                signal.setitimer(signal.ITIMER_REAL, 0)  # leaving: no more reminders
            signal.signal(signal.SIGTERM, before)
        sys.unraisablehook = hook


def _run(a, argv: list[str] | None) -> int:
    try:
        _decoding_threads(a)
        return {"generate": cmd_generate, "harmonize": cmd_harmonize, "train": cmd_train,
                "models": cmd_models, "render": cmd_render, "play": cmd_play, "live": _cmd_live,
                "quantize": cmd_quantize, "serve": cmd_serve, "edit": cmd_edit, "transcribe": cmd_transcribe,
                "arrange": cmd_arrange, "infill": cmd_infill, "audio": cmd_audio}[a.command](a)
    except CadenzaError as e:
        print(f"cadenza: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("cadenza: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `cadenza generate --stream | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:  # a bug: one line here, the traceback in a file for the bug report
        return _internal_error(e, sys.argv[1:] if argv is None else argv)


def _internal_error(e: Exception, argv: list[str]) -> int:
    import shlex
    import tempfile
    import traceback

    text = "".join(traceback.format_exception(e))
    what = f"cadenza: internal error ({type(e).__name__})"
    try:
        fd, path = tempfile.mkstemp(prefix="cadenza-report-", suffix=".txt")
        with os.fdopen(fd, "w") as f:
            f.write(f"cadenza {__import__('cadenza').__version__}, Python {sys.version.split()[0]}, {sys.platform}\n"
                    f"command: cadenza {shlex.join(map(str, argv))}\n\n{text}")
    except OSError:
        print(f"{what}; the report could not be written, so here it is:\n{text}", file=sys.stderr)
        return EXIT_INTERNAL
    print(f"{what}; the full report is in {path} - please include it in a bug report", file=sys.stderr)
    return EXIT_INTERNAL
