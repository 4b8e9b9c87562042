"""The audio model: codec tokens, the prior on the engine, continuing a recording, training, the CLI."""

import json

import numpy as np
import pytest
import torch

from cadenza.audio.codec import CodecConfig, SpectralCodec
from cadenza.errors import CadenzaError
from cadenza.tokenizers import AudioSpec, AudioTokenizer, tokenizer_from_config
from test_transcribe import MELODY, sine_melody

SR = 16000


def melody(sr=SR, amp=0.5):
    return sine_melody(MELODY, sr=sr, amp=amp)


def tiny_codec(seed=0) -> SpectralCodec:
    torch.manual_seed(seed)
    codec = SpectralCodec(CodecConfig(channels=32, latent=8, n_q=3, codebook_size=16, gl_iters=8))
    codec.train()
    codec(torch.from_numpy(melody())[None])  # one training pass initializes the codebooks from the data
    return codec.eval()


# ---- tokenizer -------------------------------------------------------------------------------------
def test_codes_round_trip_through_tokens_and_the_grammar_allows_only_the_due_codebook():
    tok = AudioTokenizer(AudioSpec(n_q=3, codebook_size=16, styles=["piano", "winds"]))
    codes = np.random.default_rng(0).integers(0, 16, (3, 7))
    ids = tok.encode_codes(codes, "winds")
    assert ids[:2] == [tok.bos_id, tok.style_base + 1] and len(ids) == 2 + 21
    assert np.array_equal(tok.decode_codes(ids), codes)
    assert np.array_equal(tok.decode_codes(ids[:-2]), codes[:, :6])  # an unfinished frame is dropped
    st = tok.start_state()
    for t in ids:
        st.advance(t)
    for k in range(6):
        allowed = np.flatnonzero(tok.allowed(st))
        q = k % 3
        assert allowed.min() == tok.code_base + 16 * q and allowed.max() == tok.code_base + 16 * q + 15
        assert st.complete() == (q == 0)
        st.advance(int(allowed[0]))
    assert tokenizer_from_config(json.loads(json.dumps(tok.to_config()))).vocab_size == tok.vocab_size
    with pytest.raises(CadenzaError, match="unknown style 'jazz'"):
        tok.header("jazz")
    with pytest.raises(CadenzaError, match="audio model"):
        tok.encode(None)


# ---- codec -----------------------------------------------------------------------------------------
def test_codec_shapes_and_determinism():
    codec = tiny_codec()
    cfg = codec.cfg
    y = torch.from_numpy(melody())[None]
    codes = codec.encode(y)
    frames = y.shape[1] // cfg.frame_samples
    assert codes.shape == (1, cfg.n_q, frames) and codes.dtype == torch.long
    assert int(codes.min()) >= 0 and int(codes.max()) < cfg.codebook_size
    assert torch.equal(codes, codec.encode(y))  # encoding is deterministic
    assert len(torch.unique(codes[0, 0])) > 1  # the melody's notes get different codes
    audio = codec.decode(codes)
    assert audio.shape == (1, frames * cfg.frame_samples)
    assert torch.equal(audio, codec.decode(codes))  # so is decoding (Griffin-Lim's start is seeded)
    assert torch.isfinite(audio).all()
    assert codec.decode_log_mag(codes).shape == (1, cfg.n_fft // 2 + 1, frames * cfg.stride)
    assert cfg.tokens_per_s == pytest.approx(SR / 512 * 3) and cfg.kbps == pytest.approx(SR / 512 * 3 * 4 / 1000)


def test_griffin_lim_keeps_known_frames_and_finds_a_phase_for_true_magnitudes():
    from cadenza.audio.codec import mel_distance, si_snr_db

    codec = tiny_codec()
    codec.cfg.gl_iters = 32
    y = codec.trim(torch.from_numpy(melody())[None])
    spec = codec.stft(y)
    rebuilt = codec.griffin_lim(spec.abs())[0].numpy()
    assert mel_distance(rebuilt, y[0].numpy(), codec) < 0.1  # the spectrogram comes back (its phase is new)
    noise = np.random.default_rng(0).normal(0, 0.1, y.shape[1]).astype(np.float32)
    assert mel_distance(noise, y[0].numpy(), codec) > 1.0
    known = codec.griffin_lim(spec.abs(), known=spec)[0].numpy()  # every frame known: the signal itself
    edge = codec.cfg.n_fft  # the last frames lack their right neighbour
    assert si_snr_db(known[:-edge], y[0, :-edge].numpy()) > 30


# ---- engine ----------------------------------------------------------------------------------------
def test_stream_tokens_follows_the_grammar_past_the_context_window():
    from cadenza.engine.generate import stream_tokens
    from cadenza.engine.sampling import SamplingConfig
    from cadenza.model import ModelConfig, Transformer

    tok = AudioTokenizer(AudioSpec(n_q=3, codebook_size=16, styles=["a"]))
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=tok.vocab_size, d_model=32, n_layers=2, n_heads=4, d_ff=64,
                                    max_seq_len=32))
    prompt = tok.encode_codes(np.zeros((3, 4), np.int64), "a")
    got = [t for _, t in stream_tokens(model, tok, prompt, 90, n=2, sampling=SamplingConfig(seed=3), header_len=2,
                                       period=3)]
    rows = [got[0::2], got[1::2]]
    for row in rows:
        assert len(row) == 90
        codes = tok.decode_codes(prompt + row)  # decodes: every token is in its codebook's place
        assert codes.shape == (3, 34)
    again = [t for _, t in stream_tokens(model, tok, prompt, 90, n=2, sampling=SamplingConfig(seed=3), header_len=2,
                                         period=3)]
    assert again == got


# ---- training, continuing, the CLI ------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny audio model trained by `cadenza audio train` on two styles of synthetic recordings."""
    import soundfile as sf

    from cadenza.cli import main

    root = tmp_path_factory.mktemp("audio")
    data = root / "wavs"
    for style, shift in (("low", 0), ("high", 12)):
        for split in ("train", "valid"):
            (data / style / split).mkdir(parents=True)
            for k in range(2):
                notes = [(p + shift + k, s, d) for p, s, d in MELODY]
                sf.write(data / style / split / f"{k}.wav", sine_melody(notes, sr=SR), SR)
    out = root / "run"
    base = ["audio", "train", "--data", str(data), "--out", str(out), "--codec-steps", "4", "--batch-size", "2",
            "--ctx", "64", "--d-model", "32", "--n-layers", "2", "-q"]
    assert main(base + ["--prior-steps", "3"]) == 0
    return out, base


def test_audio_train_writes_a_model_folder_and_resumes(trained, capsys):
    from cadenza.cli import main
    from cadenza.tasks.audio import load_audio_model

    out, base = trained
    cfg = json.loads((out / "model" / "config.json").read_text())
    assert cfg["family"] == "audio-lm" and cfg["styles"] == ["high", "low"]
    assert cfg["extra_files"] == ["codec.safetensors"] and (out / "model" / "codec.safetensors").is_file()
    assert "Codec" in (out / "model" / "README.md").read_text()
    model = load_audio_model(out / "model")
    assert model.styles == ["high", "low"]
    capsys.readouterr()
    assert main(base + ["--prior-steps", "3"]) == 1  # a second run into the same folder must say so
    assert "--resume" in capsys.readouterr().err
    assert main(base + ["--prior-steps", "4", "--resume"]) == 0  # 3 -> 4 steps
    assert torch.load(out / "prior_checkpoint.pt", weights_only=True)["step"] == 4


def test_continuing_keeps_the_prompt_samples_exactly(trained):
    from cadenza.tasks.audio import load_audio_model

    model = load_audio_model(trained[0] / "model")
    prompt = np.stack([melody(44100), 0.5 * melody(44100)], 1)  # stereo, another rate
    res = model.continue_audio(prompt, 44100, 1.5, seed=1)
    assert res.sample_rate == 44100 and res.prompt_samples == len(prompt)
    assert np.array_equal(res.samples[:len(prompt)], prompt)  # bit for bit
    assert res.samples.shape == (len(prompt) + int(round(1.5 * SR)) * 44100 // SR, 2)
    assert np.isfinite(res.continuation).all() and np.abs(res.continuation).max() > 0
    again = model.continue_audio(prompt, 44100, 1.5, seed=1)
    assert np.array_equal(again.samples, res.samples)
    assert res.style in ("high", "low")
    with pytest.raises(CadenzaError, match="silent"):
        model.continue_audio(np.zeros(SR, np.float32), SR, 1.0)
    with pytest.raises(CadenzaError, match="too short"):
        model.continue_audio(melody()[:700], SR, 1.0)
    with pytest.raises(CadenzaError, match="positive"):
        model.continue_audio(melody(), SR, -2)
    with pytest.raises(CadenzaError, match="unknown style"):
        model.continue_audio(melody(), SR, 1.0, style="jazz")


def test_quantized_audio_model_keeps_its_codec(trained, tmp_path):
    from cadenza.model.folder import quantize_model_folder
    from cadenza.tasks.audio import load_audio_model

    q = quantize_model_folder(trained[0] / "model", tmp_path / "q")
    assert load_audio_model(q).codec.cfg == load_audio_model(trained[0] / "model").codec.cfg


def test_cli_audio_continue_and_generate(trained, tmp_path, capsys):
    import soundfile as sf

    from cadenza.cli import main

    model = str(trained[0] / "model")
    sf.write(tmp_path / "clip.wav", melody(), SR)
    assert main(["audio", "continue", str(tmp_path / "clip.wav"), "--seconds", "1", "--model", model, "--seed", "2",
                 "--out", str(tmp_path / "more.wav"), "--out", str(tmp_path / "more.png")]) == 0
    y, sr = sf.read(tmp_path / "more.wav")
    assert sr == SR and abs(len(y) - (len(melody()) + SR)) <= 1
    assert (tmp_path / "more.png").stat().st_size > 1000
    assert main(["audio", "generate", "--style", "low", "--seconds", "1", "--model", model,
                 "--out", str(tmp_path / "new.wav"), "-q"]) == 0
    assert abs(len(sf.read(tmp_path / "new.wav")[0]) - SR) <= 1
    capsys.readouterr()
    for args, msg in ((["continue", str(tmp_path / "none.wav")], "not found"),
                      (["continue", str(tmp_path / "clip.wav"), "--style", "jazz"], "unknown style"),
                      (["generate", "--out", str(tmp_path / "x.mid")], "writes audio"),
                      (["generate", "--model", "small"], "not an audio model")):
        outs = [] if "--out" in args else ["--out", str(tmp_path / "bad.wav")]
        model_args = [] if "--model" in args else ["--model", model]
        assert main(["audio", *args, *outs, *model_args, "-q"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and msg in err[0], err
    assert not (tmp_path / "bad.wav").exists() and not (tmp_path / "x.mid").exists()


def test_generate_from_a_hummed_prompt(tmp_path, capsys):
    import soundfile as sf

    from cadenza.cli import main
    from cadenza.score import read_score

    sf.write(tmp_path / "hum.wav", melody(22050), 22050)
    assert main(["generate", "--prompt", str(tmp_path / "hum.wav"), "--model", "small", "--tempo", "120",
                 "--bars", "2", "--seed", "0", "--out", str(tmp_path / "song.mid")]) == 0
    assert "transcribed 6 notes" in capsys.readouterr().out
    song = read_score(tmp_path / "song.mid").to("second")
    notes = {(round(n.time, 2), n.pitch) for t in song.tracks for n in t.notes}
    assert {(s, p) for p, s, _ in MELODY} <= notes  # the hummed melody opens the piece, on its beats
    assert len(notes) > len(MELODY)  # and the model went on


def test_audio_train_stops_after_max_minutes_and_resumes(trained, tmp_path, capsys):
    from cadenza.cli import main

    _, base = trained
    args = [*base[:base.index("--out") + 1], str(tmp_path / "run"), *base[base.index("--out") + 2:]]
    # a clean stop at the time limit exits 0, as `cadenza train --max-minutes` does (it exited 1)
    assert main(args + ["--prior-steps", "3", "--max-minutes", "0.00001"]) == 0  # stops after its first codec step
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "stopped after" in err[0] and "--resume" in err[0]
    assert torch.load(tmp_path / "run" / "codec_checkpoint.pt", weights_only=True)["step"] == 1
    assert main(args + ["--prior-steps", "3", "--resume"]) == 0
    assert (tmp_path / "run" / "model" / "codec.safetensors").is_file()


def test_the_bundled_audio_model_is_as_the_readme_says():
    """README: the bundled `audio` model (piano, strings, winds) turns each 32 ms of sound into 4 codes."""
    from cadenza.tasks.compose import BUNDLED_DIR

    cfg = json.loads((BUNDLED_DIR / "audio" / "config.json").read_text())
    c = cfg["codec"]
    assert c["hop"] * c["stride"] / c["sample_rate"] == 0.032 and c["n_q"] == 4
    assert cfg["styles"] == ["piano", "strings", "winds"]
