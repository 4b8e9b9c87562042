import numpy as np
import pytest

from cadenza.errors import CadenzaError
from cadenza.tokenizers.grid import BOS, EOS, REST, GridTokenizer


@pytest.fixture()
def tok():
    return GridTokenizer()


GRID = [[74, 70, 65, 58], [74, 70, 65, 58], [75, 70, 58, 55], [-1, 70, 60, 55], [77, 69, 62, 50]]


def test_serialization_is_voice_by_voice_within_a_step(tok):
    ids = tok.encode_grid(GRID)
    assert ids[0] == BOS and len(ids) == 1 + 4 * len(GRID)
    assert tok.tokens(ids[1:6]) == ["Pitch_74", "Pitch_70", "Pitch_65", "Pitch_58", "Pitch_74"]
    assert ids[1 + 12] == REST


def test_grid_round_trip(tok):
    assert tok.decode_grid(tok.encode_grid(GRID)).tolist() == GRID


def test_score_round_trip_joins_held_cells(tok):
    score = tok.decode(tok.encode_grid(GRID))
    assert [t.name for t in score.tracks] == ["Soprano", "Alto", "Tenor", "Bass"]
    assert len(score.tracks[1].notes) == 2  # alto 70 x4 is one held note, then 69
    assert tok.score_to_grid(score).tolist() == GRID


def test_grammar_ends_only_at_a_step_boundary(tok):
    st = tok.start_state()
    assert tok.allowed(st)[BOS] and tok.allowed(st).sum() == 1
    st.advance(BOS)
    for k, i in enumerate(tok.encode_grid(GRID[:1], bos=False) + tok.encode_grid(GRID[:1], bos=False)[:2]):
        st.advance(i)
    assert not tok.allowed(st)[EOS]
    for i in tok.encode_grid(GRID[:1], bos=False)[2:]:
        st.advance(i)
    assert tok.allowed(st)[EOS] and st.steps == 2


def test_out_of_range_pitch(tok):
    with pytest.raises(CadenzaError, match="outside"):
        tok.encode_grid([[200, 60, 55, 40]])


def test_wrong_number_of_voices(tok):
    score = tok.grid_to_score(np.array(GRID)[:, :3])
    with pytest.raises(CadenzaError, match="4 voices"):
        tok.score_to_grid(score)
