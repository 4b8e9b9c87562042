import numpy as np
import pytest
import torch

from cadenza.engine import SamplingConfig, StopConfig, generate, sample
from cadenza.errors import CadenzaError
from cadenza.model import load_model_folder
from cadenza.tokenizers.remi import T_BAR, T_DRUM, T_PITCH, T_PROG


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    model, _ = load_model_folder(tiny_model_dir)
    return model


def test_thousand_random_sequences_all_decode(tiny, tokenizer):
    """Random weights + grammar mask: every sequence is valid and every note token group becomes a note."""
    total = 0
    for batch in range(10):
        res = generate(tiny, tokenizer, tokenizer.header("pop"), n=100,
                       sampling=SamplingConfig(temperature=1.0, top_p=1.0, seed=batch),
                       stop=StopConfig(max_tokens=120))
        for seq in res.ids:
            assert tokenizer.check(seq) == []
            n_pitch = int(np.isin(tokenizer.type_of[seq], [T_PITCH, T_DRUM]).sum())
            assert tokenizer.decode(seq).note_num() == n_pitch
            total += 1
    assert total == 1000


def test_same_seed_same_piece(tiny, tokenizer):
    run = lambda seed: generate(tiny, tokenizer, tokenizer.header("folk"), sampling=SamplingConfig(seed=seed),
                                stop=StopConfig(bars=4, max_tokens=200)).ids[0]
    assert run(7) == run(7)
    assert run(7) != run(8)


def test_top_k_one_is_argmax():
    logits = torch.randn(3, 20)
    ids = sample(logits, SamplingConfig(top_k=1, top_p=1.0), None, torch.Generator().manual_seed(0))
    assert ids.tolist() == logits.argmax(-1).tolist()


def test_top_p_keeps_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    g = torch.Generator().manual_seed(0)
    seen = {int(sample(logits, SamplingConfig(top_p=0.7), None, g)) for _ in range(200)}
    assert seen == {0, 1}


def test_stops_after_bars_and_respects_programs(tiny, tokenizer):
    res = generate(tiny, tokenizer, tokenizer.header("pop"), n=4, sampling=SamplingConfig(seed=1),
                   stop=StopConfig(bars=3), constraints={"programs": [0, 40], "time_signature": (3, 4)})
    for seq in res.ids:
        kinds = tokenizer.type_of[seq]
        assert int((kinds == T_BAR).sum()) == 3
        progs = {tokenizer.id_to_token[t] for t, k in zip(seq, kinds) if k == T_PROG}
        assert progs <= {"Program_0", "Program_40"}
        assert {tokenizer.id_to_token[t] for t in seq if tokenizer.id_to_token[t].startswith("TimeSig")} == {"TimeSig_3/4"}


def test_bad_sampling_settings():
    for kw in ({"temperature": 0}, {"temperature": -1}, {"top_p": 0}, {"top_k": -1}, {"repetition_penalty": 0.5}):
        with pytest.raises(CadenzaError):
            SamplingConfig(**kw).validate()


def test_long_generation_slides_window(tiny, tokenizer):
    # the tiny model's context is 256 tokens: 600 new tokens need the sliding window
    res = generate(tiny, tokenizer, tokenizer.header("pop"), sampling=SamplingConfig(seed=3),
                   stop=StopConfig(bars=500, max_tokens=600))
    assert len(res.ids[0]) >= 600
    assert tokenizer.check(res.ids[0]) == []


def test_sliding_window_never_exceeds_the_context_and_keeps_the_opening(tiny_model_dir):
    """A piece several times the context: every model call stays inside the context, and each
    re-prefilled window starts with the header and the piece's opening (meter, tempo)."""

    from cadenza.engine import SamplingConfig, StopConfig, stream
    from cadenza.tasks import load_model

    m = load_model(tiny_model_dir)
    model, tok = m.model, m.tokenizer
    ctx = model.cfg.max_seq_len
    calls = []
    forward = model.forward

    def watched(idx, input_pos=None):
        calls.append((idx.detach().clone(), None if input_pos is None else input_pos.clone()))
        return forward(idx, input_pos=input_pos)

    model.forward = watched
    try:
        prompt = tok.header("folk") + [int(tok.ids_of_type[4][0]), tok.tsig_id[(3, 4)], int(tok.ids_of_type[6][0]),
                                       tok.nearest_tempo_id(90.0)]
        n = 0
        for _ in stream(model, tok, prompt, n=2, sampling=SamplingConfig(seed=0),
                        stop=StopConfig(bars=10**9, max_tokens=4 * ctx), constraints={"time_signature": (3, 4)}):
            n += 1
    finally:
        del model.forward
    assert n >= 4 * ctx * 2 - 2
    assert all(int(p.max()) < ctx for _, p in calls if p is not None)
    prefills = [x for x, p in calls if p is not None and len(p) > 1]
    assert len(prefills) >= 4  # the first, then slides
    for x in prefills[1:]:
        assert x[0, :len(prompt)].tolist() == prompt and x[1, :len(prompt)].tolist() == prompt


def test_fixed_shape_decode_step_matches_forward_and_compiles(tiny_model_dir):
    """decode_step (whole-cache attention under a mask, gpt-fast style) gives forward's logits, and
    the torch.compile'd engine writes the same tokens as the eager one for the same seed."""
    import torch

    from cadenza.engine import SamplingConfig, StopConfig, stream
    from cadenza.tasks import load_model

    m = load_model(tiny_model_dir)
    model, tok = m.model.eval(), m.tokenizer
    x = torch.randint(0, tok.vocab_size, (2, 30))
    with torch.no_grad():
        model.setup_cache(2, 64)
        ref = [model(x[:, :8], input_pos=torch.arange(8))[:, -1]]
        ref += [model(x[:, i:i + 1], input_pos=torch.tensor([i]))[:, -1] for i in range(8, 30)]
        model.setup_cache(2, 64)
        model(x[:, :8], input_pos=torch.arange(8))
        got = [model.decode_step(x[:, i:i + 1], torch.tensor([i])) for i in range(8, 30)]
    model.clear_cache()
    assert max((a - b).abs().max().item() for a, b in zip(ref[1:], got)) < 1e-5
    prompt = tok.header("folk")
    run = [[t for _, t in stream(model, tok, prompt, n=2, sampling=SamplingConfig(seed=9),
                                 stop=StopConfig(max_tokens=300), compile=c)] for c in (False, True)]
    assert run[0] == run[1] and len(run[0]) > 100


def test_token_cap_grows_with_the_length_asked_for():
    """A 4-minute piece of dense music needs ~17k tokens: the safety cap must not cut it short."""
    from cadenza.engine import StopConfig

    assert StopConfig(seconds=240).limit() >= 240 * 200
    assert StopConfig(bars=120).limit() >= 120 * 400
    assert StopConfig(max_tokens=100).limit() == 8192
    assert StopConfig(seconds=10, hard_limit=50).limit() == 50


def test_the_last_bar_ends_where_the_model_would_start_a_new_one(tiny, tokenizer):
    """A model that gives a new Bar much weight and EOS almost none (as trained models do mid-piece):
    in the last bar asked for, its Bar must end the piece, not be masked so that its probability goes
    to ever more notes at the bar's last position (the engine once wrote ~1,900 notes there)."""
    import copy

    bar_ids = torch.from_numpy(np.isin(np.arange(tokenizer.vocab_size), tokenizer.ids_of_type[T_BAR]))
    eos = tokenizer.eos_id

    class BarFirst(type(tiny)):
        def forward(self, *a, **k):
            out = super().forward(*a, **k)
            out[..., bar_ids] += 6.0
            out[..., eos] -= 12.0
            return out

    model = copy.deepcopy(tiny)
    model.__class__ = BarFirst
    res = generate(model, tokenizer, tokenizer.header("pop"), n=4, sampling=SamplingConfig(seed=3),
                   stop=StopConfig(bars=2))
    for seq in res.ids:
        new = seq[res.prompt_len:]
        kinds = tokenizer.type_of[new]
        assert int((kinds == T_BAR).sum()) == 2
        last_bar = new[int(np.flatnonzero(kinds == T_BAR)[-1]):]
        notes = int(np.isin(tokenizer.type_of[last_bar], (T_PITCH, T_DRUM)).sum())
        assert notes < 40, notes  # a bar of ordinary music, not a pile-up


def test_a_model_that_repeats_one_note_is_capped_per_position(tiny, tokenizer):
    """A model that wants the same note at the same onset over and over (what the data's same-program
    unisons teach; a trained model once wrote 1,885 notes at one onset): the grammar caps a writing
    model at MAX_NOTES_PER_PROGRAM notes per instrument and MAX_NOTES_AT_ONCE per position."""
    import copy

    from cadenza.tokenizers.remi import MAX_NOTES_AT_ONCE, MAX_NOTES_PER_PROGRAM, T_POS, T_PROG

    prog = torch.from_numpy(np.isin(np.arange(tokenizer.vocab_size), tokenizer.ids_of_type[T_PROG]))
    ends = torch.from_numpy(np.isin(np.arange(tokenizer.vocab_size),
                                    np.concatenate([tokenizer.ids_of_type[T_POS], tokenizer.ids_of_type[T_BAR],
                                                    [tokenizer.eos_id]])))

    class Repeater(type(tiny)):
        def forward(self, *a, **k):
            out = super().forward(*a, **k)
            out[..., prog] += 8.0  # after a note: another note, never move on
            out[..., ends] -= 8.0
            return out

    model = copy.deepcopy(tiny)
    model.__class__ = Repeater
    res = generate(model, tokenizer, tokenizer.header("pop"), n=3, sampling=SamplingConfig(seed=1),
                   stop=StopConfig(bars=2, max_tokens=4000))
    worst_pos = worst_prog = 0
    for seq in res.ids:
        new = seq[res.prompt_len:]
        at, by = 0, {}
        for t in new:
            kind = tokenizer.type_of[t]
            if kind in (T_POS, T_BAR):
                at, by = 0, {}
            elif kind == T_PROG:
                cur = t
            elif kind in (T_PITCH, T_DRUM):
                at += 1
                by[cur] = by.get(cur, 0) + 1
                worst_pos, worst_prog = max(worst_pos, at), max(worst_prog, by[cur])
        assert tokenizer.check(seq) == []
    assert worst_prog <= MAX_NOTES_PER_PROGRAM and worst_pos <= MAX_NOTES_AT_ONCE
    assert worst_pos > MAX_NOTES_PER_PROGRAM  # the model did try: other instruments filled the position



def test_every_instrument_asked_for_enters_by_the_end(tiny, tokenizer):
    """A model that avoids one instrument asked for (a trained model left a third of them silent):
    from the middle of the piece the engine's entry bias brings it in; with the bias off it stays out."""
    import copy

    violin = tokenizer.program_id[40]
    prog = torch.from_numpy(np.isin(np.arange(tokenizer.vocab_size), tokenizer.ids_of_type[T_PROG]))

    class NoViolin(type(tiny)):
        def forward(self, *a, **k):
            out = super().forward(*a, **k)
            out[..., prog] += 3.0  # many notes: many chances to bring the violin in
            out[..., violin] -= 9.0
            return out

    model = copy.deepcopy(tiny)
    model.__class__ = NoViolin

    def violins(bias):
        res = generate(model, tokenizer, tokenizer.header("pop"), n=4,
                       sampling=SamplingConfig(seed=2, entry_bias=bias),
                       stop=StopConfig(bars=4), constraints={"programs": [0, 40]})
        return [seq[res.prompt_len:].count(violin) for seq in res.ids]

    assert sum(violins(0.0)) == 0
    on = violins(SamplingConfig().entry_bias)
    assert all(c > 0 for c in on), on
    with pytest.raises(CadenzaError, match="entry bias"):
        SamplingConfig(entry_bias=-1).validate()


def test_an_instrument_silent_for_bars_is_brought_back(tiny, tokenizer):
    """An asked-for instrument that played once and then fell silent (a trained model's bass played one
    note in four minutes) gets the entry bias again after ``reentry_bars`` silent bars; with 0 it does not."""
    import copy

    import symusic

    violin = tokenizer.program_id[40]
    prog = torch.from_numpy(np.isin(np.arange(tokenizer.vocab_size), tokenizer.ids_of_type[T_PROG]))

    class FewViolins(type(tiny)):
        def forward(self, *a, **k):
            out = super().forward(*a, **k)
            out[..., prog] += 3.0
            out[..., violin] -= 5.0  # rare; the bias (4) makes it nearly as likely as the piano again
            return out

    model = copy.deepcopy(tiny)
    model.__class__ = FewViolins
    score = symusic.Score(480)
    for program in (0, 40):
        t = symusic.Track("", program, False)
        t.notes.append(symusic.Note(0, 480, 67 - program // 4, 80))
        score.tracks.append(t)
    prompt = tokenizer.encode(score, "pop")
    assert violin in prompt

    def violins(reentry):
        res = generate(model, tokenizer, prompt, n=4, sampling=SamplingConfig(seed=3, reentry_bars=reentry),
                       stop=StopConfig(bars=12), constraints={"programs": [0, 40]})
        return sum(seq[res.prompt_len:].count(violin) for seq in res.ids)

    off, on = violins(0), violins(2)
    assert on >= 3 * max(off, 1), (off, on)
    with pytest.raises(CadenzaError, match="re-entry"):
        SamplingConfig(reentry_bars=-1).validate()


def test_a_key_asked_for_is_kept_except_on_the_bars_chord(tiny, tokenizer):
    """With a key asked for, pitches outside its scale are penalized unless they are tones of the bar's
    chord; with the bias off the random model's pitches are spread over all twelve classes. (These rows
    also slide their window with openings of different lengths: the engine made rows of unequal width
    there until fit() trimmed a long opening.)"""
    from cadenza.engine.generate import _HarmonyBias
    from cadenza.score.keys import scale_of

    def out_of_scale(bias):
        res = generate(tiny, tokenizer, tokenizer.header("pop"), n=4,
                       sampling=SamplingConfig(seed=4, key=(2, "major"), key_bias=bias), stop=StopConfig(bars=4))
        pcs = [int(tokenizer.id_to_token[t].split("_")[1]) % 12 for seq in res.ids for t in seq[res.prompt_len:]
               if tokenizer.type_of[t] == T_PITCH]
        return sum(pc not in scale_of(2, "major") for pc in pcs) / len(pcs)

    off, on = out_of_scale(0.0), out_of_scale(3.0)
    assert off > 0.25 and on < off / 3, (off, on)
    # the bar's chord frees its own tones: F (out of D major) after a Chord F token; with the chords
    # given, the chord's tones get a bonus
    from cadenza.tokenizers.remi import RemiSpec, RemiTokenizer

    ctok = RemiTokenizer(RemiSpec(controls=("key", "chords")))
    f4, e4, d4 = (ctok.id_to_token.index(f"Pitch_{p}") for p in (65, 64, 62))
    chord_f = ctok.chord_id["F:maj"]
    pen = _HarmonyBias(ctok, SamplingConfig(key=(2, "major")), ctok.header("pop"), 1)
    assert float(pen.biases()[0, f4]) < 0 and float(pen.biases()[0, e4]) == 0
    pen.advance(0, chord_f)
    assert float(pen.biases()[0, f4]) == 0
    follow = _HarmonyBias(ctok, SamplingConfig(follow_chords=True, chord_bias=0.5), ctok.header("pop"), 1)
    assert float(follow.biases()[0, f4]) == 0  # no chord yet
    follow.advance(0, chord_f)
    assert float(follow.biases()[0, f4]) == 0.5 and float(follow.biases()[0, d4]) == 0
    with pytest.raises(CadenzaError, match="chord bias"):
        SamplingConfig(chord_bias=-1).validate()
    with pytest.raises(CadenzaError, match="key bias"):
        SamplingConfig(key_bias=-1).validate()
