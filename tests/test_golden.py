"""Golden outputs (issue 19, "behaviour kept"): each task, with the bundled models and a fixed seed, gives the
very notes, voices, codes and probabilities it gave when these files were written, so that a refactor which
changes any of them is seen. ``CADENZA_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py`` rewrites them
(for a change that is meant to change the music: say so in the commit).

The outputs are short (a few hundred tokens each): sampling draws one number per token and a float32
difference between CPUs moves a draw across a boundary with a chance of about 1e-7 per token. Checked on
2026-12-03: the same files pass with the kernels of other CPUs forced (``ATEN_CPU_CAPABILITY=avx2`` or
``default``, ``MKL_CBWR=AVX2`` or ``COMPATIBLE``, ``ONEDNN_MAX_CPU_ISA=AVX2`` or ``SSE41``) and with 1 or 2
threads.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import symusic

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("CADENZA_UPDATE_GOLDEN") == "1"


def notes_of(score: symusic.Score) -> list[list]:
    return [[t.name, int(t.program), bool(t.is_drum), [[n.time, n.duration, n.pitch, n.velocity] for n in t.notes]]
            for t in score.to("tick").resample(480, min_dur=1).tracks]


def check(name: str, value, approx: float | None = None) -> None:
    """``value`` equals the file's (``approx``: its floats within that much: probabilities differ in their
    last bits between CPUs)."""
    path = GOLDEN / f"{name}.json"
    value = json.loads(json.dumps(value))  # tuples as lists, as the file has them
    if UPDATE or not path.exists():
        if not UPDATE:
            pytest.fail(f"{path.name} is missing: run with CADENZA_UPDATE_GOLDEN=1 to write it")
        path.write_text(json.dumps(value, indent=None, separators=(",", ":")) + "\n")
        return
    want = json.loads(path.read_text())
    assert value == (want if approx is None else pytest.approx(want, abs=approx)), \
        f"{name} changed: the same seed gives other music"


def melody(bars: int = 4) -> symusic.Score:
    from cadenza.score import parse_notes

    return parse_notes(" | ".join(["E4 D4 C4 D4", "E4 E4 E4*2", "D4 D4 D4*2", "E4 G4 G4*2"][:bars]), tempo=100)


@pytest.fixture(scope="module")
def default():
    import cadenza

    return cadenza.load_model()


def test_generate(default):
    score = default.generate(bars=2, style="pop", instruments=["piano", "acoustic bass", "drums"], tempo=100, seed=3)
    check("generate", notes_of(score))


def test_continue(default):
    check("continue", notes_of(default.generate(prompt=melody(), bars=2, seed=4)))


def test_arrange_and_infill(default):
    from cadenza.tasks.arrange import arrange, infill

    arranged = arrange(default, melody(3), ["acoustic bass"], seed=5)
    check("arrange", notes_of(arranged))
    check("infill", notes_of(infill(default, arranged, 2, 3, seed=6)))


def test_harmonize():
    from cadenza.tasks.harmonize import Harmonizer

    result = Harmonizer.load("chorale").harmonize(melody(2), seed=7)
    check("harmonize", [np.asarray(g).tolist() for g in result.grids])


def test_learn(default):
    from cadenza.tasks.learn import learn_steps

    steps = learn_steps(default, melody(), notes=6, top=3, style="folk", seed=8)
    check("learn", [[s.note.pitch, s.chosen.pitch, [c.pitch for c in s.candidates]] for s in steps])
    check("learn_p", [c.p for s in steps for c in s.candidates], approx=1e-4)


def test_audio_continue():
    from cadenza.tasks.audio import load_audio_model

    model = load_audio_model()
    t = np.arange(int(0.5 * model.sample_rate)) / model.sample_rate
    y, _ = model.prepare(0.4 * np.sin(2 * np.pi * 440 * t).astype(np.float32), model.sample_rate)
    codes = model.encode(y)
    check("audio_continue", [codes.tolist(), model.sample_codes(codes, 6, "piano", seed=9).tolist()])
