"""Every instrument in its role, tracks kept apart, and a prompt that steers (issue 17).

The grammar tests use a random-weight model: it writes anything the grammar lets through, so a bass
that may never strike a chord, a note outside an instrument's range or a doubled pitch is caught at
once. The bundled-model tests check what a user meets: continuations of a prompt.
"""

from __future__ import annotations

import numpy as np
import pytest
import symusic

from cadenza.engine import SamplingConfig, StopConfig, generate
from cadenza.engine.parts import PartControl, prompt_pace
from cadenza.eval.parts import family_stats, part_stats
from cadenza.score.meter import infer_meter, prompt_meter
from cadenza.score.roles import family_of, max_at_once, range_of
from cadenza.score.tracks import merge_new_notes
from cadenza.tasks import load_model
from cadenza.tokenizers.remi import T_BAR, T_CHORD, T_DUR, T_POS, T_PROG, T_TEMPO, T_VEL

from conftest import make_score


def _notes(score, is_drum=None):
    for t in score.tracks:
        if is_drum is None or t.is_drum == is_drum:
            yield t, t.notes.numpy()


def test_roles_of_some_instruments():
    assert (family_of(33), max_at_once(33), range_of(33)) == ("bass", 1, (28, 67))
    assert (family_of(73), max_at_once(73)) == ("lead", 1)
    assert family_of(0) == "piano" and max_at_once(0) == 10
    assert family_of(0, is_drum=True) == "drums" and family_of(48) == "strings"
    assert range_of(40)[0] == 55  # a violin's lowest string is G3
    # the README's list: one for a bass, a wind or a solo lead, two for a solo violin, six for a guitar
    assert [max_at_once(p) for p in (32, 71, 80, 40)] == [1, 1, 1, 2]
    assert {max_at_once(p) for p in range(24, 32)} == {6}


def test_part_stats_measure_chords_duplicates_and_silence():
    # bar 1: a C major triad twice at once (3 duplicates), bars 2-3 silent, bar 4: one note, too high
    rows = [(48, 0, 1, 80), (52, 0, 1, 80), (55, 0, 1, 80)] * 2 + [(79, 12, 1, 80)]
    s = part_stats(make_score(rows, program=33))[0]
    assert s["family"] == "bass" and s["duplicates"] == 3
    assert s["notes_per_onset"] == pytest.approx(7 / 2)
    assert s["longest_silence_bars"] == 2 and s["bars_playing_share"] == pytest.approx(0.5)
    assert s["pitch_in_range"] == pytest.approx(6 / 7)  # G5 is above a bass's range (top: G4)
    assert family_stats([s])["bass"]["parts"] == 1


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from cadenza.model import load_model_folder
    from cadenza.tokenizers import tokenizer_from_config

    model, cfg = load_model_folder(tiny_model_dir)
    return model, tokenizer_from_config(cfg["tokenizer"])


def test_a_writing_model_keeps_each_instrument_in_its_role(tiny):
    """A random model on bass, flute, piano and drums: the bass and the flute never sound two notes at
    once, no note is outside its instrument's range, no instrument strikes one pitch twice at once."""
    model, tok = tiny
    prompt = [tok.bos_id, tok.style_ids["pop"]]
    res = generate(model, tok, prompt, n=4, sampling=SamplingConfig(seed=3, temperature=1.5, top_p=1.0),
                   stop=StopConfig(bars=16), constraints={"programs": [33, 73, 0, -1], "time_signature": (4, 4)})
    checked = 0
    for seq in res.ids:
        score = tok.decode(seq)
        for t, a in _notes(score):
            u, counts = np.unique(a["time"], return_counts=True)
            assert counts.max() <= max_at_once(t.program, t.is_drum), (t.program, counts.max())
            pairs = np.unique(np.stack([a["time"], a["pitch"]]), axis=1).shape[1]
            assert pairs == len(a["time"]), f"program {t.program} struck a pitch twice at once"
            if not t.is_drum:
                lo, hi = range_of(t.program)
                assert a["pitch"].min() >= lo and a["pitch"].max() <= hi, t.program
            checked += len(a["time"])
    assert checked > 100  # the random model did write plenty


def test_a_tempo_asked_for_is_the_pieces_clock(tiny):
    """The model may not write a tempo of its own over one asked for: 20 s asked is 20 s (within a bar)."""
    from cadenza.tasks.compose import CadenzaModel

    model, tok = tiny
    cm = CadenzaModel(model, tok, {"name": "tiny", "styles": tok.styles})
    for seed in range(3):
        score = cm.generate(seconds=20, tempo=100, seed=seed, instruments=["piano"], temperature=1.5)
        secs = score.to("second").end()
        assert 20 - 1e-6 <= secs <= 20 + 2.4 + 1e-6, secs  # one 4/4 bar at 100 bpm is 2.4 s
        assert len(score.tempos) == 1 and abs(score.tempos[0].qpm - 100) < 1e-6


def test_part_control_draws_in_a_silent_instrument_and_holds_back_a_busy_one(tiny):
    _, tok = tiny
    piano, bass = tok.program_id[0], tok.program_id[33]
    pc = PartControl(tok, {piano: 2.0, bass: 1.0}, 1)
    st = tok.start_state(programs=[0, 33])
    ids = [tok.bos_id, int(tok.ids_of_type[T_BAR][0]), tok.tsig_id[(4, 4)]]  # BOS Bar TimeSig
    pos = {tok.value_of[i]: int(i) for i in tok.ids_of_type[T_POS]}
    for p in range(0, 32, 2):  # piano: 16 eighth notes in the bar, bass silent
        ids += [pos[p], piano, tok.pitch_id[60], int(tok.ids_of_type[T_VEL][0]), int(tok.ids_of_type[T_DUR][0])]
    for t in ids:
        st.advance(t)
        pc.advance(0, t, st)
    bias = pc.biases([st], tok.vocab_size)[0]
    assert bias[bass] > 1.0 and bias[piano] <= 0  # (piano has a note at this position: never a bonus)
    assert float(bias[bass]) <= pc.max_bonus


def test_prompt_pace_is_notes_per_beat_of_its_last_bars():
    s = make_score([(60, b, 1, 80) for b in range(16)], program=0)
    assert prompt_pace(s, [0, 33]) == {0: pytest.approx(1.0)}
    # README: the pace of the prompt's last 8 bars: 16 bars of 4/4, four notes a beat in bars 1-8, one in 9-16
    busy = make_score([(60, b / 4, 0.25, 80) for b in range(4 * 32)] + [(62, 32 + b, 1, 80) for b in range(32)])
    assert prompt_pace(busy, [0]) == {0: pytest.approx(1.0)}


def test_same_program_tracks_stay_apart():
    """A melody and an accompaniment on one program (as in POP909): new high notes continue the
    melody, new low chords the accompaniment, each track one of the prompt's."""
    prompt = make_score([(72 + (b % 3), b, 1, 90) for b in range(8)])
    prompt.tracks[0].name = "MELODY"
    acc = make_score([(p, b, 1, 70) for b in range(0, 8, 2) for p in (48, 52, 55)]).tracks[0]
    acc.name = "PIANO"
    prompt.tracks.append(acc)
    new = make_score([(74, 8 + b, 1, 90) for b in range(4)] + [(p, 8 + b, 1, 70) for b in (0, 2) for p in (47, 50, 55)])
    out = merge_new_notes(prompt, new)
    assert [t.name for t in out.tracks] == ["MELODY", "PIANO"]
    mel, pno = (t.notes.numpy() for t in out.tracks)
    assert len(mel["time"]) == 8 + 4 and mel["pitch"][-4:].tolist() == [74] * 4
    assert len(pno["time"]) == 12 + 6 and pno["pitch"].max() <= 55


def test_meter_inferred_where_the_file_states_an_impossible_one():
    waltz = make_score([(48, b, 1, 100) if b % 3 == 0 else (64, b, 0.5, 60) for b in range(24)], ts=(1, 4))
    four = make_score([(48, b, 2, 100) if b % 4 == 0 else (64, b, 0.5, 60) for b in range(32)], ts=(1, 4))
    assert infer_meter(waltz) == (3, 4) and infer_meter(four) == (4, 4)
    meter, note = prompt_meter(four)
    assert meter == (4, 4) and "1/4" in note
    stated = make_score([(60, b, 1, 80) for b in range(12)], ts=(3, 4))
    assert prompt_meter(stated) == ((3, 4), None)  # a plausible stated meter is kept


@pytest.fixture(scope="module")
def cm():
    return load_model("arrange")


def _pop_prompt():
    """Two tracks on piano (a melody over broken chords in G major) and a drum track, 4 bars."""
    mel = [(67, 0, 1, 90), (71, 1, 1, 90), (74, 2, 2, 90), (72, 4, 1, 90), (71, 5, 1, 90), (69, 6, 2, 90),
           (67, 8, 1, 90), (69, 9, 1, 90), (71, 10, 2, 90), (74, 12, 2, 90), (67, 14, 2, 90)]
    s = make_score(mel, tempo=96)
    s.tracks[0].name = "MELODY"
    chords = [(43, 0), (47, 1), (50, 2), (47, 3), (48, 4), (52, 5), (55, 6), (52, 7)] * 2
    acc = make_score([(p, b + 8 * (k // 8), 1, 70) for k, (p, b) in enumerate(chords)]).tracks[0]
    acc.name = "ACCOMPANIMENT"
    s.tracks.append(acc)
    drums = make_score([(36, b, 0.5, 100) for b in range(0, 16, 2)] + [(38, b, 0.5, 90) for b in range(1, 16, 2)],
                       is_drum=True).tracks[0]
    drums.name = "DRUMS"
    s.tracks.append(drums)
    return s


def test_a_continuation_keeps_the_prompts_tracks_key_and_drums(cm):
    infos = []
    prompt = _pop_prompt()
    out = cm.generate(prompt=prompt, bars=4, seed=0, on_info=infos.append)
    info = infos[0]
    assert info.key == (7, "major") and info.meter == (4, 4) and round(info.tempo) == 96
    assert info.line().startswith("prompt: G major, 4/4, 96 bpm, style ")
    assert [t.name for t in out.tracks] == ["MELODY", "ACCOMPANIMENT", "DRUMS"]  # no track merged or added
    end = int(prompt.end())
    for t, a in _notes(out):
        assert (a["time"] >= end).any(), f"{t.name} fell silent"
        assert not t.is_drum or t.name == "DRUMS"
    assert out.tracks[2].is_drum


def test_key_given_overrides_the_prompts(cm):
    infos = []
    cm.generate(prompt=_pop_prompt(), bars=1, seed=0, key="D minor", on_info=infos.append)
    assert infos[0].key == (2, "minor")


def test_no_track_ever_doubles_a_note_and_a_bass_never_strikes_a_chord(cm):
    for score in cm.generate(style="pop", instruments=["piano", "acoustic bass", "drums", "strings"], bars=8,
                             seed=1, variations=2):
        for t, a in _notes(score):
            pairs = np.unique(np.stack([a["time"], a["pitch"]]), axis=1).shape[1]
            assert pairs == len(a["time"])
            if t.program == 32 and not t.is_drum:
                assert np.unique(a["time"], return_counts=True)[1].max() == 1
        playing = {(t.program, t.is_drum) for t in score.tracks if len(t.notes)}
        assert playing == {(0, False), (32, False), (0, True), (48, False)}


def test_grammar_mask_never_offers_a_capped_instrument(tiny):
    """After a bass note, the bass's Program token is no longer allowed at that position."""
    _, tok = tiny
    st = tok.start_state(programs=[33, 0])
    pos0 = int(tok.ids_of_type[T_POS][0])
    for t in [tok.bos_id, int(tok.ids_of_type[T_BAR][0]), tok.tsig_id[(4, 4)], pos0, tok.program_id[33],
              tok.pitch_id[40], int(tok.ids_of_type[T_VEL][0]), int(tok.ids_of_type[T_DUR][0])]:
        st.advance(t)
    m = tok.allowed(st)
    assert not m[tok.program_id[33]] and m[tok.program_id[0]]
    assert tok.type_of[tok.program_id[33]] == T_PROG


def test_reinstrumented_training_parts_keep_their_role():
    """Training moves parts onto other instruments: a chordal part only onto one that plays chords,
    a low line onto a bass, and never outside the new instrument's range."""
    from cadenza.train.corpora import BASS_PROGRAMS, _role_pool

    chords = _role_pool(np.array([48, 52, 55, 60, 64, 67]), per_onset=3.0)
    assert chords and all(max_at_once(q) >= 3 for q in chords) and not set(chords) & BASS_PROGRAMS
    low_line = _role_pool(np.array([36, 40, 43, 38]), per_onset=1.0)
    assert low_line and set(low_line) <= BASS_PROGRAMS
    high_line = _role_pool(np.array([72, 74, 76, 79]), per_onset=1.0)
    assert 73 in high_line and not set(high_line) & BASS_PROGRAMS
    assert all(range_of(q)[0] <= 72 and range_of(q)[1] >= 79 for q in high_line)


def test_a_meter_the_model_does_not_know_becomes_one_with_the_same_beats():
    from cadenza.score.meter import nearest_known

    known = {(2, 4), (3, 4), (4, 4), (6, 4), (6, 8)}
    assert nearest_known((3, 2), known) == (6, 4)
    assert nearest_known((4, 2), known) == (4, 4)
    assert nearest_known((2, 2), known) == (4, 4)
    assert nearest_known((7, 8), known) is None


def test_a_pickup_signature_is_not_the_pieces_meter():
    from cadenza.score.meter import stated_meter

    s = make_score([(60, b, 1, 80) for b in range(32)])
    s.time_signatures.clear()
    s.time_signatures.append(symusic.TimeSignature(0, 1, 8))
    s.time_signatures.append(symusic.TimeSignature(240, 4, 4))
    assert stated_meter(s) == (4, 4) and prompt_meter(s) == ((4, 4), None)


def test_an_empty_prompt_track_gets_no_new_notes():
    prompt = make_score([(72, b, 1, 90) for b in range(4)])
    prompt.tracks.append(symusic.Track("placeholder", 0, False))
    out = merge_new_notes(prompt, make_score([(74, 4 + b, 1, 90) for b in range(4)]))
    assert len(out.tracks[0].notes) == 8 and len(out.tracks[1].notes) == 0


def _specs(off_runs):
    return {"share": 0.6, "on_rate": 1.0, "lead_in": [0, 3, 30], "on_runs": [2, 4, 8], "off_runs": off_runs}


def test_a_plan_lets_parts_rest_in_stretches_but_keeps_every_instrument():
    from cadenza.engine.parts import part_plan

    specs = {10: _specs([1, 6, 40]), 11: _specs([2, 12]), 12: _specs([30])}
    for bars, seed in ((40, 0), (40, 1), (16, 2), (100, 3)):
        plan = part_plan(specs, bars, np.random.default_rng(seed))
        again = part_plan(specs, bars, np.random.default_rng(seed))
        assert all((plan[p] == again[p]).all() for p in specs)  # the seed decides it
        flags = np.stack([plan[p] for p in specs])
        assert flags.shape == (3, bars) and flags.any(axis=0).all()  # someone plays in every bar
        for row in flags:
            assert row[: bars // 8 + 1].any()  # enters within the first eighth
            longest = max((len(r) for r in "".join("x" if f else "." for f in row).split("x")), default=0)
            assert longest <= bars // 8  # rests no longer than an eighth of the piece
    short = part_plan(specs, 7, np.random.default_rng(0))
    assert all(f.all() for f in short.values())  # a piece under 8 bars: everyone plays every bar
    steady = _specs([1]) | {"share": 0.9}  # plays the most: it fills any bar no one else plays
    long = part_plan({11: steady, 12: _specs([30])}, 100, np.random.default_rng(0))[12]
    assert (~long).sum() >= 20  # a real-length rest is kept where the piece is long enough


def test_a_plan_replays_a_real_part_whole_with_its_rests_capped():
    from cadenza.engine.parts import part_plan

    spec = _specs([1]) | {"patterns": [[2, 5, 30, 10]]}  # rests 2, plays 5, rests 30, plays 10
    steady = _specs([1]) | {"share": 0.9}  # the anchor, which fills bars no one else plays
    plan = part_plan({7: spec, 8: steady}, 40, np.random.default_rng(0))[7]
    assert plan[:22].tolist() == [False] * 2 + [True] * 5 + [False] * 5 + [True] * 10  # the rest cut to 40 // 8
    assert plan[22:].any()  # past the pattern: runs drawn from the family's statistics


def test_a_planned_rest_is_kept_and_a_busy_ensemble_waits_longer(tiny):
    from cadenza.engine.parts import REST_PENALTY

    _, tok = tiny
    piano, bass = tok.program_id[0], tok.program_id[33]
    pc = PartControl(tok, {piano: 1.0, bass: 1.0}, 1, plans={bass: _specs([1])}, bars=8)
    st = tok.start_state(programs=[0, 33])
    pc.active(0, st)
    pc.plan[0][bass][:] = [True, False] * 4  # the bass rests in bar 2
    pos = {tok.value_of[i]: int(i) for i in tok.ids_of_type[T_POS]}
    ids = [tok.bos_id, int(tok.ids_of_type[T_BAR][0]), tok.tsig_id[(4, 4)]]
    for p in range(0, 32, 2):  # bar 1: both play 16 eighths, four times their pace
        for prog in (piano, bass):
            ids += [pos[p] if prog == piano else None, prog, tok.pitch_id[48 if prog == bass else 72],
                    int(tok.ids_of_type[T_VEL][0]), int(tok.ids_of_type[T_DUR][0])]
    ids = [t for t in ids if t is not None] + [int(tok.ids_of_type[T_BAR][0]), tok.tsig_id[(4, 4)]]
    for t in ids:
        st.advance(t)
        pc.advance(0, t, st)
    if tok.chords_on:
        st.advance(int(tok.ids_of_type[T_CHORD][0]))
    bias = pc.biases([st], tok.vocab_size)[0]  # the start of bar 2: where does the next onset go?
    later = [float(bias[pos[p]]) for p in (0, 8, 16)]
    assert later[0] < later[1] < later[2] <= float(bias[tok.ids_of_type[T_BAR][0]])  # past pace: wait
    st.advance(pos[0])
    bias = pc.biases([st], tok.vocab_size)[0]
    assert float(bias[bass]) == -REST_PENALTY and float(bias[piano]) < 0


def test_a_piece_from_nothing_follows_its_plan_of_rests_and_entries(cm):
    from cadenza.engine.parts import part_plan, style_plans
    from cadenza.score.bars import bar_starts

    progs, bars, seed = [0, 32, -1, 48], 24, 3
    score = cm.generate(style="pop", instruments=["piano", "acoustic bass", "drums", "strings"], bars=bars, seed=seed)
    tok = cm.tokenizer
    specs = {tok.program_id[p]: s for p, s in style_plans(cm.config, "pop", progs).items()}
    ids = sorted(tok.program_id[p] for p in progs)  # the engine draws in Program-token order
    plan = part_plan({p: specs[p] for p in ids if p in specs}, bars, np.random.default_rng(seed + 2))
    assert any(not f.all() for f in plan.values())  # some part rests somewhere
    tick = score.to("tick")
    starts = bar_starts(tick, int(tick.end()) + 1)
    for t in tick.tracks:
        flags = plan.get(tok.program_id[-1 if t.is_drum else t.program])
        if flags is None or not len(t.notes):
            continue
        bar_of = np.searchsorted(starts, t.notes.numpy()["time"], side="right") - 1
        assert all(flags[k] for k in bar_of if k < bars), f"{t.name} played in a planned rest"
        silent = [k + 1 for k in range(bars) if flags[k] and k not in set(bar_of)]
        assert not silent, f"{t.name} is silent in planned bars {silent}"


def test_no_part_of_a_short_piece_sits_out_a_bar(cm):
    """A 4-bar piece plans no rests, so every instrument plays in every bar (the drums of this one,
    drawn in by their pace's bias alone, played 4, 0, 1 and 3 notes: the model would not have them)."""
    from cadenza.score.bars import bar_starts

    score = cm.generate(style="pop", instruments=["piano", "acoustic bass", "drums", "strings"], bars=4, seed=11)
    tick = score.to("tick")
    starts = bar_starts(tick, int(tick.end()) + 1)
    assert len(tick.tracks) == 4
    for t in tick.tracks:
        per_bar = np.bincount(np.searchsorted(starts, t.notes.numpy()["time"], side="right") - 1, minlength=4)
        assert (per_bar[:4] > 0).all(), f"{t.name}: notes per bar {per_bar.tolist()}"


def test_the_clock_keeps_every_tempo_change_inside_a_bar(tiny):
    """A bar whose tempo changes twice is timed segment by segment, as the MIDI file plays it (it was
    timed at its last tempo: a 240 s piece with such bars came out at 243.6 s)."""
    _, tok = tiny
    tempo = {tok.value_of[i]: int(i) for i in tok.ids_of_type[T_TEMPO]}
    slow, fast = min(tempo), max(tempo)
    pos = {tok.value_of[i]: int(i) for i in tok.ids_of_type[T_POS]}
    st = tok.start_state()
    note = [tok.program_id[0], tok.pitch_id[60], int(tok.ids_of_type[T_VEL][0]), int(tok.ids_of_type[T_DUR][0])]
    seq = [tok.bos_id, int(tok.ids_of_type[T_BAR][0]), tok.tsig_id[(4, 4)]]
    seq += ([int(tok.ids_of_type[T_CHORD][0])] if tok.chords_on else [])
    seq += [pos[0], tempo[slow], *note, pos[16], tempo[fast], *note]  # two beats slow, two fast
    for t in seq:
        st.advance(t)
    expected = 2 * 60.0 / slow + 2 * 60.0 / fast
    assert abs(st.bar_end_seconds() - expected) < 1e-9
    st.advance(int(tok.ids_of_type[T_BAR][0]))
    assert abs(st.seconds - expected) < 1e-9
