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
