"""Training the audio model: the codec first, then the prior over its codes; both resumable.

    cadenza audio train --data wavs/ --out runs/audio

``--data`` is a folder of recordings (.wav/.flac/.ogg/.mp3); the first folder level under it names the
style (``wavs/piano/...``, ``wavs/strings/...``; files straight in the folder are style ``audio``). Files
under a folder named ``valid``/``validation``/``test`` are held out, others by a hash of their path (the
split symbolic training uses). The run folder keeps ``codec_checkpoint.pt``, the encoded codes
(``codes/``), ``prior_checkpoint.pt`` and finally ``model/``: a model folder (config.json with the codec,
tokenizer and prior settings; model.safetensors: the prior; codec.safetensors: the codec; README.md).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from cadenza.audio.codec import CodecConfig, SpectralCodec, at_peak, codec_loss
from cadenza.errors import CadenzaError

AUDIO_FILES = (".wav", ".flac", ".ogg", ".mp3")


@dataclass
class AudioTrainConfig:
    out: str
    data: str = ""
    codec_steps: int = 3000  # as recipes/audio_model.sh trained the bundled model (the CLI's default was 3000)
    prior_steps: int = 3000
    batch_size: int = 16
    crop_seconds: float = 2.048  # codec training crops
    codec_lr: float = 1e-3
    codec_files: int = 300  # recordings the codec trains on (in memory, as 16-bit)
    ctx: int = 512  # prior context in tokens (n_q per code frame)
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup: int = 100
    weight_decay: float = 0.1
    d_model: int = 256
    n_layers: int = 6
    n_heads: int = 8
    d_ff: int = 704
    eval_every: int = 250
    save_every: int = 100
    seed: int = 0
    threads: int | None = None
    max_minutes: float | None = None
    precision: str = "fp32"  # or bf16: the prior's forward pass autocast (about 1.8x faster on CPUs with AVX512-BF16)
    name: str = "cadenza-audio"
    license: str = "see data sources"
    codec: dict = field(default_factory=dict)  # CodecConfig fields to change


def find_recordings(root: Path) -> list[tuple[str, str, Path]]:
    """(style, split, path) of every recording under ``root``."""
    from cadenza.train.corpora import is_valid

    if not root.is_dir():
        raise CadenzaError(f"data folder {root} does not exist")
    out = []
    for p in sorted(root.rglob("*")):
        if p.suffix.lower() not in AUDIO_FILES or not p.is_file():
            continue
        rel = p.relative_to(root)
        style = rel.parts[0].lower() if len(rel.parts) > 1 else "audio"
        out.append((style, "valid" if is_valid(f"{root.name}/{rel.as_posix()}") else "train", p))
    if not out:
        raise CadenzaError(f"no recordings (.wav, .flac, .ogg, .mp3) under {root}")
    return out


def load_mono(path: Path, sample_rate: int) -> np.ndarray:
    """float32 mono samples at ``sample_rate``."""
    import librosa

    from cadenza.render.audio import read_audio

    data, sr = read_audio(path)
    y = data.mean(axis=1)
    if sr != sample_rate:
        y = librosa.resample(y, orig_sr=sr, target_sr=sample_rate)
    return np.ascontiguousarray(y, dtype=np.float32)


def lr_at(step: int, total: int, lr: float, min_lr: float, warmup: int) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return float(min_lr + 0.5 * (lr - min_lr) * (1 + np.cos(np.pi * t)))  # a numpy float would not load with weights_only


def _save(obj, path: Path) -> None:
    from cadenza.train.loop import atomic_torch_save

    atomic_torch_save(obj, path)


def _resume(ckpt: Path, key: str, module: torch.nn.Module, opt) -> tuple[int, list]:
    """(step, history) of a checkpoint loaded into ``module`` and ``opt``; (0, []) when there is none."""
    if not ckpt.exists():
        return 0, []
    ck = torch.load(ckpt, weights_only=True, map_location="cpu")
    module.load_state_dict(ck[key])
    opt.load_state_dict(ck["optim"])
    return ck["step"], json.loads(ck["history"])


class TimeLimitReached(CadenzaError):
    """Training stopped, resumably, at ``max_minutes``: a clean stop (the CLI exits 0, as `train` does)."""


def _checkpoint(cfg: AudioTrainConfig, step: int, total: int, t0: float, save, bar, what: str) -> None:
    """Save every ``save_every`` steps and at the end; past ``max_minutes``, save and stop resumably."""
    if step % cfg.save_every == 0 or step == total:
        save()
    if cfg.max_minutes and (time.time() - t0) / 60 > cfg.max_minutes:
        save()
        bar.close()
        raise TimeLimitReached(f"stopped after {cfg.max_minutes} minutes at {what} step {step}; continue with --resume")


# ---- codec ----------------------------------------------------------------------------------------
def train_codec(cfg: AudioTrainConfig, progress: bool = True) -> SpectralCodec:
    """Train (or resume) the codec on random crops; returns it (eval mode)."""
    out = Path(cfg.out)
    ckpt = out / "codec_checkpoint.pt"
    ccfg = CodecConfig.from_dict(cfg.codec)
    codec = SpectralCodec(ccfg)
    opt = torch.optim.AdamW(codec.parameters(), lr=cfg.codec_lr, betas=(0.8, 0.99))
    step, history = _resume(ckpt, "codec", codec, opt)
    if step >= cfg.codec_steps:
        return codec.eval()
    recs = find_recordings(Path(cfg.data))
    train = [p for _, split, p in recs if split == "train"]
    rng = np.random.default_rng(cfg.seed + step)
    pick = [train[i] for i in rng.permutation(len(train))[:cfg.codec_files]]
    crop = int(cfg.crop_seconds * ccfg.sample_rate)
    clips = []
    for p in tqdm(pick, desc="codec data", unit="file", disable=not progress):
        y = at_peak(load_mono(p, ccfg.sample_rate))
        if len(y) >= crop:
            clips.append((np.clip(y, -1, 1) * 32767).astype(np.int16))
    if not clips:
        raise CadenzaError(f"no recording under {cfg.data} is longer than {cfg.crop_seconds} s")

    def batch() -> torch.Tensor:
        rows = []
        for _ in range(cfg.batch_size):
            c = clips[int(rng.integers(len(clips)))]
            s = int(rng.integers(0, len(c) - crop + 1))
            rows.append(c[s:s + crop].astype(np.float32) / 32767)
        return torch.from_numpy(np.stack(rows))

    def save():
        _save({"codec": codec.state_dict(), "optim": opt.state_dict(), "step": step,
               "codec_config": ccfg.to_dict(), "history": json.dumps(history)}, ckpt)

    codec.train()
    bar = tqdm(total=cfg.codec_steps, initial=step, desc="codec", unit="step", disable=not progress, dynamic_ncols=True)
    t0 = time.time()
    while step < cfg.codec_steps:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg.codec_steps, cfg.codec_lr, cfg.codec_lr / 10, 50)
        pred, target, commit = codec(batch())
        loss, parts = codec_loss(pred, target, commit, codec)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(codec.parameters(), 1.0)
        opt.step()
        step += 1
        bar.set_postfix(loss=f"{loss.item():.3f}", mel=f"{parts['mel']:.3f}")
        bar.update(1)
        if step % 50 == 0:
            history.append({"step": step, "loss": round(loss.item(), 4), **{k: round(v, 4) for k, v in parts.items()}})
        _checkpoint(cfg, step, cfg.codec_steps, t0, save, bar, "codec")
    bar.close()
    return codec.eval()


# ---- codes ----------------------------------------------------------------------------------------
def encode_recordings(cfg: AudioTrainConfig, codec: SpectralCodec, progress: bool = True) -> dict[tuple[str, str], dict]:
    """Every recording's codes, cached in ``OUT/codes/<style>_<split>.npz`` (codes (n_q, frames) uint16
    of all recordings one after another, ``starts``: where each begins) with the file list beside it."""
    out = Path(cfg.out) / "codes"
    out.mkdir(parents=True, exist_ok=True)
    recs = find_recordings(Path(cfg.data))
    groups: dict[tuple[str, str], list[Path]] = {}
    for style, split, p in recs:
        groups.setdefault((style, split), []).append(p)
    shards = {}
    sr = codec.cfg.sample_rate
    for (style, split), paths in sorted(groups.items()):
        f = out / f"{style}_{split}.npz"
        names = [str(p) for p in paths]
        if f.exists() and json.loads(f.with_suffix(".json").read_text()) == names:
            z = np.load(f)
            shards[style, split] = {"codes": z["codes"], "starts": z["starts"]}
            continue
        parts, starts = [], [0]
        for p in tqdm(paths, desc=f"encoding {style}/{split}", unit="file", disable=not progress):
            y = at_peak(load_mono(p, sr))
            c = codec.encode(torch.from_numpy(y)[None])[0].numpy().astype(np.uint16)
            parts.append(c)
            starts.append(starts[-1] + c.shape[1])
        codes = np.concatenate(parts, 1) if parts else np.zeros((codec.cfg.n_q, 0), np.uint16)
        tmp = f.with_suffix(".tmp.npz")
        np.savez(tmp, codes=codes, starts=np.array(starts, dtype=np.int64))
        os.replace(tmp, f)
        f.with_suffix(".json").write_text(json.dumps(names))
        shards[style, split] = {"codes": codes, "starts": np.array(starts, dtype=np.int64)}
    return shards



class CodeSampler:
    """Training windows: [BOS, style] then the codes of ``frames`` consecutive code frames of one recording."""

    def __init__(self, shards: dict[str, dict], tok, ctx: int, seed: int = 0):
        self.shards, self.tok = shards, tok
        self.styles = sorted(shards)
        self.frames = (ctx - 2) // tok.n_q
        self.width = 2 + self.frames * tok.n_q
        self.rng = np.random.default_rng(seed)

    def window(self, style: str) -> np.ndarray:
        sh = self.shards[style]
        k = int(self.rng.integers(len(sh["starts"]) - 1))
        a, b = int(sh["starts"][k]), int(sh["starts"][k + 1])
        s = int(self.rng.integers(a, max(a + 1, b - self.frames)))
        codes = sh["codes"][:, s:min(b, s + self.frames)].astype(np.int64)
        ids = np.full(self.width, -1, dtype=np.int64)
        seq = self.tok.encode_codes(codes, style)
        ids[:len(seq)] = seq
        return ids

    def batch(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        rows = np.stack([self.window(self.styles[int(self.rng.integers(len(self.styles)))]) for _ in range(n)])
        x = np.where(rows[:, :-1] < 0, self.tok.pad_id, rows[:, :-1])
        y = rows[:, 1:].copy()
        y[y < 0] = -100
        y[:, 0] = -100  # the style token is given, not predicted
        return x, y


def evaluate_prior(model, samplers: dict[str, CodeSampler], batch_size: int, batches: int) -> dict[str, float]:
    """Mean negative log-likelihood per code token (nats), per style, on fixed validation windows."""
    model.eval()
    out = {}
    with torch.no_grad():
        for style, sampler in samplers.items():
            sampler.rng = np.random.default_rng(1234)
            tot, n = 0.0, 0
            for _ in range(batches):
                x, y = sampler.batch(batch_size)
                logits = model(torch.from_numpy(x))
                tot += torch.nn.functional.cross_entropy(logits.flatten(0, 1), torch.from_numpy(y).flatten(),
                                                         ignore_index=-100, reduction="sum").item()
                n += int((y != -100).sum())
            out[style] = tot / max(n, 1)
    model.train()
    return out


def train_prior(cfg: AudioTrainConfig, codec: SpectralCodec, progress: bool = True) -> Path:
    """Train (or resume) the prior over the codec's tokens; writes and returns the model folder."""
    from cadenza.model import ModelConfig, Transformer, save_model_folder
    from cadenza.tokenizers.audio import AudioSpec, AudioTokenizer

    out = Path(cfg.out)
    shards = encode_recordings(cfg, codec, progress)
    styles = sorted({s for s, _ in shards})
    tok = AudioTokenizer(AudioSpec(codec.cfg.n_q, codec.cfg.codebook_size, styles))
    train = {s: sh for (s, sp), sh in shards.items() if sp == "train" and sh["codes"].shape[1]}
    valid = {s: sh for (s, sp), sh in shards.items() if sp == "valid" and sh["codes"].shape[1]}
    for s in styles:
        if s not in valid and s in train:
            valid[s] = train[s]
            print(f"audio train: style '{s}' has no held-out recordings; its validation loss is on training data",
                  file=sys.stderr)
    if not train:
        raise CadenzaError(f"no training recordings under {cfg.data} (all were held out)")
    stats = {f"{s}/{sp}": {"recordings": len(sh["starts"]) - 1, "seconds": round(sh["codes"].shape[1] /
             codec.cfg.frames_per_s, 1)} for (s, sp), sh in shards.items()}
    sampler = CodeSampler(train, tok, cfg.ctx, seed=cfg.seed)
    vsamplers = {s: CodeSampler({s: sh}, tok, cfg.ctx) for s, sh in valid.items()}
    mcfg = ModelConfig(vocab_size=tok.vocab_size, d_model=cfg.d_model, n_layers=cfg.n_layers, n_heads=cfg.n_heads,
                       d_ff=cfg.d_ff, max_seq_len=cfg.ctx)
    torch.manual_seed(cfg.seed)
    model = Transformer(mcfg)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95))
    ckpt = out / "prior_checkpoint.pt"
    step, history = _resume(ckpt, "model", model, opt)
    sampler.rng = np.random.default_rng(cfg.seed + step)

    def save():
        _save({"model": model.state_dict(), "optim": opt.state_dict(), "step": step, "history": json.dumps(history),
               "train_config": json.dumps(asdict(cfg))}, ckpt)

    bar = tqdm(total=cfg.prior_steps, initial=step, desc="prior", unit="step", disable=not progress, dynamic_ncols=True)
    t0 = time.time()
    model.train()
    while step < cfg.prior_steps:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg.prior_steps, cfg.lr, cfg.min_lr, cfg.warmup)
        x, y = sampler.batch(cfg.batch_size)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
            logits = model(torch.from_numpy(x))
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), torch.from_numpy(y).flatten(),
                                                 ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        bar.set_postfix(loss=f"{loss.item():.3f}")
        bar.update(1)
        if step % cfg.eval_every == 0 or step == cfg.prior_steps:
            val = evaluate_prior(model, vsamplers, cfg.batch_size, 4)
            history.append({"step": step, "train_loss": round(loss.item(), 4),
                            "valid": {k: round(v, 4) for k, v in val.items()}})
            bar.write(f"step {step}: train {loss.item():.3f}  valid " + "  ".join(f"{k} {v:.3f}" for k, v in val.items()))
        _checkpoint(cfg, step, cfg.prior_steps, t0, save, bar, "prior")
    bar.close()
    val = history[-1]["valid"] if history else evaluate_prior(model, vsamplers, cfg.batch_size, 4)
    meta = {
        "name": cfg.name,
        "family": "audio-lm",
        "tokenizer": tok.to_config(),
        "codec": codec.cfg.to_dict(),
        "styles": styles,
        "license": cfg.license,
        "training": {"data": cfg.data, "steps": step, "config": asdict(cfg), "data_stats": stats,
                     "valid_loss": val, "codec_history": [], "history": history[-20:]},
    }
    final = out / "model"
    save_model_folder(final, model, meta, card=audio_model_card(meta), extra={"codec.safetensors": codec.state_dict()})
    return final


def train_audio(cfg: AudioTrainConfig, progress: bool = True) -> Path:
    """The whole recipe: codec (resumed if it has a checkpoint), codes, prior, model folder."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.precision not in ("fp32", "bf16"):
        raise CadenzaError(f"unknown precision '{cfg.precision}' (fp32 or bf16)")
    torch.manual_seed(cfg.seed)
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    codec = train_codec(cfg, progress)
    return train_prior(cfg, codec, progress)


def audio_model_card(meta: dict) -> str:
    t = meta["training"]
    c = meta["codec"]
    ccfg = CodecConfig.from_dict(c)
    lines = [
        f"# {meta['name']}", "",
        "An audio model of cadenza: a spectrogram codec (`codec.safetensors`) and a decoder-only transformer "
        "prior over its tokens (`model.safetensors`), style-conditioned. `cadenza audio continue` and "
        "`cadenza audio generate` use it.", "",
        "## Codec", "",
        f"- {c['sample_rate']} Hz mono; STFT {c['n_fft']}/{c['hop']}; encoder on {c['n_mels']} log-mel bands; "
        f"{c['n_q']} residual codebooks of {c['codebook_size']} codes per {1000 * ccfg.frame_samples / c['sample_rate']:.0f} ms",
        f"- {ccfg.tokens_per_s:.1f} tokens per second, {ccfg.kbps:.2f} kbps; phase by Griffin-Lim ({c['gl_iters']} iterations)",
        "", "## Data", "",
        f"- `{t['data']}`: " + ", ".join(f"{k} {v['recordings']} recordings ({v['seconds'] / 60:.1f} min)"
                                         for k, v in t["data_stats"].items()),
        f"- license: {meta['license']}", "",
        "## Training", "",
        f"- prior: {t['steps']} steps; context {t['config']['ctx']} tokens; d_model {t['config']['d_model']}, "
        f"{t['config']['n_layers']} layers",
        "- validation loss (nats per code token): " + ", ".join(f"{k} {v:.3f}" for k, v in t["valid_loss"].items()),
        "",
    ]
    return "\n".join(lines) + "\n"
