"""Streaming: notes arrive one by one, and they are exactly the notes of a plain call."""

import pytest

from cadenza.tasks import load_model
from conftest import make_score


@pytest.fixture(scope="module")
def model():
    return load_model()  # the bundled default model: real tokens, real tempos and meters


def _notes_of(score, prompt_notes=0):
    out = []
    sec = score.to("second")
    for tr, trs in zip(score.tracks, sec.tracks):
        for n, ns in zip(tr.notes, trs.notes):
            out.append((n.start / score.tpq, n.pitch, n.duration / score.tpq, n.velocity, tr.program, tr.is_drum,
                        ns.start, ns.duration))
    return sorted(out)


def _check_same(score, events, skip: set | None = None):
    ref = [r for r in _notes_of(score) if skip is None or (r[0], r[1]) not in skip]
    got = sorted((e.start_beats, e.pitch, e.duration_beats, e.velocity, e.program, e.is_drum, e.start, e.duration)
                 for e in events)
    assert len(got) == len(ref) > 0
    for a, b in zip(ref, got):
        assert a[:6] == pytest.approx(b[:6], abs=1e-9)  # beats, pitch, velocity, instrument: exact
        assert a[6:] == pytest.approx(b[6:], abs=2e-3)  # seconds: within the tick rounding of a MIDI tempo


@pytest.mark.parametrize("style,meter,seed", [("folk", None, 0), ("pop", None, 3), ("classical", (3, 4), 1),
                                               ("chorale", (6, 8), 2)])
def test_stream_notes_equal_generate(model, style, meter, seed):
    kw = dict(style=style, bars=6, seed=seed, time_signature=meter)
    events = list(model.stream_notes(**kw))
    _check_same(model.generate(**kw), events)
    starts = [e.start for e in events]
    assert starts == sorted(starts)  # token order is time order: a player can send them as they come
    assert all(1 <= e.bar <= 6 for e in events)


def test_stream_continues_a_prompt_on_its_clock(model):
    prompt = make_score([(60 + k % 5, k, 1, 80) for k in range(8)], tempo=100)  # two bars at 100 bpm
    kw = dict(prompt=prompt, bars=4, seed=5, temperature=0.9)
    events = list(model.stream_notes(**kw))
    given = {(n.start / 480, n.pitch) for n in prompt.tracks[0].notes}
    _check_same(model.generate(**kw), events, skip=given)
    # new music goes on from the prompt's last onset (beat 7; it may add to that bar), on its clock
    assert min(e.start_beats for e in events) >= 7 - 1e-9
    assert min(e.start for e in events) >= 7 * 0.6 - 1e-6  # ... at the prompt's 100 bpm


def test_cli_stream_prints_every_note_and_saves_the_piece(tmp_path, capsys):
    from cadenza.cli import main
    from cadenza.score import count_notes, read_score

    out = tmp_path / "s.mid"
    assert main(["generate", "--bars", "3", "--seed", "4", "--stream", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    notes = [ln for ln in lines if ln.startswith("bar")]
    assert len(notes) == count_notes(read_score(out)) > 0
    assert " s  " in notes[0] and "vel" in notes[0]
