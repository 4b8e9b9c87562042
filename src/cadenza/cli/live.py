"""``cadenza live``: its flags and the command. What is played and when (the player, the sinks, MIDI ports,
call and response) is ``cadenza.live``; this module only turns flags into those and reports."""

from __future__ import annotations

import contextlib
import sys

from cadenza.cli import _positive_float as positive
from cadenza.errors import CadenzaError
from cadenza.live import (AudioSink, LivePlayer, LiveStats, MidiPortSink, NoMidi, Sink, listen_phrase, midi_ports,
                          open_input, phrase_bars)


def add_live_parser(sub) -> None:
    """Add ``live`` to argparse subparsers."""

    def non_negative(text):
        import argparse

        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
        if v < 0:
            raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
        return v

    lv = sub.add_parser("live", help="play generated music in real time (MIDI port or audio); call and response",
                        description="Generate music and play it as it is written: to a MIDI output port (by "
                                    "default a virtual port 'cadenza' that synths and DAWs can connect to) or "
                                    "to the audio device. With --listen PORT, hear a phrase on a MIDI input and "
                                    "answer it, again and again (Ctrl-C stops).")
    out = lv.add_argument_group("output")
    out.add_argument("--port", metavar="NAME", help="MIDI output port (see --list-ports; default: a virtual "
                     "port 'cadenza' where the system allows)")
    out.add_argument("--audio", action="store_true", help="play on the audio device with FluidSynth instead of MIDI")
    out.add_argument("--soundfont", metavar="FILE.sf2", help="SoundFont for --audio (default: as for render)")
    out.add_argument("--list-ports", action="store_true", help="list MIDI output and input ports, then exit")
    ctl = lv.add_argument_group("music")
    ctl.add_argument("--model", metavar="NAME|DIR", help="model name or folder (default: the bundled model)")
    ctl.add_argument("--style", help="style token, e.g. folk, chorale, pop, classical")
    ctl.add_argument("--instruments", metavar="LIST", help="comma-separated GM names or numbers, e.g. piano,violin")
    ctl.add_argument("--tempo", type=positive, metavar="BPM", help="tempo in quarter notes per minute "
                     "(with --listen, the tempo the phrase is heard in; default 120)")
    ctl.add_argument("--prompt", metavar="FILE", help="a .mid/.abc/.musicxml file to continue (not played itself)")
    ctl.add_argument("--temperature", type=positive, default=1.0, help="> 0; lower is safer (default 1.0)")
    ctl.add_argument("--top-p", type=positive, default=0.95, help="nucleus sampling mass (default 0.95)")
    ctl.add_argument("--seed", type=int, help="random seed")
    tm = lv.add_argument_group("timing")
    tm.add_argument("--seconds", type=positive, default=60.0, help="how long to play (default 60)")
    tm.add_argument("--buffer", type=non_negative, default=1.0, metavar="SECONDS",
                    help="music generated ahead before playback starts (default 1.0)")
    lv.add_argument("--listen", metavar="PORT", help="call and response: hear a phrase on this MIDI input, "
                    "answer it, listen again")
    lv.add_argument("--bars", type=int, metavar="N", help="with --listen: bars in each answer "
                    "(default: as long as the phrase, at most 8)")
    lv.add_argument("-q", "--quiet", action="store_true", help="no messages while playing")


def _open_sink(a) -> Sink:
    """The output the user asked for, opened; one clear line where there is none."""
    from cadenza.render.playback import NoAudioDevice

    if a.audio:
        try:
            return AudioSink(soundfont=a.soundfont).open()
        except NoAudioDevice as e:
            raise CadenzaError(f"{e}; without --audio, cadenza live plays to a MIDI port") from None
    try:
        return MidiPortSink(a.port).open()
    except NoMidi as e:
        if a.port:
            raise
        midi_why = str(e)
    try:
        from cadenza.render.playback import output_device

        output_device()
    except NoAudioDevice as e:
        raise CadenzaError(f"{midi_why}; {e}; nothing to play on (write a file instead: "
                           "cadenza generate --out piece.mid)") from None
    raise CadenzaError(f"{midi_why}; use --audio to play on the sound device") from None


def _say(a, text: str) -> None:
    if not a.quiet:
        print(text, file=sys.stderr, flush=True)


def _report(a, stats: LiveStats) -> None:
    s = stats.summary()
    if not s["events"]:
        _say(a, "nothing played")
        return
    under = f"; {s['underruns']} underrun{'s' if s['underruns'] != 1 else ''} ({s['stalled_s']:.1f} s waiting " \
            "for the model)" if s["underruns"] else "; no underruns"
    _say(a, f"played {s['notes']} notes in {s['seconds']:.1f} s; timing p50 {s['p50_ms']:.2f} ms, "
            f"p99 {s['p99_ms']:.2f} ms{under}")


def cmd_live(a) -> int:
    if a.list_ports:
        outs, ins = midi_ports()
        print("MIDI outputs:" + "".join(f"\n  {n}" for n in outs) if outs else "MIDI outputs: none")
        print("MIDI inputs:" + "".join(f"\n  {n}" for n in ins) if ins else "MIDI inputs: none")
        return 0
    if a.bars is not None and a.bars <= 0:
        raise CadenzaError(f"--bars must be greater than 0 (got {a.bars})")
    if a.listen and a.prompt:
        raise CadenzaError("give --listen or --prompt, not both")
    from cadenza.score import parse_instruments, read_score

    instruments = parse_instruments(a.instruments) if a.instruments else None
    prompt = read_score(a.prompt) if a.prompt else None
    inport = open_input(a.listen) if a.listen else None
    try:
        with _open_sink(a) as sink:
            from cadenza.tasks import load_model

            model = load_model(a.model)
            kw = dict(style=a.style, instruments=instruments, temperature=a.temperature, top_p=a.top_p)
            player = LivePlayer(sink, buffer_s=a.buffer)
            if inport is None:
                notes = model.stream_notes(prompt, seconds=a.seconds + player.lookahead_s, tempo=a.tempo,
                                           seed=a.seed, **kw)
                _say(a, f"playing on {sink.description} for {a.seconds:g} s (Ctrl-C stops)")
                try:
                    player.play(notes, seconds=a.seconds)
                except KeyboardInterrupt:
                    _say(a, "stopped")
                _report(a, player.stats)
                return 0
            tempo = a.tempo or 120.0
            turn = 0
            try:
                while True:
                    _say(a, f"listening on '{a.listen}': play a phrase (Ctrl-C stops)")
                    phrase = listen_phrase(inport, tempo=tempo,
                                           on_first_note=lambda: _say(a, "hearing ..."))
                    if phrase.note_num() == 0:
                        continue
                    bars = a.bars or min(8, phrase_bars(phrase))
                    turn += 1
                    _say(a, f"answering ({phrase.note_num()} notes heard, {bars} bar{'s' if bars != 1 else ''}) "
                            f"on {sink.description}")
                    seed = None if a.seed is None else a.seed + turn - 1
                    player.play(model.stream_notes(phrase, bars=bars, seed=seed, **kw), seconds=a.seconds)
                    _report(a, player.stats)
            except KeyboardInterrupt:
                _say(a, "stopped")
                return 0
    finally:
        if inport is not None:
            with contextlib.suppress(Exception):
                inport.close()
