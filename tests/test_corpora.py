from cadenza.score import write_score
from cadenza.train.corpora import Source, is_valid, iter_pieces
from conftest import make_score


def test_splits_partition_pieces_and_ignore_how_the_path_is_typed(tmp_path, monkeypatch):
    root = tmp_path / "mycorpus"
    (root / "sub").mkdir(parents=True)
    for k in range(40):
        write_score(make_score([(60 + k % 12, 0, 1, 80)]), root / "sub" / f"p{k}.mid")
    all_ids = [pid for pid, _ in iter_pieces(Source(str(root), "x"))]
    valid = [pid for pid, _ in iter_pieces(Source(str(root), "x"), only="valid", valid_fraction=0.3)]
    train = [pid for pid, _ in iter_pieces(Source(str(root), "x"), only="train", valid_fraction=0.3)]
    assert sorted(valid + train) == sorted(all_ids) and not set(valid) & set(train)
    assert valid and all(is_valid(p, 0.3) for p in valid)
    monkeypatch.chdir(tmp_path)  # a relative path names the same pieces
    assert [pid for pid, _ in iter_pieces(Source("mycorpus/", "x"))] == all_ids
    assert all_ids[0].startswith("mycorpus/sub/")


def test_packed_rows_hold_whole_windows_without_padding():
    """--pack fills each row with windows one after another: no padding, every window starts with its
    header, and a target never crosses from one piece into the next."""
    import numpy as np

    from cadenza.tokenizers.frames import BOS, FrameTokenizer
    from cadenza.train.corpora import Shard, WindowSampler

    tok = FrameTokenizer()
    pieces = [tok.encode_frames([[60 + k, 64 + k]] * (3 + k)) for k in range(6)]  # 10-25 tokens each
    starts = np.cumsum([0] + [len(p) for p in pieces])
    toks = np.concatenate(pieces).astype(np.uint16)
    bars = np.concatenate([s + tok.window_starts(p) for s, p in zip(starts, pieces)])
    shard = Shard(toks, starts, bars, [str(k) for k in range(6)])
    plain = WindowSampler({"x": shard}, tok, ctx=64, transpose=0)
    x, y = plain.batch(4)
    assert (y == -100).any(axis=1).all()  # one short window per row, padded
    packed = WindowSampler({"x": shard}, tok, ctx=64, transpose=0, pack=True)
    x, y = packed.batch(4)
    assert (y != -100).all() and (x != tok.pad_id).all()
    assert (x[:, 0] == BOS).all() and (x == BOS).sum(axis=1).min() >= 3
    assert not (y == BOS).any()  # nothing is asked to predict the next piece's header


def test_music21_corpora_tokenize_in_worker_processes_with_the_same_ids(tmp_path):
    from cadenza.tokenizers import RemiSpec, RemiTokenizer
    from cadenza.train.corpora import Source, _tokenized, build_shards, iter_pieces

    tok = RemiTokenizer(RemiSpec(controls=["key", "instruments", "chords", "infill"], styles=["chorale"]))
    src = Source("music21:bach", "chorale")
    shards = build_shards([src], tok, tmp_path, max_pieces=4)
    ids = [p for sh in shards.values() for p in sh.ids]
    assert len([p for p in ids if not p.endswith("#given")]) == 4 and any(p.endswith("#given") for p in ids)
    first = next(_tokenized(src, tok))
    assert first[0] == next(iter_pieces(src))[0] and tok.check(first[1][0][1]) == []


def test_sources_infer_known_styles_and_multi_tune_abc_gives_one_piece_per_tune(tmp_path):
    """README: a source's style is the name after '=', or inferred for well-known corpora; multi-tune ABC
    files give one piece per tune (folders searched recursively)."""
    from cadenza.train.corpora import Source, iter_pieces

    assert Source.parse("music21:bach").style == "chorale"
    assert Source.parse("music21:bach=mine").style == "mine"
    folk = tmp_path / "Nottingham" / "deeper"
    folk.mkdir(parents=True)
    tunes = "".join(f"X:{k}\nT:Tune {k}\nM:4/4\nL:1/8\nK:G\nGABc dedB|dBGB AGFD|\n\n" for k in (1, 2, 3))
    (folk / "three.abc").write_text(tunes)
    source = Source.parse(str(tmp_path / "Nottingham"))
    assert source.style == "folk"
    assert len(list(iter_pieces(source))) == 3
