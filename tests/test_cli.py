"""The command line through ``main([...])``, bad input included: one line, non-zero exit, nothing left."""

from __future__ import annotations

import json

import pytest
import symusic

from cadenza.cli import main
from cadenza.score import read_score, write_score
from conftest import make_score


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code, err, *words):
    assert code != 0
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for w in words:
        assert w.lower() in lines[0].lower(), lines[0]


@pytest.fixture()
def tune(tmp_path, melody):
    p = tmp_path / "tune.mid"
    write_score(melody, p)
    return p


def test_generate_from_nothing(capsys, tmp_path, tiny_model_dir):
    out = tmp_path / "song.mid"
    code, stdout, err = run(capsys, "generate", "--model", tiny_model_dir, "--bars", 2, "--max-tokens", 200,
                            "--seed", 1, "--out", out)
    assert code == 0, err
    assert "wrote" in stdout and str(out) in stdout
    assert symusic.Score(str(out)).note_num() > 0


def test_generate_continues_prompt_and_keeps_it(capsys, tmp_path, tiny_model_dir, tune, melody):
    out = tmp_path / "out.mid"
    code, _, err = run(capsys, "generate", "--model", tiny_model_dir, "--prompt", tune, "--bars", 2,
                       "--temperature", 0.9, "--top-p", 0.95, "--seed", 7, "--out", out)
    assert code == 0, err
    got = read_score(out)
    prompt_notes = sorted((n.start, n.pitch, n.duration) for n in melody.tracks[0].notes)
    got_notes = sorted((n.start, n.pitch, n.duration) for t in got.tracks for n in t.notes)
    assert set(prompt_notes) <= set(got_notes)  # the prompt is kept note for note
    assert {t.program for t in got.tracks} == {0}  # continuing a piano prompt writes piano only


def test_same_seed_same_file(capsys, tmp_path, tiny_model_dir):
    outs = []
    for k in range(2):
        out = tmp_path / f"s{k}.mid"
        assert run(capsys, "generate", "--model", tiny_model_dir, "--bars", 2, "--max-tokens", 150,
                   "--seed", 5, "--out", out)[0] == 0
        outs.append(sorted((n.start, n.pitch) for t in read_score(out).tracks for n in t.notes))
    assert outs[0] == outs[1]


def test_notes_chords_instruments_formats_variations(capsys, tmp_path, tiny_model_dir):
    code, _, err = run(capsys, "generate", "--model", tiny_model_dir, "--notes", "E4 D4 C4 D4 | E4 E4 E4/2",
                       "--bars", 1, "--max-tokens", 100, "--out", tmp_path / "b.mid", "--out", tmp_path / "b.musicxml",
                       "--out", tmp_path / "b.abc")
    assert code == 0, err
    for suffix in ("mid", "musicxml", "abc"):
        assert read_score(tmp_path / f"b.{suffix}").note_num() >= 7
    code, _, err = run(capsys, "generate", "--model", tiny_model_dir, "--chords", "C G Am F",
                       "--instruments", "piano,violin", "--tempo", 96, "--bars", 2, "--max-tokens", 150,
                       "--variations", 3, "--seed", 2, "--out", tmp_path / "take.mid")
    assert code == 0, err
    for k in (1, 2, 3):
        s = read_score(tmp_path / f"take-{k}.mid")
        assert {t.program for t in s.tracks if len(t.notes)} <= {0, 40}
        assert abs(s.tempos[0].qpm - 96) < 0.5
    assert not (tmp_path / "take.mid").exists()


def test_models_lists_styles(capsys, monkeypatch, tiny_model_dir):
    monkeypatch.setenv("CADENZA_MODELS", str(tiny_model_dir.parent))
    code, out, _ = run(capsys, "models")
    assert code == 0 and "tiny" in out and "folk" in out
    assert [ln.split()[0] for ln in out.splitlines() if "default" in ln] == ["arrange"]  # the default is marked


def test_quantize_writes_a_smaller_model_that_generates(capsys, tmp_path, tiny_model_dir):
    code, out, _ = run(capsys, "quantize", str(tiny_model_dir), "--out", str(tmp_path / "q"))
    assert code == 0 and "int8" in out
    assert json.loads((tmp_path / "q" / "config.json").read_text())["weights"] == "int8"
    assert run(capsys, "generate", "--model", str(tmp_path / "q"), "--bars", "2", "--out", str(tmp_path / "a.mid"))[0] == 0
    code, _, err = run(capsys, "quantize", str(tiny_model_dir), "--out", str(tiny_model_dir))
    assert code != 0 and "not the model's own" in err


def test_serve_says_when_the_port_is_taken(capsys):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        code, _, err = run(capsys, "serve", "--port", str(s.getsockname()[1]))
    assert code != 0 and "cannot listen" in err and "--port" in err


def test_help_for_every_command(capsys):
    for cmd in ("generate", "harmonize", "train", "models", "quantize", "live", "render", "play", "serve", "edit",
                "arrange", "infill", "transcribe", "audio"):
        assert run(capsys, cmd, "--help")[0] == 0
    for cmd in ("continue", "generate", "train"):
        assert run(capsys, "audio", cmd, "--help")[0] == 0
    assert run(capsys)[0] != 0


def test_train_and_resume(capsys, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for k in range(6):
        write_score(make_score([(60 + (i * 7 + k) % 12, i * 0.5, 0.5, 80) for i in range(64)]), data / f"p{k}.mid")
    out = tmp_path / "run"
    args = ["train", "--data", f"{data}=folk", "--out", out, "--ctx", 64, "--batch-size", 2, "--d-model", 32,
            "--layers", 1, "--heads", 2, "--d-ff", 32, "--eval-every", 2, "--save-every", 1, "--valid-fraction", 0.2,
            "-q"]
    code, _, err = run(capsys, *args, "--steps", 3, "--precision", "fp8")
    one_line_error(code, err, "precision", "fp8")
    code, stdout, err = run(capsys, *args, "--steps", 3, "--precision", "bf16")  # bf16 autocast on the CPU
    assert code == 0, err
    assert "tokenizing" not in err and "training" not in err  # -q: no bars (the tokenizing one showed before)
    assert (out / "model" / "config.json").is_file() and (out / "model" / "model.safetensors").is_file()
    # a second run into the same folder must not silently overwrite it
    code, _, err = run(capsys, *args, "--steps", 3)
    one_line_error(code, err, "--resume")
    code, _, err = run(capsys, *args, "--steps", 5, "--resume")
    assert code == 0, err
    cfg = json.loads((out / "model" / "config.json").read_text())
    assert cfg["training"]["steps"] == 5 and cfg["styles"] == ["folk"]
    assert cfg["training"]["config"]["precision"] == "bf16"  # the resumed run keeps the run's settings
    # the folder holds the weights of the best validation (early stopping), across the resume too
    hist = cfg["training"]["history"]
    best = min(hist, key=lambda h: sum(h["valid"].values()))
    if sum(best["valid"].values()) >= 0.99 * sum(hist[-1]["valid"].values()):
        best = hist[-1]  # within the noise of the best: the final weights stay
    assert [h["step"] for h in hist] == [2, 3, 4, 5] and cfg["training"]["weights_from_step"] == best["step"]
    assert cfg["training"]["valid_loss"] == best["valid"]
    # a style with no held-out pieces is validated on training data, and the card says so
    from cadenza.train.loop import model_card

    cfg["styles"] = ["folk", "quartet"]
    cfg["training"]["data_stats"]["quartet/train"] = {"pieces": 3, "tokens": 100}
    cfg["training"]["valid_loss"]["quartet"] = 0.5
    card = model_card(cfg)
    assert "| quartet | 0.500 (training data: no held-out pieces) |" in card
    assert "| folk | " in card and "folk | " + f"{cfg['training']['valid_loss']['folk']:.3f} |" in card


# ---- bad input: one line naming the problem, non-zero exit, nothing half-written ----

def bad_files(tmp_path):
    empty = tmp_path / "empty.mid"
    empty.write_bytes(b"")
    text = tmp_path / "text.mid"
    text.write_text("this is not music\n")
    good = tmp_path / "good.mid"
    write_score(make_score([(60 + i % 12, i, 1, 80) for i in range(32)]), good)
    trunc = tmp_path / "trunc.mid"
    trunc.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    drums = tmp_path / "drums.mid"
    write_score(make_score([(36, i, 0.5, 100) for i in range(8)], is_drum=True), drums)
    return {"empty": empty, "text": text, "trunc": trunc, "drums": drums}


@pytest.mark.parametrize("case,words", [
    ("empty", ["empty.mid", "empty"]), ("text", ["text.mid", "not a MIDI"]), ("trunc", ["trunc.mid"]),
    ("drums", ["drums"]),
])
def test_bad_prompt_files(capsys, tmp_path, tiny_model_dir, case, words):
    files = bad_files(tmp_path)
    out = tmp_path / "out.mid"
    code, _, err = run(capsys, "generate", "--model", tiny_model_dir, "--prompt", files[case], "--out", out)
    one_line_error(code, err, *words)
    assert not out.exists()


@pytest.mark.parametrize("args,words", [
    (["--bars", "0"], ["--bars", "greater than 0"]),
    (["--temperature", "0"], ["--temperature"]),
    (["--temperature", "-1"], ["--temperature"]),
    (["--instruments", "piano,kazooo"], ["kazooo"]),
    (["--chords", "C G Hm7 F"], ["Hm7"]),
    (["--notes", "E4 D4 H4"], ["H4"]),
    (["--style", "metal"], ["metal"]),
])
def test_bad_arguments(capsys, tmp_path, tiny_model_dir, args, words):
    out = tmp_path / "out.mid"
    code, _, err = run(capsys, "generate", "--model", tiny_model_dir, *args, "--out", out)
    one_line_error(code, err, *words)
    assert not out.exists()


def test_unwritable_output(capsys, tmp_path, tiny_model_dir):
    code, _, err = run(capsys, "generate", "--model", tiny_model_dir, "--out", tmp_path / "no" / "such" / "dir.mid")
    one_line_error(code, err, "cannot write")
    code, _, err = run(capsys, "generate", "--model", tiny_model_dir, "--out", tmp_path / "x.bmp")
    one_line_error(code, err, "cannot write")


def test_missing_model(capsys, tmp_path):
    code, _, err = run(capsys, "generate", "--model", tmp_path / "nope", "--out", tmp_path / "a.mid")
    one_line_error(code, err, "no model")


def _tiny_training(tmp_path, *extra: str):
    """(run folder, the command line of a tiny training run in a child process) over four made-up pieces."""
    import sys

    data = tmp_path / "data"
    data.mkdir()
    for k in range(4):
        write_score(make_score([(60 + (i * 5 + k) % 12, i * 0.5, 0.5, 80) for i in range(64)]), data / f"p{k}.mid")
    out = tmp_path / "run"
    return out, [sys.executable, "-m", "cadenza.cli", "train", "--data", f"{data}=folk", "--out", str(out), "--ctx",
                 "64", "--batch-size", "2", "--d-model", "32", "--layers", "1", "--heads", "2", "--d-ff", "32",
                 "--valid-fraction", "0.25", "--threads", "1", *extra]


def test_resume_after_kill(tmp_path):
    """A training process killed mid-run resumes from its last atomic checkpoint."""
    import signal
    import subprocess
    import time

    import torch

    out, args = _tiny_training(tmp_path, "--eval-every", "1000", "--save-every", "1", "-q")
    proc = subprocess.Popen(args + ["--steps", "100000"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = out / "checkpoint.pt"
    try:
        for _ in range(600):  # wait for a checkpoint a few steps in, then kill without warning
            if ckpt.exists() and torch.load(ckpt, weights_only=True)["step"] >= 3:
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    step_at_kill = torch.load(ckpt, weights_only=True)["step"]
    assert step_at_kill >= 3
    done = subprocess.run(args + ["--steps", str(step_at_kill + 2), "--resume"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert torch.load(ckpt, weights_only=True)["step"] == step_at_kill + 2
    assert not list(out.glob("*.tmp"))
    assert (out / "model" / "model.safetensors").is_file()


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_signal_during_training_saves_a_checkpoint(tmp_path, sig):
    """Ctrl-C or SIGTERM before the first scheduled checkpoint (every 100 steps by default): the step
    finishes, a checkpoint is written and ``--resume`` goes on from it (it said "nothing to resume")."""
    import signal
    import subprocess
    import threading
    import time

    import torch

    out, args = _tiny_training(tmp_path, "--eval-every", "1000000", "--save-every", "1000000")
    proc = subprocess.Popen(args + ["--steps", "100000"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(lambda: proc.stderr.read(64), "")), daemon=True)
    reader.start()
    try:
        for _ in range(1500):  # until the training progress bar shows steps
            time.sleep(0.2)
            if "step/s" in "".join(lines) or "s/step" in "".join(lines):
                break
        time.sleep(1)
        assert not (out / "checkpoint.pt").exists()  # no scheduled checkpoint: the signal's is the first
        proc.send_signal(getattr(signal, sig))
        proc.wait(timeout=60)
        reader.join(timeout=10)
        err = "".join(lines)
    finally:
        proc.kill()
    assert proc.returncode == (130 if sig == "SIGINT" else 128 + signal.SIGTERM), err[-500:]
    assert "checkpoint saved" in err
    step = torch.load(out / "checkpoint.pt", weights_only=True)["step"]
    assert step > 0
    done = subprocess.run(args + ["--steps", str(step + 2), "--resume", "-q"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == step + 2


def test_long_prompt_is_continued_after_its_end(tiny_model_dir):
    """A prompt longer than the context is cut for the model, but new notes still come after it."""
    import cadenza

    model = cadenza.load_model(tiny_model_dir)
    prompt = make_score([(60 + (i * 7) % 24, i * 0.5, 0.5, 80) for i in range(400)])  # 50 bars of eighths
    assert len(model.tokenizer.encode(prompt)) > model.model.cfg.max_seq_len
    out = model.generate(prompt, bars=2, max_tokens=120, seed=1)
    end = prompt.end()
    prompt_notes = {(n.start, n.pitch) for n in prompt.tracks[0].notes}
    new = [n for t in out.tracks for n in t.notes if (n.start, n.pitch) not in prompt_notes]
    assert new and min(n.start for n in new) >= end - 480  # within the last beat or after


@pytest.mark.parametrize("args, compiled", [
    (["--seconds", "120"], True), (["--seconds", "10"], False),
    (["--bars", "64"], True),  # 64 bars of 4/4 at 120 bpm: 128 s (auto looked at --seconds only)
    (["--bars", "64", "--tempo", "200"], False), (["--bars", "16", "--meter", "6/8", "--tempo", "20"], True),
    (["--seconds", "10", "--compile", "on"], True), (["--seconds", "300", "--compile", "off"], False)])
def test_compile_auto_is_on_for_pieces_of_two_minutes(args, compiled, tiny_model_dir, capsys, monkeypatch, tmp_path):
    """README: `--compile on|off|auto`; auto turns it on for pieces of 2 minutes or more."""
    from cadenza.tasks.compose import CadenzaModel

    seen = {}

    def stream_notes(self, *a, compile=False, **kw):
        seen["compile"] = compile
        raise KeyboardInterrupt  # stop here: only the choice is looked at

    monkeypatch.setattr(CadenzaModel, "stream_notes", stream_notes)
    main(["generate", "--model", str(tiny_model_dir), *args, "-q", "--out", str(tmp_path / "x.mid")])  # 130: stopped
    assert seen["compile"] is compiled


def test_a_prompt_is_described_on_stderr_and_overridden_by_flags(tiny_model_dir, tmp_path, capsys):
    """README: the prompt's key, meter, tempo and nearest style are printed on stderr ('prompt: ...') and
    used unless --key, --meter, --tempo or --style say otherwise; from Python, a prompt may be a path."""
    import cadenza
    from cadenza.score import read_score

    tune = tmp_path / "tune.mid"
    write_score(make_score([(60 + (i * 5) % 12, i * 0.5, 0.5, 80) for i in range(32)]), tune)
    code, _, err = run(capsys, "generate", "--model", tiny_model_dir, "--prompt", tune, "--bars", 1, "--seed", 1,
                       "--out", tmp_path / "a.mid")
    assert code == 0 and any(ln.startswith("prompt: ") and "bpm" in ln for ln in err.splitlines()), err
    code, _, err = run(capsys, "generate", "--model", tiny_model_dir, "--prompt", tune, "--bars", 1, "--seed", 1,
                       "--tempo", 90, "-q", "--out", tmp_path / "b.mid")
    assert code == 0 and {round(t.qpm) for t in read_score(tmp_path / "b.mid").tempos} == {90}
    from_python = cadenza.load_model(tiny_model_dir).generate(prompt=str(tune), bars=1, seed=1)
    kept = sorted((n.time, n.pitch) for n in read_score(tune).tracks[0].notes)
    assert kept == sorted((n.time, n.pitch) for t in from_python.tracks for n in t.notes)[:len(kept)]


@pytest.mark.parametrize("value, passed", [("off", "off"), ("auto", "auto"), ("0.25", 0.25)])
def test_restate_reaches_the_model(value, passed, tiny_model_dir, capsys, monkeypatch, tmp_path):
    """README: `--restate auto|off|RATE` on the command line (the API's `repeat`)."""
    from cadenza.tasks.compose import CadenzaModel

    seen = {}

    def stream_notes(self, *a, **kw):
        seen["repeat"] = kw.get("repeat")
        raise KeyboardInterrupt

    monkeypatch.setattr(CadenzaModel, "stream_notes", stream_notes)
    main(["generate", "--model", str(tiny_model_dir), "--bars", "2", "--restate", value, "-q", "--out",
          str(tmp_path / "x.mid")])
    assert seen["repeat"] == passed


def test_restate_out_of_range_is_one_line(tiny_model_dir, capsys, tmp_path):
    code, _, err = run(capsys, "generate", "--model", tiny_model_dir, "--restate", "1.5", "--out", tmp_path / "x.mid")
    one_line_error(code, err, "--restate", "1.5")


def test_train_with_controls_writes_them_into_the_model(capsys, tmp_path):
    """README: `--controls key,instruments,chords,infill` trains a model that reads those controls."""
    out, argv = _tiny_training(tmp_path, "--steps", "1", "--controls", "key,instruments,chords,infill", "-q")
    code, _, err = run(capsys, *argv[3:])  # in this process: the command line after `python -m cadenza.cli`
    assert code == 0, err
    cfg = json.loads((out / "model" / "config.json").read_text())
    assert sorted(cfg["tokenizer"]["controls"]) == ["chords", "infill", "instruments", "key"]
