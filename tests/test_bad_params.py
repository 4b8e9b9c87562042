"""Bad model folders and bad parameters get one line and an exit code, before any big allocation or slow work
(issue 18, "safe by default")."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import cadenza.tasks
import cadenza.tasks.audio
from cadenza.cli import build_parser, main
from cadenza.errors import CadenzaError, ModelError
from cadenza.model import ModelConfig, Transformer
from cadenza.tasks import load_model
from cadenza.tasks.compose import BUNDLED_DIR

SMALL = BUNDLED_DIR / "small"


def bad_folder(base: Path, name: str, edit) -> Path:
    """A copy of the bundled small model whose config.json is changed by ``edit(config) -> config``; the
    weights are a link to the bundled ones."""
    d = base / name
    d.mkdir(parents=True)
    cfg = edit(json.loads((SMALL / "config.json").read_text()))
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "model.safetensors").symlink_to(SMALL / "model.safetensors")
    return d


def sizes(**kw):
    return lambda c: {**c, "model": {**c["model"], **kw}}


# (name, edit of config.json, what the one line must name)
BROKEN = [
    ("seq_float", sizes(max_seq_len=1e9), "model.max_seq_len"),  # 64 GB of rotary tables before
    ("seq_int", sizes(max_seq_len=1_000_000_000), "model.max_seq_len"),
    ("wide", sizes(d_model=4096), "model.d_model"),  # 2.9 GB before a size mismatch
    ("no_heads", sizes(n_heads=0), "model.n_heads"),
    ("odd_heads", sizes(n_heads=3), "model.n_heads"),
    ("negative", sizes(n_layers=-2), "model.n_layers"),
    ("string", sizes(d_ff="704"), "model.d_ff"),
    ("more_layers", sizes(n_layers=8), "model.n_layers"),  # in range, but not what the weights hold
    ("vocab", sizes(vocab_size=600), "model.vocab_size"),
    ("list_model", lambda c: {**c, "model": list(c["model"].values())}, "model section"),
    ("list_config", lambda c: [c], "not a cadenza model config"),
    ("bad_eps", sizes(norm_eps=-1), "model.norm_eps"),
]


@pytest.mark.parametrize("name, edit, field", BROKEN, ids=[b[0] for b in BROKEN])
def test_a_broken_model_folder_is_one_line_naming_folder_and_field(tmp_path, name, edit, field):
    d = bad_folder(tmp_path, name, edit)
    t0 = time.perf_counter()
    with pytest.raises(ModelError) as e:
        load_model(d)
    assert time.perf_counter() - t0 < 1.0  # refused from the config and the weights' header alone
    msg = str(e.value)
    assert "\n" not in msg and str(d) in msg and field in msg, msg


def test_vocab_must_match_the_tokenizer(tmp_path, tokenizer):
    from cadenza.model import save_model_folder

    model = Transformer(ModelConfig(vocab_size=tokenizer.vocab_size + 3, d_model=16, n_layers=1, n_heads=2,
                                    d_ff=16, max_seq_len=32))
    d = save_model_folder(tmp_path / "m", model, {"name": "m", "family": "remi-lm", "tokenizer": tokenizer.to_config(),
                                                  "styles": tokenizer.styles})
    with pytest.raises(ModelError, match=r"model.vocab_size is \d+ but the tokenizer has \d+ tokens"):
        load_model(d)


def _peak_kb_loading(folders: list[str]) -> int:
    """The peak RSS (kB) of a fresh process that tries to load each folder, refusals allowed. Read from
    /proc's VmHWM, the peak of this process's own memory: ru_maxrss also counts the memory of the process
    that started it (Linux keeps the high-water mark across exec, and subprocess uses vfork), so in CI, after
    hundreds of tests, it read pytest's own 1.1 GB."""
    code = ("import re, sys\nfrom cadenza.errors import ModelError\nfrom cadenza.tasks import load_model\n"
            "for d in sys.argv[1:]:\n    try:\n        load_model(d)\n    except ModelError:\n        pass\n"
            "print(re.search(r'VmHWM:\\s*(\\d+)', open('/proc/self/status').read())[1])\n")
    out = subprocess.run([sys.executable, "-c", code, *folders], capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads /proc (Linux)")
def test_bad_folders_allocate_nothing_big(tmp_path):
    """Trying every broken folder peaks near a peer in the same run: a fresh process that loads the good small
    model (about 0.3 GB with torch imported). Before, ``d_model 4096`` alone took 2.9 GB more and
    ``max_seq_len 1e9`` tried 64 GB; the margin (300 MB) is far under either."""
    folders = [str(bad_folder(tmp_path, name, edit)) for name, edit, _ in BROKEN]
    good = _peak_kb_loading([str(SMALL)])
    bad = _peak_kb_loading(folders)
    assert bad < good + 300_000, (bad, good)


def test_param_fields_are_the_transformers_own():
    cfg = ModelConfig(vocab_size=50, d_model=32, n_layers=3, n_heads=4, d_ff=64, max_seq_len=16)
    real = {k: tuple(v.shape) for k, v in Transformer(cfg).state_dict().items()}
    assert {k: tuple(getattr(cfg, f) for f in dims) for k, dims in cfg.param_fields().items()} == real


def test_int8_and_good_folders_still_load(tiny_model_dir, tmp_path):
    from cadenza.model import quantize_model_folder

    assert load_model(tiny_model_dir).model.cfg.d_model == 32
    assert load_model(quantize_model_folder(tiny_model_dir, tmp_path / "q")).model.cfg.n_layers == 2


@pytest.fixture()
def local_models(tmp_path, tiny_model_dir, monkeypatch):
    """$CADENZA_MODELS with a good model ('tiny') and two broken ones."""
    base = tmp_path / "models"
    shutil.copytree(tiny_model_dir, base / "tiny")
    bad_folder(base, "broken", sizes(n_heads=0))
    bad_folder(base, "listed", lambda c: [c])
    monkeypatch.setenv("CADENZA_MODELS", str(base))
    return base


def test_models_lists_the_good_and_reports_each_bad_folder_in_one_line(local_models, capsys):
    assert main(["models"]) == 0
    out, err = capsys.readouterr()
    assert "tiny" in out and "small" in out and "broken" not in out
    lines = err.strip().splitlines()
    assert len(lines) == 2 and "broken" in lines[0] and "model.n_heads" in lines[0] and "listed" in lines[1]


def test_loading_a_bad_model_by_name_is_one_line_and_exit_1(local_models, tmp_path, capsys):
    assert main(["generate", "--model", "broken", "--bars", "1", "-q", "--out", str(tmp_path / "x.mid")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "broken" in err[0] and "model.n_heads" in err[0]


@pytest.fixture()
def no_model(monkeypatch):
    """Loading a model fails the test: every parameter is checked before a model loads."""

    def refuse(*a, **k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(cadenza.tasks, "load_model", refuse)
    monkeypatch.setattr(cadenza.tasks.audio, "load_audio_model", refuse)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


GEN = ["generate", "-q", "--out", "x.mid"]
AUDIO = ["audio", "generate", "-q", "--out", "x.wav"]
BAD_PARAMS = [
    (GEN + ["--bars", "1000000000"], "at most 512"),
    (GEN + ["--seconds", "1e9"], "at most 900"),
    (GEN + ["--seconds", "inf"], "finite"),
    (GEN + ["--seconds", "nan"], "finite"),
    (GEN + ["--seed", "-1"], "4294967295"),
    (GEN + ["--seed", str(2**63)], "4294967295"),
    (GEN + ["--temperature", "inf"], "finite"),
    (GEN + ["--temperature", "nan"], "finite"),
    (GEN + ["--top-k", "-1"], "top-k"),
    (GEN + ["--chords", "C", "--repeat", "1000000000"], "--repeat"),
    (AUDIO + ["--seconds", "0.00001"], "one codec frame"),
    (AUDIO + ["--seconds", "1e9"], "at most 600"),
    (AUDIO + ["--seed", str(2**64)], "4294967295"),
]


@pytest.mark.parametrize("argv, says", BAD_PARAMS, ids=[f"{a[0]} {' '.join(a[-2:])}" for a, _ in BAD_PARAMS])
def test_a_bad_parameter_is_one_line_before_the_model_loads(argv, says, no_model, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) in (1, 2)
    assert says in one_line_error(capsys)


def test_force_lifts_the_length_limits(monkeypatch, tmp_path, capsys):
    def loaded(*a, **k):
        raise CadenzaError("the checks passed")

    monkeypatch.setattr(cadenza.tasks, "load_model", loaded)
    monkeypatch.setattr(cadenza.tasks.audio, "load_audio_model", loaded)
    monkeypatch.chdir(tmp_path)
    for argv in (GEN + ["--bars", "600", "--force"], GEN + ["--seconds", "1000", "--force"],
                 AUDIO + ["--seconds", "700", "--force"]):
        assert main(argv) == 1 and "the checks passed" in one_line_error(capsys)


def test_help_says_the_seed_range_and_top_k_off(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["generate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "0 to 4294967295" in text and "0 = off" in text and "--force" in text


@pytest.mark.parametrize("seconds, says", [(1.0, "silent"), (601.0, "at most 600 s")])
def test_audio_continue_a_silent_or_too_long_prompt_is_one_line(seconds, says, no_model, tmp_path, capsys):
    sf.write(tmp_path / "quiet.wav", np.zeros(int(seconds * 8000), np.int16), 8000, subtype="PCM_16")
    assert main(["audio", "continue", str(tmp_path / "quiet.wav"), "--out", str(tmp_path / "o.wav")]) == 1
    assert says in one_line_error(capsys)


def test_an_internal_error_is_one_line_and_a_report_file(monkeypatch, tmp_path, capsys):
    import tempfile

    def boom(*a, **k):
        return 1 / 0

    monkeypatch.setattr(cadenza.tasks, "list_models", boom)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert main(["models"]) == 2
    err = one_line_error(capsys)
    assert "internal error (ZeroDivisionError)" in err and "bug report" in err
    report = next(tmp_path.glob("cadenza-report-*.txt"))
    assert str(report) in err
    text = report.read_text()
    assert "Traceback" in text and "ZeroDivisionError" in text and "cadenza models" in text


def test_audio_train_stopping_at_its_time_limit_exits_0(monkeypatch, tmp_path, capsys):
    """As `train --max-minutes` does: a clean, resumable stop is not an error."""
    import cadenza.audio.train as at

    def stops(cfg, progress=True):
        at._checkpoint(cfg, 1, 10, time.time() - 60, lambda: None, type("Bar", (), {"close": lambda s: None})(),
                       "codec")

    monkeypatch.setattr(at, "train_audio", stops)
    (tmp_path / "wavs").mkdir()
    assert main(["audio", "train", "--data", str(tmp_path / "wavs"), "--out", str(tmp_path / "run"),
                 "--max-minutes", "0.5", "-q"]) == 0
    assert "stopped after 0.5 minutes" in one_line_error(capsys)


def test_force_reaches_the_score_reader(monkeypatch, tmp_path):
    import cadenza.score

    seen = []

    def reader(path, force=False):
        seen.append(force)
        raise CadenzaError("read")

    monkeypatch.setattr(cadenza.score, "read_score", reader)
    for extra in ([], ["--force"]):
        assert main(["edit", "in.mid", "--transpose", "1", "--out", str(tmp_path / "o.mid"), *extra]) == 1
    assert seen == [False, True]


@pytest.mark.parametrize("args, words", [
    (["--max-tokens", "300000"], "max tokens must be at most"),
    (["--variations", "17"], "variations must be a whole number from 1 to 16"),
])
def test_tokens_and_variations_are_bounded_before_the_model_loads(capsys, args, words):
    """--max-tokens and --variations had no bound: a huge value ran or allocated without limit."""
    from cadenza.cli import main

    code = main(["generate", "--model", "/nonexistent-model-folder", *args, "--out", "x.mid"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and words in err[0], err


# FOUND BY bench/robustness.py (fixed): `harmonize --model` loaded a folder without checked_folder, so a config
# with no tokenizer section or a junk one was an internal error (AttributeError, TypeError), not one line
@pytest.mark.parametrize("tokenizer", [None, {"scheme": "remi", "spec": "junk"}])
def test_every_task_checks_the_tokenizer_section(tmp_path, tokenizer):
    from cadenza.tasks.harmonize import Harmonizer

    chorale = BUNDLED_DIR / "chorale"
    d = tmp_path / "m"
    d.mkdir()
    cfg = json.loads((chorale / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, "tokenizer": tokenizer}))
    (d / "model.safetensors").symlink_to(chorale / "model.safetensors")
    for load in (Harmonizer.load, load_model):
        with pytest.raises(ModelError) as e:
            load(d)
        assert "tokenizer section" in str(e.value) and "\n" not in str(e.value)
