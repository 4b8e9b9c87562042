"""The multi-track tokenizer's controls: key, instruments and the chord of each bar, in the sequence
the model reads; their grammar; forced chords; transposition of keys and chords."""

from __future__ import annotations

import numpy as np
import pytest
import symusic

from cadenza.errors import CadenzaError
from cadenza.score import parse_chords
from cadenza.tokenizers import RemiSpec, RemiTokenizer
from cadenza.tokenizers.remi import T_BAR, T_CHORD, T_INST, T_KEY, T_PROG
from conftest import make_score


@pytest.fixture(scope="module")
def tok():
    return RemiTokenizer(RemiSpec(controls=["key", "instruments", "chords"]))


def two_tracks() -> symusic.Score:
    s = parse_chords("C Am F G")  # piano block chords, one per bar
    mel = make_score([(72, 0, 1, 80), (69, 4, 1, 80), (65, 8, 1, 80), (67, 12, 1, 80)], program=40)
    s.tracks.append(mel.tracks[0])
    return s


def test_old_configs_have_no_controls():
    plain = RemiTokenizer(RemiSpec())
    assert not (plain.key_on or plain.insts_on or plain.chords_on)
    assert RemiTokenizer.from_config(plain.to_config()).vocab_size == plain.vocab_size
    with pytest.raises(CadenzaError, match="unknown tokenizer controls"):
        RemiTokenizer(RemiSpec(controls=["mood"]))


def test_encode_writes_key_instruments_and_a_chord_per_bar(tok):
    ids = tok.encode(two_tracks(), "pop", eos=True)
    assert tok.check(ids) == []
    names = tok.tokens(ids)
    assert names[:5] == ["BOS_None", "Style_pop", "Key_C:major", "Inst_0", "Inst_40"]
    c = tok.controls_of(ids)
    assert c["key"] == (0, "major") and c["instruments"] == [0, 40]
    assert c["chords"] == [(0, "maj"), (9, "min"), (5, "maj"), (7, "maj")]
    # each Chord follows its bar's TimeSig, before any note of the bar
    for j, t in enumerate(ids):
        if tok.type_of[t] == T_CHORD:
            assert tok.type_of[ids[j - 2]] == T_BAR
    assert tok.header_len(ids) == 5
    # decoding ignores the controls: the same notes as the plain tokenizer gives
    plain = RemiTokenizer(RemiSpec())
    a, b = tok.decode(ids), plain.decode(plain.encode(two_tracks(), "pop"))
    assert sorted((n.time, n.pitch) for t in a.tracks for n in t.notes) == \
        sorted((n.time, n.pitch) for t in b.tracks for n in t.notes)


def test_given_chords_and_key_override_recognition(tok):
    ids = tok.encode(two_tracks(), "pop", key=(9, "minor"), chords=[(9, "min7"), None])
    c = tok.controls_of(ids)
    assert c["key"] == (9, "minor") and c["chords"] == [(9, "min7"), None, None, None]
    assert tok.check(ids) == []


def test_grammar_header_order_and_chords(tok):
    st = tok.start_state()
    for t in tok.header("pop", (0, "major"), [0, 40]):
        assert tok.allowed(st)[t]
        st.advance(t)
    m = tok.allowed(st)
    assert not m[tok.inst_id[0]] and not m[tok.inst_id[40]] and m[tok.inst_id[41]]  # ascending, no repeats
    assert not m[tok.key_id[(0, "major")]] and m[tok.ids_of_type[T_BAR][0]]
    st.advance(int(tok.ids_of_type[T_BAR][0]))
    st.advance(tok.tsig_id[(4, 4)])
    m = tok.allowed(st)
    assert m[tok.ids_of_type[T_CHORD]].all() and m.sum() == len(tok.ids_of_type[T_CHORD])  # a chord must follow
    assert not st.complete()
    st.advance(tok.chord_id["C:maj"])
    st.advance(int(tok.ids_of_type[6][0]))  # Position 0
    progs = tok.allowed(st)[tok.ids_of_type[T_PROG]]
    assert progs.sum() == 2  # only the header's instruments may play


def test_forced_chords_per_bar(tok):
    st = tok.start_state(chords={1: (9, "min"), 2: None})
    for t in tok.header("pop") + [int(tok.ids_of_type[T_BAR][0]), tok.tsig_id[(4, 4)]]:
        st.advance(t)
    m = tok.allowed(st)
    assert m.sum() == 1 and m[tok.chord_id["A:min"]]
    st.advance(tok.chord_id["A:min"])
    for t in [int(tok.ids_of_type[T_BAR][0]), tok.tsig_id[(4, 4)]]:
        st.advance(t)
    assert tok.allowed(st).sum() == 1 and tok.allowed(st)[tok.chord_id["N"]]
    for t in [tok.chord_id["N"], int(tok.ids_of_type[T_BAR][0]), tok.tsig_id[(4, 4)]]:
        st.advance(t)
    assert tok.allowed(st)[tok.ids_of_type[T_CHORD]].all()  # bar 3: free
    with pytest.raises(CadenzaError, match="no chord control"):
        RemiTokenizer(RemiSpec()).start_state(chords={1: (0, "maj")})


def test_rotate_controls_moves_keys_and_chords_only(tok):
    ids = np.array(tok.encode(two_tracks(), "pop"))
    up2 = tok.rotate_controls(ids, 2)
    c = tok.controls_of(up2)
    assert c["key"] == (2, "major") and c["chords"] == [(2, "maj"), (11, "min"), (7, "maj"), (9, "maj")]
    other = ~np.isin(tok.type_of[ids], [T_KEY, T_CHORD])
    assert (up2[other] == ids[other]).all()
    assert (tok.rotate_controls(up2, -2) == ids).all() and (tok.rotate_controls(ids, 12) == ids).all()


def test_inst_values(tok):
    assert tok.value_of[tok.inst_id[-1]] == -1 and tok.id_to_token[tok.inst_id[-1]] == "Inst_drums"
    assert all(tok.type_of[i] == T_INST for i in tok.inst_id.values())


@pytest.fixture(scope="module")
def full():
    return RemiTokenizer(RemiSpec(controls=["key", "instruments", "chords", "infill"]))


def notes_of(score):
    return sorted((n.time, n.pitch, n.duration, t.program) for t in score.tracks for n in t.notes)


def test_given_blocks_round_trip_to_the_same_notes(full):
    s = two_tracks()
    plain = full.encode(s, "pop", eos=True)
    given = full.encode(s, "pop", eos=True, given=[1])  # the violin melody is given
    assert full.check(given) == [] and full.check(plain) == []
    assert notes_of(full.decode(given)) == notes_of(full.decode(plain)) == notes_of(s)
    names = full.tokens(given)
    # every bar: Bar TimeSig Chord Given <melody notes> Free <piano notes>
    for j, n in enumerate(names):
        if n == "Given_None":
            assert names[j - 1].startswith("Chord_") and names[j - 3] == "Bar_None"
            block = names[j + 1:names.index("Free_None", j)]
            assert {b.split("_")[0] for b in block} <= {"Position", "Program", "Pitch", "Velocity", "Duration"}
            assert all(b == "Program_40" for b in block if b.startswith("Program"))
    assert names.count("Given_None") == names.count("Free_None") == names.count("Bar_None") == 4


def test_future_first_prompt_is_grammatical_and_keeps_the_clock(full):
    s = parse_chords("C Am F G C Am F G")
    ids = full.encode(s, "pop", eos=True)
    prompt = full.future_first(ids, 2, 4, n_future=2)  # rewrite bars 3-4 (0-based 2, 3), leading into 5-6
    names = full.tokens(prompt)
    assert "Future_None" in names and "Now_None" in names and full.check(prompt) == []
    st = full.start_state()
    for t in prompt:
        st.advance(t)
    assert st.bars == 2 and st.beats == 4.0 and not st.future  # the future bars do not move the clock
    # decoding a future-first sequence gives only the notes after Now
    assert notes_of(full.decode(prompt)) == [n for n in notes_of(s) if n[0] < 2 * 1920]


def test_forced_given_plan_and_block_grammar(full):
    s = two_tracks()
    melody = s.copy()
    melody.tracks = [s.tracks[1]]
    plan = full.given_blocks(melody, 4)
    assert set(plan) == {1, 2, 3, 4} and all(b[0] == full.given_id and b[-1] == full.free_id for b in plan.values())
    st = full.start_state(given=plan)
    for t in full.header("pop", None, [0, 40]) + [int(full.ids_of_type[T_BAR][0]), full.tsig_id[(4, 4)],
                                                  full.chord_id["C:maj"]]:
        st.advance(t)
    # the given block is forced token by token, then the bar is free again
    for t in plan[1]:
        m = full.allowed(st)
        assert m.sum() == 1 and m[t]
        st.advance(t)
    m = full.allowed(st)
    assert m[full.ids_of_type[6]].any() and m[full.ids_of_type[T_BAR]].all() and not m[full.given_id]
    with pytest.raises(CadenzaError, match="no infill control"):
        RemiTokenizer(RemiSpec(controls=["chords"])).start_state(given=plan)


def test_training_data_has_given_variants_and_future_first_windows(full, tmp_path):
    from cadenza.train.corpora import Shard, Source, WindowSampler, encode_variants

    src = Source(str(tmp_path), "pop")
    s = parse_chords("C Am F G C Am F G")
    mel = make_score([(72 + k % 3, 4 * k, 2, 80) for k in range(8)], program=40)
    s.tracks.append(mel.tracks[0])
    found_given = False
    for pid in ("a.mid", "b.mid", "c.mid", "d.mid"):
        variants = encode_variants(full, src, pid, s)
        assert [v for v, _ in variants] == [pid, f"{pid}#given"]
        for _, ids in variants:
            assert full.check(ids) == []
        found_given |= "Given_None" in full.tokens(variants[1][1])
    assert found_given
    ids = np.array(variants[0][1], dtype=np.uint16)
    sh = Shard(ids, np.array([0, len(ids)]), full.window_starts(ids), ["a"])
    sampler = WindowSampler({"pop": sh}, full, ctx=256, seed=1, transpose=3)
    sampler.fim = 1.0
    seen = 0
    for _ in range(20):
        w = sampler.window("pop")
        names = full.tokens(w)
        if "Future_None" in names:
            seen += 1
            assert full.check(w.tolist()) == [] and names.index("Now_None") > names.index("Future_None")
            assert full.controls_of(w)["key"] is not None
    assert seen >= 15


def test_rule_made_drums_follow_the_bars_and_start_with_the_music():
    from cadenza.train.drums import CRASH, KICK, with_drums

    s = parse_chords("C Am F G C Am F G C Am")  # 10 bars of 4/4 at 480 tpq
    for n in s.tracks[0].notes:
        n.time += 1920  # music from bar 2
    out = with_drums(s, np.random.default_rng(0))
    drums = [t for t in out.tracks if t.is_drum]
    assert len(drums) == 1 and len(s.tracks) == 1  # the input is not changed
    times = [int(n.time) for n in drums[0].notes]
    assert min(times) == 1920 and max(times) < out.end() and all(t % 120 == 0 for t in times)
    kicks = {t // 1920 for t, n in zip(times, drums[0].notes) if n.pitch == KICK}
    assert kicks >= set(range(1, 10)) - {8}  # a kick in every bar but the fill bar may skip none
    assert [int(n.time) for n in drums[0].notes if n.pitch == CRASH] == [1920, 9 * 1920]
    assert with_drums(out, np.random.default_rng(1)) is out  # drums already: unchanged


def test_pop909_band_and_reinstrumented_windows_are_grammatical(full, tmp_path):
    from cadenza.train.corpora import BASS_PROGRAMS, Shard, WindowSampler, pop909_band

    s = parse_chords("C Am F G C Am F G")
    for name, pitch in (("MELODY", 76), ("BRIDGE", 64), ("PIANO", 36)):
        tr = make_score([(pitch + k % 3, 4 * k, 2, 80) for k in range(8)], program=0).tracks[0]
        tr.name = name
        s.tracks.append(tr)
    s.tracks = s.tracks[1:]  # MELODY, BRIDGE and a low PIANO part, all program 0 as in POP909
    progs = set()
    for seed in range(12):
        band = pop909_band(s, np.random.default_rng(seed))
        assert band.tracks[2].program == 0 and band.note_num() >= s.note_num()
        progs |= {t.program for t in band.tracks[:2]}
    assert len(progs) >= 4
    band = next(b for b in (pop909_band(s, np.random.default_rng(k)) for k in range(50))
                if 0 not in {t.program for t in b.tracks[:2]})  # the low piano part is a program of its own
    ids = np.array(full.encode(band, "pop", eos=True), dtype=np.uint16)
    sh = Shard(ids, np.array([0, len(ids)]), full.window_starts(ids), ["a"])
    sampler = WindowSampler({"pop": sh}, full, ctx=512, seed=3, transpose=0)
    sampler.reinstrument, sampler.fim = 1.0, 0.0
    moved = 0
    base = ids[:512].astype(np.int64)
    kinds = full.type_of[base]
    for _ in range(20):
        w = sampler._reinstrument(base)
        assert full.check(w.tolist()) == []
        keep = (kinds != T_PROG) & (kinds != T_INST)
        assert (w[keep] == base[keep]).all()  # the notes stay, only their instruments change
        moved += full.controls_of(w)["instruments"] != full.controls_of(base)["instruments"]
        low = [full.value_of[int(w[j])] for j in range(len(w) - 1)
               if full.type_of[int(w[j])] == T_PROG and full.value_of[int(w[j + 1])] == 36]
        low = [p for p in low if p >= 0]  # (-1: drums, whose kick is also 36)
        assert low and all(p in BASS_PROGRAMS for p in low)
        assert full.check(sampler.window("pop").tolist()) == []
    assert moved >= 18


def test_window_headers_list_only_the_instruments_that_play_in_them(full, tmp_path):
    """A user's instrument list means "these play": a training window from a later bar (or from a
    gap) must not list an instrument that is silent in it, or the model learns to leave one out."""
    from cadenza.train.corpora import Shard, WindowSampler

    s = parse_chords("C Am F G C Am F G")  # piano all through
    flute = make_score([(76 + k % 3, 4 * k, 2, 80) for k in range(4)], program=73)  # bars 1-4 only
    strings = make_score([(60 + k % 3, 16 + 4 * k, 2, 80) for k in range(4)], program=48)  # bars 5-8
    s.tracks.extend([flute.tracks[0], strings.tracks[0]])
    ids = np.array(full.encode(s, "pop", eos=True), dtype=np.uint16)
    assert full.controls_of(ids)["instruments"] == [0, 48, 73]
    sh = Shard(ids, np.array([0, len(ids)]), full.window_starts(ids), ["a"])
    sampler = WindowSampler({"pop": sh}, full, ctx=512, seed=5, transpose=0)
    sampler.reinstrument = 1e-9  # trimming on, re-instrumenting (practically) off
    heads = set()
    for fim in (0.0, 1.0):
        sampler.fim = fim
        for _ in range(30):
            w = sampler.window("pop")
            assert full.check(w.tolist()) == []
            listed = full.controls_of(w)["instruments"]
            h = full.header_len(w)
            playing = sorted({full.value_of[int(t)] for t in w[h:] if full.type_of[int(t)] == T_PROG})
            assert listed == playing
            heads.add(tuple(listed))
    assert {(0, 73), (0, 48), (0, 48, 73)} <= heads


def test_same_instrument_unisons_are_dropped_from_training_pieces(full, tmp_path):
    from cadenza.train.corpora import Source, drop_unisons, encode_variants

    alto = make_score([(60, 0, 2, 80), (62, 2, 2, 80), (64, 4, 1, 80), (64, 4, 3, 80)], program=52)
    tenor = make_score([(55, 0, 2, 80), (62, 2, 2, 80), (60, 4, 1, 80)], program=52)  # 62 doubles the alto
    cello = make_score([(62, 2, 2, 80)], program=42)  # another instrument: a real doubling, kept
    s = alto.copy()
    s.tracks.extend([tenor.tracks[0], cello.tracks[0]])
    out = drop_unisons(s, 4)
    got = [[(int(n.time), int(n.pitch), int(n.duration)) for n in t.notes] for t in out.tracks]
    tpq = int(s.tpq)
    assert got[0] == [(0, 60, 2 * tpq), (2 * tpq, 62, 2 * tpq), (4 * tpq, 64, 3 * tpq)]  # the longer 64 kept
    assert got[1] == [(0, 55, 2 * tpq), (4 * tpq, 60, tpq)]
    assert got[2] == [(2 * tpq, 62, 2 * tpq)]
    assert s.note_num() == 8  # the input is untouched
    ids = encode_variants(full, Source(str(tmp_path), "chorale"), "x", s)[0][1]
    names = full.tokens(ids)
    assert sum(n == "Pitch_62" for n in names) == 2  # the alto's and the cello's


def test_pop909_piano_bass_line_becomes_a_bass_part():
    from cadenza.train.corpora import BASS_PROGRAMS, with_bass

    piano = make_score([(36, 0, 1, 80), (60, 0, 1, 80), (64, 0, 1, 80),   # C2 under a chord: bass
                        (62, 1, 1, 80),                                     # alone but high: stays
                        (43, 2, 2, 80), (47, 2, 2, 80), (67, 2, 2, 80)],    # G2 lowest, B2 not
                       program=0).tracks[0]
    piano.name = "PIANO"
    melody = make_score([(72, 0, 4, 80)]).tracks[0]
    melody.name = "MELODY"
    s = symusic.Score(480)
    s.tracks.extend([melody, piano])
    out = with_bass(s, 33)
    bass = [t for t in out.tracks if t.name == "BASS"]
    assert len(bass) == 1 and bass[0].program == 33 and 33 in BASS_PROGRAMS
    assert sorted(int(n.pitch) for n in bass[0].notes) == [36, 43]
    left = [t for t in out.tracks if t.name == "PIANO"][0]
    assert sorted(int(n.pitch) for n in left.notes) == [47, 60, 62, 64, 67]
    assert out.note_num() == s.note_num() and len(s.tracks) == 2  # nothing lost; the input unchanged


def test_a_writing_model_never_opens_given_or_future_blocks_itself(full):
    """Given and Future blocks are user material: opened only by a plan (or when reading data). A
    model that opened one itself would write bars off the clock and never reach its length."""
    head = full.header("pop", (0, "major"), [0])
    bar = [int(full.ids_of_type[T_BAR][0]), full.tsig_id[(4, 4)], full.chord_id["C:maj"]]
    for reading in (False, True):
        st = full.start_state(reading=reading)
        for t in head:
            st.advance(t)
        assert bool(full.allowed(st)[full.future_id]) == reading
        for t in bar:
            st.advance(t)
        assert bool(full.allowed(st)[full.given_id]) == reading
    # (a plan still forces a given block while writing: test_forced_given_plan_and_block_grammar)
