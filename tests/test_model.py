import torch

from cadenza.model import ModelConfig, Transformer, load_model_folder, save_model_folder


def tiny(vocab=50, **kw):
    torch.manual_seed(0)
    return Transformer(ModelConfig(vocab_size=vocab, d_model=32, n_layers=2, n_heads=4, d_ff=64, max_seq_len=64, **kw))


def test_cached_steps_equal_full_forward():
    m = tiny().eval()
    x = torch.randint(0, 50, (2, 30))
    full = m(x)
    m.setup_cache(2, 64)
    parts = [m(x[:, :7], input_pos=torch.arange(7))]
    for i in range(7, 30):
        parts.append(m(x[:, i:i + 1], input_pos=torch.tensor([i])))
    assert torch.allclose(torch.cat(parts, 1), full, atol=1e-5)


def test_causal():
    m = tiny().eval()
    x = torch.randint(0, 50, (1, 20))
    y = x.clone()
    y[0, 12:] = (y[0, 12:] + 1) % 50
    a, b = m(x), m(y)
    assert torch.allclose(a[:, :12], b[:, :12], atol=1e-6)
    assert not torch.allclose(a[:, 12:], b[:, 12:])


def test_overfits_one_batch():
    m = tiny()
    x = torch.randint(0, 50, (4, 33))
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    for _ in range(150):
        loss = torch.nn.functional.cross_entropy(m(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.3


def test_folder_round_trip(tmp_path):
    m = tiny().eval()
    save_model_folder(tmp_path / "m", m, {"name": "x", "tokenizer": {}})
    m2, cfg = load_model_folder(tmp_path / "m")
    assert cfg["name"] == "x" and cfg["model"]["d_model"] == 32
    x = torch.randint(0, 50, (1, 10))
    assert torch.allclose(m(x), m2(x), atol=2e-2)  # weights are stored as float16
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]


def test_fused_inference_projections_follow_the_weights():
    """Under no_grad in eval mode, q/k/v and gate/up run as fused matmuls; they must give the same
    logits as the separate layers, also after the weights change (an optimizer step, a load)."""
    m = tiny()
    x = torch.randint(0, 50, (2, 12))
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    for _ in range(2):
        m.eval()
        with torch.no_grad():
            fused = m(x)
        plain = m(x)  # grad enabled: the separate layers
        assert torch.allclose(fused, plain, atol=1e-5)
        m.train()
        torch.nn.functional.cross_entropy(m(x).flatten(0, 1), x.flatten()).backward()
        opt.step()  # weights move: the fused copies must be rebuilt
    m.eval()
    other = tiny(vocab=50)
    other.load_state_dict({k: v * 1.5 for k, v in m.state_dict().items()})
    m.load_state_dict(other.state_dict())
    with torch.no_grad():
        assert torch.allclose(m(x), other(x), atol=1e-5)
