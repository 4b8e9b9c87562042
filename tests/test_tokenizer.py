import numpy as np

from cadenza.tokenizers import RemiTokenizer, tokenizer_from_config
from conftest import make_score


def notes_of(score):
    score = score.resample(480, min_dur=1)
    return sorted((tr.program, tr.is_drum, n.pitch, n.start, n.duration) for tr in score.tracks for n in tr.notes)


def test_encode_decode_keeps_notes(tokenizer):
    s = make_score([(60, 0, 1, 100), (64, 0, 1, 100), (67, 1.5, 0.5, 60), (72, 3, 2, 90), (48, 6, 4, 70)], program=40)
    drums = make_score([(36, 0, 0.25, 100), (38, 1, 0.25, 100)], is_drum=True)
    s.tracks.append(drums.tracks[0])
    ids = tokenizer.encode(s, "folk", eos=True)
    assert tokenizer.check(ids) == []
    back = tokenizer.decode(ids)
    assert notes_of(back) == notes_of(s)


def test_config_round_trip(tokenizer):
    again = tokenizer_from_config(tokenizer.to_config())
    assert isinstance(again, RemiTokenizer)
    assert again.id_to_token == tokenizer.id_to_token


def test_header_has_style(tokenizer):
    ids = tokenizer.encode(make_score([(60, 0, 1, 80)]), "pop")
    assert tokenizer.tokens(ids[:3]) == ["BOS_None", "Style_pop", "Bar_None"]


def test_grammar_rejects_bad_sequences(tokenizer):
    t = {tok: i for i, tok in enumerate(tokenizer.id_to_token)}
    bad = [t["BOS_None"], t["Bar_None"], t["Pitch_60"]]  # a pitch with no time signature/position/program
    assert tokenizer.check(bad)
    ok = [t["BOS_None"], t["Bar_None"], t["TimeSig_4/4"], t["Position_0"], t["Program_0"], t["Pitch_60"],
          t["Velocity_79"], t["Duration_1.0.8"]]
    assert tokenizer.check(ok) == []


def test_positions_must_increase_within_bar(tokenizer):
    t = {tok: i for i, tok in enumerate(tokenizer.id_to_token)}
    st = tokenizer.start_state()
    for tok in ["BOS_None", "Bar_None", "TimeSig_3/4", "Position_8", "Program_0", "Pitch_60", "Velocity_79",
                "Duration_1.0.8"]:
        st.advance(t[tok])
    allowed = tokenizer.allowed(st)
    assert not allowed[t["Position_8"]] and not allowed[t["Position_4"]]
    assert allowed[t["Position_9"]] and allowed[t["Position_23"]]
    assert not allowed[t["Position_24"]]  # 3/4 has 24 positions at 8 per beat


def test_program_constraint(tokenizer):
    t = {tok: i for i, tok in enumerate(tokenizer.id_to_token)}
    st = tokenizer.start_state(programs=[0, 40])
    for tok in ["BOS_None", "Bar_None", "TimeSig_4/4", "Position_0"]:
        st.advance(t[tok])
    progs = np.flatnonzero(tokenizer.allowed(st) & (tokenizer.type_of == 8))
    assert sorted(tokenizer.id_to_token[i] for i in progs) == ["Program_0", "Program_40"]


def test_a_piece_from_nothing_names_its_tempo_once(tokenizer):
    """HOLD_TEMPO (a piece from nothing, no tempo asked for): the first Position must be followed by a Tempo,
    and after it no Tempo may come again; the model's tempo drifted 87, 40, 81, 101 bpm bar by bar before."""
    from cadenza.tokenizers.remi import HOLD_TEMPO, T_BAR, T_DUR, T_PITCH, T_POS, T_PROG, T_TEMPO, T_VEL

    st = tokenizer.start_state(fixed_tempo=HOLD_TEMPO)
    of_type = {k: set(int(t) for t in tokenizer.ids_of_type[k]) for k in (T_BAR, T_POS, T_TEMPO, T_PROG, T_PITCH,
                                                                           T_VEL, T_DUR)}
    tempos_written = 0
    for _ in range(400):  # walk the grammar: a note at each new position, a new bar after two notes
        allowed = set(np.flatnonzero(tokenizer.allowed(st)).tolist()) - {tokenizer.pad_id, tokenizer.eos_id}
        if st.last == T_POS:
            assert (allowed <= of_type[T_TEMPO]) == (tempos_written == 0), "only the first position names a tempo"
            assert tempos_written == 0 or not allowed & of_type[T_TEMPO]
        order = ([T_BAR] if st.notes >= 2 * st.bars else []) + [T_TEMPO, T_POS, T_PROG, T_PITCH, T_VEL, T_DUR, T_BAR]
        choice = next((min(allowed & of_type[k]) for k in order if allowed & of_type[k]), min(allowed))
        tempos_written += choice in of_type[T_TEMPO]
        st.advance(choice)
        if st.bars >= 4:
            break
    assert st.bars >= 4 and st.notes >= 4 and tempos_written == 1 and st.fixed_tempo > 0
