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
